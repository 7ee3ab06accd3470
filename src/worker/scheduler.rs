//! Duty: fire due schedule occurrences (sql/maintenance.sql, `jobs._fire_schedules`).

use pgrx::prelude::*;

/// Enqueues one job per due schedule and advances each; returns jobs enqueued.
pub fn run_once() -> i64 {
    Spi::get_one::<i64>("SELECT jobs._fire_schedules()").expect("jobs._fire_schedules").unwrap_or(0)
}
