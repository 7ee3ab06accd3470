//! The settings of `jobs` (GUCs): defined once in `_PG_init`, read through
//! the accessors here so that units and defaults live in one place.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};
use std::ffi::CString;

/// Lease of a claim or extend_lease called without one (seconds).
pub static DEFAULT_LEASE: GucSetting<i32> = GucSetting::<i32>::new(300);
/// max_attempts of a job enqueued without one.
pub static DEFAULT_MAX_ATTEMPTS: GucSetting<i32> = GucSetting::<i32>::new(3);
/// Delay before the first retry of a failed job, before jitter (milliseconds).
pub static BACKOFF_BASE: GucSetting<i32> = GucSetting::<i32>::new(10_000);
/// Longest delay between retries, before jitter (seconds).
pub static BACKOFF_MAX: GucSetting<i32> = GucSetting::<i32>::new(3_600);

/// Defines the settings every backend that loads the library needs. Safe to
/// call whether or not the library is preloaded.
pub fn define_session_gucs() {
    GucRegistry::define_int_guc(
        c"jobs.default_lease",
        c"Lease of jobs.claim and jobs.extend_lease when none is given.",
        c"A worker that neither finishes nor extends its job within the lease loses it: the job is queued again.",
        &DEFAULT_LEASE,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"jobs.default_max_attempts",
        c"max_attempts of a job enqueued without one.",
        c"",
        &DEFAULT_MAX_ATTEMPTS,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"jobs.backoff_base",
        c"Delay before the first retry of a failed job when jobs.fail gets no retry_in.",
        c"The delay doubles with each attempt up to jobs.backoff_max, then a random part of up to half of it is taken off.",
        &BACKOFF_BASE,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"jobs.backoff_max",
        c"Longest delay between retries of a failed job, before jitter.",
        c"",
        &BACKOFF_MAX,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
}

/// The database the background worker serves (postmaster).
pub static DATABASE_NAME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(Some(c"postgres"));
/// Longest sleep of the background worker between passes (milliseconds).
pub static MAINTENANCE_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(1_000);
/// Age after which finished jobs and their history are deleted (seconds).
pub static RETENTION: GucSetting<i32> = GucSetting::<i32>::new(7 * 24 * 3600);
/// Rows one pass of lease recovery or pruning handles at most.
pub static BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1_000);

/// Most SQL jobs running at once (executors the worker keeps).
pub static SQL_WORKERS: GucSetting<i32> = GucSetting::<i32>::new(2);
/// Longest a SQL job's command may run when it was given no timeout (seconds).
pub static SQL_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(3_600);

/// Settings of the maintenance duties. Reloadable (SIGHUP); defined in every
/// backend because `jobs.tick()` reads them too.
pub fn define_maintenance_gucs() {
    GucRegistry::define_int_guc(
        c"jobs.maintenance_interval",
        c"Longest sleep of the background worker between passes.",
        c"The worker also wakes for the next schedule occurrence or lease expiry, and when a schedule changes.",
        &MAINTENANCE_INTERVAL,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"jobs.retention",
        c"Age after which finished jobs (completed, failed, canceled) and their history are deleted.",
        c"",
        &RETENTION,
        0,
        i32::MAX,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"jobs.batch_size",
        c"Most jobs one pass of lease recovery or pruning handles; a full batch is followed by another at once.",
        c"Bounds how long a pass holds row locks.",
        &BATCH_SIZE,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"jobs.sql_workers",
        c"Most SQL jobs running at once: each runs in its own background worker (an executor).",
        c"Executors count against max_worker_processes. 0 stops starting SQL jobs.",
        &SQL_WORKERS,
        0,
        1_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"jobs.sql_timeout",
        c"Longest a SQL job's command may run when jobs.enqueue_sql or jobs.schedule_sql got no timeout.",
        c"Read when the job or schedule is created; the timeout is stored with it.",
        &SQL_TIMEOUT,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
}

/// jobs.sql_timeout, for the SQL that builds a SQL job's payload.
#[pgrx::pg_extern(stable, parallel_safe, name = "_sql_timeout")]
pub fn sql_timeout() -> pgrx::datum::Interval {
    pgrx::datum::Interval::new(0, 0, i64::from(SQL_TIMEOUT.get()) * 1_000_000)
        .expect("seconds of an i32 make a valid interval")
}

/// Settings only the postmaster reads; defining them after startup is an
/// error, so only while the library is being preloaded.
pub fn define_postmaster_gucs() {
    GucRegistry::define_string_guc(
        c"jobs.database_name",
        c"Database the jobs background worker serves.",
        c"Other databases can run the same duties with jobs.tick().",
        &DATABASE_NAME,
        GucContext::Postmaster,
        GucFlags::default(),
    );
}

pub fn database_name() -> String {
    DATABASE_NAME.get().map(|name| name.to_string_lossy().into_owned()).unwrap_or_else(|| "postgres".to_string())
}
