//! The SQL face of the cron engine (`jobs.next_run`) and the wake-up the
//! schedule functions send the background worker.

use crate::cron::Schedule;
use crate::error::{invalid, required};
use chrono::{DateTime, Datelike, Utc};
use pgrx::prelude::*;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_OFFSET_MICROS: i64 = 946_684_800_000_000;

/// None when `t` lies beyond what the engine represents (far past the year
/// 5000, where no firing is computed anyway).
fn to_chrono(t: TimestampWithTimeZone) -> Option<DateTime<Utc>> {
    if !t.is_finite() {
        invalid(format!("after must be a finite timestamp, not {t}"));
    }
    let pg_micros: i64 = t.into();
    let after = pg_micros.checked_add(PG_EPOCH_OFFSET_MICROS).and_then(DateTime::from_timestamp_micros)?;
    // The engine's calendar starts at the year 1.
    if after.year() < 1 {
        invalid(format!("after must not be before the year 1, not {t}"));
    }
    Some(after)
}

fn to_postgres(t: DateTime<Utc>) -> Option<TimestampWithTimeZone> {
    TimestampWithTimeZone::try_from(t.timestamp_micros() - PG_EPOCH_OFFSET_MICROS).ok()
}

/// The first firing of `cron` in `timezone` strictly after `after`; NULL if
/// there is none by about the year 5000. 22023 for a bad expression or zone.
#[pg_extern(stable, parallel_safe)]
fn next_run(
    cron: Option<&str>,
    timezone: default!(Option<&str>, "'UTC'"),
    after: default!(Option<TimestampWithTimeZone>, "now()"),
) -> Option<TimestampWithTimeZone> {
    let cron = required("cron", cron);
    let timezone = required("timezone", timezone);
    let schedule = Schedule::parse(cron, timezone).unwrap_or_else(|e| invalid(e.to_string()));
    let after = to_chrono(required("after", after))?;
    schedule.next_after(after).and_then(to_postgres)
}

/// Wakes the background worker once the calling transaction commits, so a
/// new or resumed schedule is seen at once rather than after its next nap.
#[pg_extern(volatile, name = "_wake_worker")]
fn wake_worker() {
    crate::worker::wake_on_commit();
}
