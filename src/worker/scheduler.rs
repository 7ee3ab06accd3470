//! Duty: fire due schedule occurrences (sql/maintenance.sql, `jobs._fire_schedules`).

use pgrx::prelude::*;

/// Enqueues one job per due schedule and advances each; returns jobs
/// enqueued and occurrences skipped (overlap false, previous job unfinished).
pub fn run_once() -> (i64, i64) {
    Spi::connect_mut(|client| {
        let row = client.update("SELECT fired, skipped FROM jobs._fire_schedules()", None, &[])?.first();
        Ok::<_, pgrx::spi::Error>((row.get::<i64>(1)?.unwrap_or(0), row.get::<i64>(2)?.unwrap_or(0)))
    })
    .expect("jobs._fire_schedules")
}
