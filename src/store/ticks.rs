//! The scheduler's memory: the latest claimed occurrence of each scenario's schedule.

use super::{Result, Store};

impl Store {
    /// The latest schedule occurrence (UTC ms) claimed for a scenario, if any.
    pub async fn last_tick(&self, scenario_id: &str) -> Result<Option<i64>> {
        let last: Option<i64> = on_pool!(self, pool => {
            sqlx::query_scalar("SELECT MAX(tick_at) FROM schedule_ticks WHERE scenario_id = $1")
                .bind(scenario_id)
                .fetch_one(pool)
                .await?
        });
        Ok(last)
    }
}
