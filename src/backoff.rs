//! Retry delays of failed jobs: exponential backoff with jitter, and the
//! setting accessors the SQL API calls for its defaults.

use crate::guc;
use pgrx::prelude::*;

/// Delay before retrying after `attempt` failed attempts: d = min(max, base ×
/// 2^(attempt−1)), then uniform in [d/2, d] ("equal jitter") so that jobs that
/// failed together do not all come back in the same instant, while no retry
/// comes sooner than half the nominal delay. `unit` is uniform in [0, 1).
pub fn delay_micros(attempt: i32, base_ms: i32, max_s: i32, unit: f64) -> i64 {
    let base = i64::from(base_ms.max(0)) * 1_000;
    let cap = i64::from(max_s.max(0)) * 1_000_000;
    let doublings = attempt.saturating_sub(1).clamp(0, 62) as u32;
    let nominal = base.checked_mul(1_i64 << doublings).map_or(cap, |d| d.min(cap));
    let half = nominal / 2;
    half + ((nominal - half) as f64 * unit.clamp(0.0, 1.0)) as i64
}

fn interval_micros(micros: i64) -> Interval {
    Interval::new(0, 0, micros).expect("a non-negative interval of microseconds is valid")
}

/// Uniform in [0, 1) from the backend's PRNG, which PostgreSQL seeds per
/// process at start.
#[cfg(not(feature = "pg14"))]
fn unit_random() -> f64 {
    // SAFETY: the backend's global PRNG state, used from its main thread.
    unsafe { pg_sys::pg_prng_double(&raw mut pg_sys::pg_global_prng_state) }
}

/// PostgreSQL 14 has no pg_prng yet: it seeds the C library's random() per
/// process instead (InitProcessGlobals), which pgrx does not bind.
#[cfg(feature = "pg14")]
fn unit_random() -> f64 {
    unsafe extern "C" {
        fn random() -> std::ffi::c_long;
    }
    // SAFETY: random() takes no arguments; its result is in [0, 2^31).
    (unsafe { random() }) as f64 / 2_147_483_648.0
}

#[pg_extern(volatile, parallel_safe, name = "_backoff")]
fn backoff(attempt: i32) -> Interval {
    interval_micros(delay_micros(attempt, guc::BACKOFF_BASE.get(), guc::BACKOFF_MAX.get(), unit_random()))
}

#[pg_extern(stable, parallel_safe, name = "_default_lease")]
pub fn default_lease() -> Interval {
    interval_micros(i64::from(guc::DEFAULT_LEASE.get()) * 1_000_000)
}

#[pg_extern(stable, parallel_safe, name = "_default_max_attempts")]
fn default_max_attempts() -> i32 {
    guc::DEFAULT_MAX_ATTEMPTS.get()
}

#[cfg(test)]
mod unit_tests {
    use super::delay_micros;

    #[test]
    fn doubles_per_attempt_within_jitter() {
        for attempt in 1..=5 {
            let nominal = 10_000_000_i64 << (attempt - 1);
            assert_eq!(delay_micros(attempt, 10_000, 3_600, 0.0), nominal / 2);
            assert_eq!(delay_micros(attempt, 10_000, 3_600, 1.0), nominal);
        }
    }

    #[test]
    fn capped_at_max_and_never_overflows() {
        assert_eq!(delay_micros(40, 10_000, 3_600, 1.0), 3_600_000_000);
        assert_eq!(delay_micros(i32::MAX, i32::MAX, i32::MAX, 1.0), i64::from(i32::MAX) * 1_000_000);
        assert_eq!(delay_micros(0, 10_000, 3_600, 1.0), 10_000_000);
        assert_eq!(delay_micros(-5, 10_000, 3_600, 0.0), 5_000_000);
    }
}
