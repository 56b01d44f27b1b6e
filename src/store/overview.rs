//! The scenario list's per-scenario figures in two statements, whatever the number of
//! scenarios: the status of each scenario's latest execution and how many executions each
//! has had since a moment (the console's "runs today").

use std::collections::HashMap;

use super::{Result, Store};

/// One scenario's figures for the list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScenarioActivity {
    /// The status of its latest execution (`queued`, `running`, `success`, …), if any.
    pub last_status: Option<String>,
    /// Its executions created at or after the `since` asked for.
    pub runs_since: u64,
}

/// `(scenario id, status of its latest execution)`.
type LatestStatus = (String, String);
/// `(scenario id, executions since)`.
type RunCount = (String, i64);

impl Store {
    /// Every scenario's [`ScenarioActivity`] that has executions, by scenario id.
    pub async fn scenario_activity(
        &self,
        since_ms: i64,
    ) -> Result<HashMap<String, ScenarioActivity>> {
        let (latest, counts): (Vec<LatestStatus>, Vec<RunCount>) = on_pool!(self, pool => {
            let latest = sqlx::query_as(
                "SELECT e.scenario_id, e.status FROM executions e \
                 JOIN (SELECT scenario_id, MAX(created_at) AS created_at FROM executions \
                       GROUP BY scenario_id) m \
                   ON e.scenario_id = m.scenario_id AND e.created_at = m.created_at \
                 ORDER BY e.id",
            )
            .fetch_all(pool)
            .await?;
            let counts = sqlx::query_as(
                "SELECT scenario_id, COUNT(*) FROM executions WHERE created_at >= $1 \
                 GROUP BY scenario_id",
            )
            .bind(since_ms)
            .fetch_all(pool)
            .await?;
            (latest, counts)
        });
        let mut out: HashMap<String, ScenarioActivity> = HashMap::new();
        // Two executions created in the same millisecond: the later id (ids are time-ordered) wins.
        for (scenario, status) in latest {
            out.entry(scenario).or_default().last_status = Some(status);
        }
        for (scenario, count) in counts {
            out.entry(scenario).or_default().runs_since = u64::try_from(count).unwrap_or(0);
        }
        Ok(out)
    }

    /// The hooks still attached to their module, of every scenario: `(module id, hook id)`
    /// by scenario id, in module order.
    pub async fn attached_hooks(&self) -> Result<HashMap<String, Vec<(u32, String)>>> {
        let rows: Vec<(String, i64, String)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT scenario_id, CAST(module_id AS BIGINT), id FROM hooks WHERE active \
                 ORDER BY scenario_id, module_id",
            )
            .fetch_all(pool)
            .await?
        });
        let mut out: HashMap<String, Vec<(u32, String)>> = HashMap::new();
        for (scenario, module, id) in rows {
            out.entry(scenario)
                .or_default()
                .push((u32::try_from(module).unwrap_or(0), id));
        }
        Ok(out)
    }
}
