//! Scenarios, their versions and their webhook endpoints (hooks).
//!
//! Editing a scenario adds a version; old versions stay, because executions name the version
//! they ran. A hook belongs to (scenario, trigger module) and keeps its id across edits, so a
//! hook URL never changes; it accepts deliveries only while it is attached and the scenario
//! is active.

use serde_json::Value;
use sqlx::FromRow;

use super::error::{StoreError, is_foreign_key_violation};
use super::types::stored_u32;
use super::{
    HookRow, Result, ScenarioRow, ScenarioVersion, Store, VersionInfo, begin_write, check_text,
    is_id, new_hook_id, new_id, now_ms,
};

/// The longest scenario name, in bytes.
pub const MAX_NAME_BYTES: usize = 1_000;
/// The largest blueprint, in bytes.
pub const MAX_BLUEPRINT_BYTES: usize = 16 * 1024 * 1024;

/// Executions deleted per statement when a scenario is deleted.
const DELETE_BATCH: i64 = 500;

#[derive(FromRow)]
struct ScenarioRecord {
    id: String,
    name: String,
    version: i64,
    active: bool,
    deactivated_reason: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ScenarioRecord> for ScenarioRow {
    type Error = StoreError;

    fn try_from(r: ScenarioRecord) -> Result<ScenarioRow> {
        Ok(ScenarioRow {
            version: stored_u32("scenario version", r.version)?,
            id: r.id,
            name: r.name,
            active: r.active,
            deactivated_reason: r.deactivated_reason,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

#[derive(FromRow)]
struct HookRecord {
    id: String,
    scenario_id: String,
    module_id: i64,
    attached: bool,
    scenario_active: bool,
    scenario_version: i64,
    created_at: i64,
    attachment: Option<String>,
}

impl TryFrom<HookRecord> for HookRow {
    type Error = StoreError;

    fn try_from(r: HookRecord) -> Result<HookRow> {
        Ok(HookRow {
            module_id: stored_u32("hook module id", r.module_id)?,
            scenario_version: stored_u32("scenario version", r.scenario_version)?,
            active: r.attached && r.scenario_active,
            attached: r.attached,
            id: r.id,
            scenario_id: r.scenario_id,
            created_at: r.created_at,
            attachment: r
                .attachment
                .map(|text| {
                    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
                        what: "hook attachment",
                        reason: e.to_string(),
                    })
                })
                .transpose()?,
        })
    }
}

const HOOK_COLUMNS: &str = "SELECT h.id, h.scenario_id, h.module_id, h.active AS attached, \
     s.active AS scenario_active, s.version AS scenario_version, h.created_at, \
     h.attachment FROM hooks h JOIN scenarios s ON s.id = h.scenario_id";

fn check_blueprint(blueprint: &str) -> Result<()> {
    check_text("blueprint", blueprint, MAX_BLUEPRINT_BYTES)?;
    serde_json::from_str::<serde::de::IgnoredAny>(blueprint).map_err(|e| {
        StoreError::InvalidInput {
            what: "blueprint",
            reason: format!("not JSON: {e}"),
        }
    })?;
    Ok(())
}

fn version_not_found(id: &str, version: u32) -> StoreError {
    if is_id(id) {
        StoreError::NotFound {
            what: "scenario version",
            id: format!("{id} v{version}"),
        }
    } else {
        StoreError::not_found("scenario", id)
    }
}

impl Store {
    /// Creates an inactive scenario whose version 1 is `blueprint` (JSON text, stored as
    /// given). Returns its id and version.
    pub async fn create_scenario(&self, name: &str, blueprint: &str) -> Result<(String, u32)> {
        check_text("scenario name", name, MAX_NAME_BYTES)?;
        check_blueprint(blueprint)?;
        let id = new_id();
        let now = now_ms();
        on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            sqlx::query(
                "INSERT INTO scenarios (id, name, version, active, created_at, updated_at) \
                 VALUES ($1, $2, 1, $3, $4, $4)",
            )
            .bind(&id)
            .bind(name)
            .bind(false)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO scenario_versions (scenario_id, version, blueprint, created_at) \
                 VALUES ($1, 1, $2, $3)",
            )
            .bind(&id)
            .bind(blueprint)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        });
        Ok((id, 1))
    }

    /// Stores `blueprint` as the scenario's next version and makes it current. Earlier
    /// versions, hooks and trigger state are kept. Returns the new version.
    pub async fn update_scenario(&self, id: &str, blueprint: &str) -> Result<u32> {
        check_blueprint(blueprint)?;
        if !is_id(id) {
            return Err(StoreError::not_found("scenario", id));
        }
        let now = now_ms();
        let version: Option<i64> = on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            let version: Option<i64> = sqlx::query_scalar(
                "UPDATE scenarios SET version = version + 1, updated_at = $2 \
                 WHERE id = $1 RETURNING version",
            )
            .bind(id)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some(version) = version {
                sqlx::query(
                    "INSERT INTO scenario_versions (scenario_id, version, blueprint, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(version)
                .bind(blueprint)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
            }
            version
        });
        match version {
            Some(v) => stored_u32("scenario version", v),
            None => Err(StoreError::not_found("scenario", id)),
        }
    }

    /// Renames a scenario.
    pub async fn rename_scenario(&self, id: &str, name: &str) -> Result<()> {
        check_text("scenario name", name, MAX_NAME_BYTES)?;
        if !is_id(id) {
            return Err(StoreError::not_found("scenario", id));
        }
        let now = now_ms();
        let rows = on_pool!(self, pool => {
            sqlx::query("UPDATE scenarios SET name = $2, updated_at = $3 WHERE id = $1")
                .bind(id)
                .bind(name)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if rows == 0 {
            return Err(StoreError::not_found("scenario", id));
        }
        Ok(())
    }

    /// A scenario's metadata, with its current version number.
    pub async fn get_scenario(&self, id: &str) -> Result<ScenarioRow> {
        if !is_id(id) {
            return Err(StoreError::not_found("scenario", id));
        }
        let record: Option<ScenarioRecord> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, version, active, deactivated_reason, created_at, updated_at \
                 FROM scenarios WHERE id = $1",
            )
            .bind(id)
            .fetch_optional(pool)
            .await?
        });
        record
            .ok_or_else(|| StoreError::not_found("scenario", id))?
            .try_into()
    }

    /// One version of a scenario, with its blueprint.
    pub async fn get_version(&self, id: &str, version: u32) -> Result<ScenarioVersion> {
        if !is_id(id) {
            return Err(StoreError::not_found("scenario", id));
        }
        let record: Option<(String, i64, String, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT scenario_id, version, blueprint, created_at \
                 FROM scenario_versions WHERE scenario_id = $1 AND version = $2",
            )
            .bind(id)
            .bind(i64::from(version))
            .fetch_optional(pool)
            .await?
        });
        let (scenario_id, version_n, blueprint, created_at) =
            record.ok_or_else(|| version_not_found(id, version))?;
        Ok(ScenarioVersion {
            scenario_id,
            version: stored_u32("scenario version", version_n)?,
            blueprint,
            created_at,
        })
    }

    /// A scenario's versions, oldest first. Empty when the scenario does not exist.
    pub async fn list_versions(&self, id: &str) -> Result<Vec<VersionInfo>> {
        if !is_id(id) {
            return Ok(Vec::new());
        }
        let rows: Vec<(i64, i64)> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT version, created_at FROM scenario_versions \
                 WHERE scenario_id = $1 ORDER BY version",
            )
            .bind(id)
            .fetch_all(pool)
            .await?
        });
        rows.into_iter()
            .map(|(version, created_at)| {
                Ok(VersionInfo {
                    version: stored_u32("scenario version", version)?,
                    created_at,
                })
            })
            .collect()
    }

    /// Every scenario, by name (then id).
    pub async fn list_scenarios(&self) -> Result<Vec<ScenarioRow>> {
        let records: Vec<ScenarioRecord> = on_pool!(self, pool => {
            sqlx::query_as(
                "SELECT id, name, version, active, deactivated_reason, created_at, updated_at \
                 FROM scenarios ORDER BY name, id",
            )
            .fetch_all(pool)
            .await?
        });
        records.into_iter().map(TryInto::try_into).collect()
    }

    /// Deletes a scenario with everything that belongs to it: versions, hooks, executions
    /// and their data, trigger state, incomplete executions, schedule ticks. Executions are
    /// deleted in bounded batches first, so no single statement holds the database for long.
    pub async fn delete_scenario(&self, id: &str) -> Result<()> {
        if !is_id(id) {
            return Err(StoreError::not_found("scenario", id));
        }
        self.get_scenario(id).await?;
        loop {
            let deleted = on_pool!(self, pool => {
                sqlx::query(
                    "DELETE FROM executions WHERE id IN \
                     (SELECT id FROM executions WHERE scenario_id = $1 LIMIT $2)",
                )
                .bind(id)
                .bind(DELETE_BATCH)
                .execute(pool)
                .await?
                .rows_affected()
            });
            if deleted == 0 {
                break;
            }
        }
        let rows = on_pool!(self, pool => {
            sqlx::query("DELETE FROM scenarios WHERE id = $1")
                .bind(id)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if rows == 0 {
            return Err(StoreError::not_found("scenario", id));
        }
        Ok(())
    }

    /// Turns a scenario on or off. Its hooks follow: they accept deliveries only while the
    /// scenario is active.
    pub async fn set_active(&self, id: &str, active: bool) -> Result<()> {
        if !is_id(id) {
            return Err(StoreError::not_found("scenario", id));
        }
        let now = now_ms();
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE scenarios SET active = $2, deactivated_reason = NULL, updated_at = $3, \
                 activated_at = CASE WHEN $2 THEN $3 ELSE activated_at END WHERE id = $1",
            )
                .bind(id)
                .bind(active)
                .bind(now)
                .execute(pool)
                .await?
                .rows_affected()
        });
        if rows == 0 {
            return Err(StoreError::not_found("scenario", id));
        }
        Ok(())
    }

    /// Turns active scenario `id` off with `reason` if its last `max_errors` finished
    /// executions (in arrival order, since it was last turned on) all ended with status
    /// `error`; an execution that succeeded or parked its bundles as incomplete in between
    /// breaks the run. One
    /// statement, so two workers finishing errors at once turn it off once. Returns whether
    /// this call turned it off.
    pub async fn deactivate_after_errors(
        &self,
        id: &str,
        max_errors: u32,
        reason: &str,
    ) -> Result<bool> {
        if !is_id(id) || max_errors == 0 {
            return Ok(false);
        }
        let rows = on_pool!(self, pool => {
            sqlx::query(
                "UPDATE scenarios SET active = $2, deactivated_reason = $3, updated_at = $4 \
                 WHERE id = $1 AND active = $5 AND $6 = (SELECT COUNT(*) FROM \
                 (SELECT status FROM executions WHERE scenario_id = $1 \
                  AND status IN ('success', 'error', 'incomplete') \
                  AND created_at >= COALESCE((SELECT activated_at FROM scenarios \
                  WHERE id = $1), 0) \
                  ORDER BY created_at DESC, id DESC LIMIT $6) AS last_finished \
                 WHERE status = 'error')",
            )
            .bind(id)
            .bind(false)
            .bind(reason)
            .bind(now_ms())
            .bind(true)
            .bind(i64::from(max_errors))
            .execute(pool)
            .await?
            .rows_affected()
        });
        Ok(rows == 1)
    }

    /// The hook of `module_id` in a scenario, created on first use and (re)attached.
    /// Idempotent: the same module always gets the same hook id, across edits.
    pub async fn ensure_hook(&self, scenario_id: &str, module_id: u32) -> Result<String> {
        if !is_id(scenario_id) {
            return Err(StoreError::not_found("scenario", scenario_id));
        }
        let new = new_hook_id();
        let now = now_ms();
        let result: Result<String, sqlx::Error> = on_pool!(self, pool => {
            sqlx::query_scalar(
                "INSERT INTO hooks (id, scenario_id, module_id, active, created_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (scenario_id, module_id) DO UPDATE SET active = excluded.active \
                 RETURNING id",
            )
            .bind(&new)
            .bind(scenario_id)
            .bind(i64::from(module_id))
            .bind(true)
            .bind(now)
            .fetch_one(pool)
            .await
        });
        match result {
            Ok(id) => Ok(id),
            Err(e) if is_foreign_key_violation(&e) => {
                Err(StoreError::not_found("scenario", scenario_id))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Detaches the scenario's hooks whose module is not in `keep` (the trigger modules of
    /// the current version). A detached hook keeps its id and is re-attached by
    /// [`Store::ensure_hook`] if its module comes back. Returns how many were detached.
    pub async fn retire_hooks(&self, scenario_id: &str, keep: &[u32]) -> Result<u64> {
        let retire: Vec<String> = self
            .hooks_for(scenario_id)
            .await?
            .into_iter()
            .filter(|h| h.attached && !keep.contains(&h.module_id))
            .map(|h| h.id)
            .collect();
        if retire.is_empty() {
            return Ok(0);
        }
        let mut count = 0;
        on_pool!(self, pool => {
            let mut tx = begin_write(pool).await?;
            for id in &retire {
                count += sqlx::query("UPDATE hooks SET active = $2 WHERE id = $1")
                    .bind(id)
                    .bind(false)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
            }
            tx.commit().await?;
        });
        Ok(count)
    }

    /// Records what an instant trigger's `attach` returned for hook `id` (`None`: nothing is
    /// registered any more).
    pub async fn set_hook_attachment(&self, id: &str, attachment: Option<&Value>) -> Result<()> {
        let text = attachment.map(Value::to_string);
        on_pool!(self, pool => {
            sqlx::query("UPDATE hooks SET attachment = $2 WHERE id = $1")
                .bind(id)
                .bind(text.as_deref())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    /// A hook by id, or `None`. (No error names a hook id: it is the secret of its URL.)
    pub async fn get_hook(&self, id: &str) -> Result<Option<HookRow>> {
        if !is_id(id) {
            return Ok(None);
        }
        let sql = format!("{HOOK_COLUMNS} WHERE h.id = $1");
        let record: Option<HookRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(id)
                .fetch_optional(pool)
                .await?
        });
        record.map(TryInto::try_into).transpose()
    }

    /// A scenario's hooks, by module id. Empty when the scenario does not exist.
    pub async fn hooks_for(&self, scenario_id: &str) -> Result<Vec<HookRow>> {
        if !is_id(scenario_id) {
            return Ok(Vec::new());
        }
        let sql = format!("{HOOK_COLUMNS} WHERE h.scenario_id = $1 ORDER BY h.module_id");
        let records: Vec<HookRecord> = on_pool!(self, pool => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(scenario_id)
                .fetch_all(pool)
                .await?
        });
        records.into_iter().map(TryInto::try_into).collect()
    }
}
