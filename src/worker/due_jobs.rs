//! Duty: announce delayed jobs that became due (sql/maintenance.sql, `jobs._notify_due`).

use pgrx::prelude::*;
use std::time::Duration;

/// Sends `NOTIFY jobs, '<queue>'` for each queue with jobs that became due
/// since `since` (None: within the last `interval`); returns how many queues.
pub fn run_once(since: Option<TimestampWithTimeZone>, interval: Duration) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT jobs._notify_due(coalesce($1, pg_catalog.now() - pg_catalog.make_interval(secs => $2)))",
        &[since.into(), interval.as_secs_f64().into()],
    )
    .expect("jobs._notify_due")
    .unwrap_or(0)
}
