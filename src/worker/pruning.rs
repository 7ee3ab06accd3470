//! Duty: delete old finished jobs and their history (sql/maintenance.sql, `jobs._prune`).

use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    /// While an old snapshot holds back cleanup: the finished_at up to which
    /// this backend's earlier batches pruned. The entries of the jobs they
    /// deleted stay in job_finished_idx until the snapshot goes, and a batch
    /// that started at the oldest would walk them all again. A job finished
    /// in a transaction that began before that time is pruned once the
    /// snapshot is gone and batches start at the oldest again.
    static PRUNED_THROUGH: Cell<Option<TimestampWithTimeZone>> = const { Cell::new(None) };
}

/// Deletes up to `batch_size` jobs finished more than `retention_secs` ago;
/// returns how many.
pub fn run_once(retention_secs: i32, batch_size: i32) -> i64 {
    let held = crate::position::horizon_held();
    let after = PRUNED_THROUGH.get().filter(|_| held);
    let (pruned, through) = Spi::get_two_with_args::<i64, TimestampWithTimeZone>(
        "SELECT pruned, pruned_through
         FROM jobs._prune(pg_catalog.make_interval(secs => $1), $2, coalesce($3, '-infinity'))",
        &[f64::from(retention_secs).into(), batch_size.into(), after.into()],
    )
    .expect("jobs._prune");
    PRUNED_THROUGH.set(if held { through.or(after) } else { None });
    pruned.unwrap_or(0)
}
