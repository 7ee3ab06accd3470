//! Duty: delete old finished jobs and their history (sql/maintenance.sql, `jobs._prune`).

use pgrx::prelude::*;
use std::cell::Cell;

thread_local! {
    /// The page of jobs.job where this backend's next sweep starts: each pass
    /// reads the next `batch_size` pages, and starts over at 0 after the last.
    static NEXT_PAGE: Cell<i64> = const { Cell::new(0) };
}

/// Sweeps the next `batch_size` pages of jobs.job and deletes up to
/// `batch_size` jobs among them finished more than `retention_secs` ago;
/// returns how many.
pub fn run_once(retention_secs: i32, batch_size: i32) -> i64 {
    let (pruned, next_page) = Spi::get_two_with_args::<i64, i64>(
        "SELECT pruned, next_page FROM jobs._prune(pg_catalog.make_interval(secs => $1), $2, $3, $2)",
        &[f64::from(retention_secs).into(), batch_size.into(), NEXT_PAGE.get().into()],
    )
    .expect("jobs._prune");
    NEXT_PAGE.set(next_page.unwrap_or(0));
    pruned.unwrap_or(0)
}
