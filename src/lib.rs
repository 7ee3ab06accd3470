//! `jobs`: a durable job queue and cron scheduler inside PostgreSQL.
//! The queue API is hand-written SQL in `sql/`, but for the calls on every
//! job's path (`enqueue`, `claim`, `complete`, `complete_batch`), compiled
//! here around the same statements; Rust owns the settings, the cron engine,
//! the background worker and the executors of SQL jobs.

use pgrx::prelude::*;

/// The function manager's version-1 record of a function written against it
/// (`LANGUAGE c` declarations in sql/).
macro_rules! finfo_v1 {
    ($name:ident) => {
        #[unsafe(no_mangle)]
        pub extern "C" fn $name() -> &'static pg_sys::Pg_finfo_record {
            const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
            &V1
        }
    };
}

mod backoff;
mod claim;
mod complete;
mod cron;
mod enqueue;
mod error;
mod executor;
mod guc;
mod invariants;
mod kept_plan;
mod notify;
mod position;
mod schedule;
mod worker;

pgrx::pg_module_magic!();

/// Set in `_PG_init` when the library is preloaded (the background worker
/// runs, shared memory is ours); every backend inherits it from the postmaster.
pub static PRELOADED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extension_sql_file!("../sql/schema.sql", name = "schema", bootstrap);
extension_sql_file!("../sql/invariants.sql", name = "invariants", requires = ["schema"]);
extension_sql_file!("../sql/errors.sql", name = "errors", requires = ["schema", notify::announce]);
extension_sql_file!("../sql/enqueue.sql", name = "enqueue", requires = ["errors"]);
extension_sql_file!("../sql/position.sql", name = "position", requires = ["schema"]);
extension_sql_file!("../sql/claim.sql", name = "claim", requires = ["errors", "position", position::claim_raise]);
extension_sql_file!("../sql/finish.sql", name = "finish", requires = ["errors"]);
extension_sql_file!("../sql/views.sql", name = "views", requires = ["schema"]);
extension_sql_file!("../sql/stats.sql", name = "stats", requires = ["views"]);
extension_sql_file!("../sql/schedule.sql", name = "schedule", requires = ["errors", "enqueue"]);
extension_sql_file!("../sql/maintenance.sql", name = "maintenance", requires = ["errors"]);
extension_sql_file!(
    "../sql/sql_jobs.sql",
    name = "sql_jobs",
    requires = ["errors", "enqueue", "finish", "schedule", guc::sql_timeout]
);
extension_sql_file!("../sql/database_check.sql", name = "database_check", requires = ["schema"]);
extension_sql_file!("../sql/privileges.sql", name = "privileges", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    guc::define_session_gucs();
    guc::define_maintenance_gucs();
    // The worker and postmaster-level settings exist only when preloaded.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        PRELOADED.store(true, std::sync::atomic::Ordering::Relaxed);
        guc::define_postmaster_gucs();
        notify::init_shared_memory();
        position::init_shared_memory();
        // pg_upgrade starts both clusters in binary-upgrade mode and drops
        // and recreates every database: a worker connected to one makes it
        // fail ("database is being accessed by other users").
        if !unsafe { pg_sys::IsBinaryUpgrade } {
            worker::register();
        }
    }
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Called by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
