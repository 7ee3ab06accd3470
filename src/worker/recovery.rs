//! Duty: recover jobs whose lease expired (sql/maintenance.sql, `jobs._recover_leases`).

use pgrx::prelude::*;

/// Requeues (or fails, on their last attempt) up to `batch_size` running jobs
/// whose lease expired; returns how many.
pub fn run_once(batch_size: i32) -> i64 {
    Spi::get_one_with_args::<i64>("SELECT jobs._recover_leases($1)", &[batch_size.into()])
        .expect("jobs._recover_leases")
        .unwrap_or(0)
}
