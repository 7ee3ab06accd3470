//! The job state machine's invariants, checked on every row written to
//! jobs.job by one CHECK constraint (sql/invariants.sql).
//!
//! Why a function and not a CHECK constraint per rule: PostgreSQL rebuilds a
//! table's CHECK expressions for every statement (read back from the catalog
//! string, planned, compiled), and the hot paths are single-row statements.
//! Written as seven declarative constraints the rules cost about 50 µs per
//! claim, complete or enqueue, more than the row change itself; one call of
//! this function is a few nodes to rebuild.

use pgrx::prelude::*;

/// The longest queue and job type name, in characters.
const MAX_NAME: i32 = 128;

/// One job row's columns that the invariants relate. Text columns arrive as
/// their length in characters or as present/absent: counted by PostgreSQL in
/// the database's encoding, which need not be UTF-8.
pub struct JobRow<'a> {
    pub state: Option<&'a str>,
    pub queue_length: Option<i32>,
    pub job_type_length: Option<i32>,
    pub attempts: Option<i32>,
    pub max_attempts: Option<i32>,
    pub has_lease_token: bool,
    pub has_lease_until: bool,
    pub has_worker: bool,
    pub has_started_at: bool,
    pub has_finished_at: bool,
}

fn valid_name_length(length: Option<i32>) -> bool {
    length.is_some_and(|n| (1..=MAX_NAME).contains(&n))
}

impl JobRow<'_> {
    /// - queue and job type: 1 to 128 characters;
    /// - 0 <= attempts <= max_attempts, max_attempts >= 1;
    /// - finished_at is set exactly in the terminal states;
    /// - lease_token and lease_until are set exactly while running;
    /// - a running job is an attempt: attempts >= 1, started_at and worker_id set.
    pub fn valid(&self) -> bool {
        let (Some(state), Some(attempts), Some(max_attempts)) = (self.state, self.attempts, self.max_attempts) else {
            return false;
        };
        let running = state == "running";
        let terminal = matches!(state, "completed" | "failed" | "canceled");
        valid_name_length(self.queue_length)
            && valid_name_length(self.job_type_length)
            && max_attempts >= 1
            && (0..=max_attempts).contains(&attempts)
            && self.has_finished_at == terminal
            && self.has_lease_token == running
            && self.has_lease_until == running
            && (!running || (attempts >= 1 && self.has_started_at && self.has_worker))
    }
}

/// Not STRICT: a NULL where the invariants demand a value must fail the
/// check, not pass it as a NULL result would. `state` is the enum's label
/// (ASCII in any encoding).
#[allow(clippy::too_many_arguments)]
#[pg_extern(immutable, parallel_safe, name = "_job_row_valid")]
fn job_row_valid(
    state: Option<&str>,
    queue_length: Option<i32>,
    job_type_length: Option<i32>,
    attempts: Option<i32>,
    max_attempts: Option<i32>,
    lease_token: Option<pgrx::Uuid>,
    lease_until: Option<TimestampWithTimeZone>,
    has_worker: Option<bool>,
    started_at: Option<TimestampWithTimeZone>,
    finished_at: Option<TimestampWithTimeZone>,
) -> bool {
    JobRow {
        state,
        queue_length,
        job_type_length,
        attempts,
        max_attempts,
        has_lease_token: lease_token.is_some(),
        has_lease_until: lease_until.is_some(),
        has_worker: has_worker == Some(true),
        has_started_at: started_at.is_some(),
        has_finished_at: finished_at.is_some(),
    }
    .valid()
}

#[cfg(test)]
mod unit_tests {
    use super::JobRow;

    fn queued() -> JobRow<'static> {
        JobRow {
            state: Some("queued"),
            queue_length: Some(7),
            job_type_length: Some(5),
            attempts: Some(0),
            max_attempts: Some(3),
            has_lease_token: false,
            has_lease_until: false,
            has_worker: false,
            has_started_at: false,
            has_finished_at: false,
        }
    }

    fn running() -> JobRow<'static> {
        JobRow {
            state: Some("running"),
            attempts: Some(1),
            has_lease_token: true,
            has_lease_until: true,
            has_worker: true,
            has_started_at: true,
            ..queued()
        }
    }

    #[test]
    fn each_state_has_a_valid_shape() {
        assert!(queued().valid());
        assert!(running().valid());
        for state in ["completed", "failed", "canceled"] {
            let done = JobRow { state: Some(state), has_finished_at: true, attempts: Some(1), ..queued() };
            assert!(done.valid(), "{state}");
            assert!(!JobRow { has_finished_at: false, ..done }.valid(), "{state} without finished_at");
        }
    }

    #[test]
    fn broken_rows_are_refused() {
        let broken = [
            JobRow { has_lease_token: false, ..running() },
            JobRow { has_lease_until: false, ..running() },
            JobRow { has_worker: false, ..running() },
            JobRow { has_started_at: false, ..running() },
            JobRow { attempts: Some(0), ..running() },
            JobRow { has_lease_token: true, ..queued() },
            JobRow { has_finished_at: true, ..queued() },
            JobRow { attempts: Some(4), ..queued() },
            JobRow { attempts: Some(-1), ..queued() },
            JobRow { max_attempts: Some(0), attempts: Some(0), ..queued() },
            JobRow { queue_length: Some(0), ..queued() },
            JobRow { job_type_length: Some(129), ..queued() },
            JobRow { state: None, ..queued() },
            JobRow { attempts: None, ..queued() },
            JobRow { queue_length: None, ..queued() },
        ];
        for (i, row) in broken.iter().enumerate() {
            assert!(!row.valid(), "case {i}");
        }
        assert!(JobRow { queue_length: Some(128), job_type_length: Some(1), ..queued() }.valid());
    }
}
