//! Duty: delete old finished jobs and their history (sql/maintenance.sql, `jobs._prune`).

use pgrx::prelude::*;

/// Deletes up to `batch_size` jobs finished more than `retention_secs` ago;
/// returns how many.
pub fn run_once(retention_secs: i32, batch_size: i32) -> i64 {
    Spi::get_one_with_args::<i64>(
        "SELECT jobs._prune(pg_catalog.make_interval(secs => $1), $2)",
        &[f64::from(retention_secs).into(), batch_size.into()],
    )
    .expect("jobs._prune")
    .unwrap_or(0)
}
