//! The settings of `jobs` (GUCs): defined once in `_PG_init`, read through
//! the accessors here so that units and defaults live in one place.

use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

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
