//! The job state machine's invariants, checked on every row written to
//! jobs.job by one CHECK constraint (sql/invariants.sql).
//!
//! Why one function of the plain columns and not a CHECK constraint per
//! rule: PostgreSQL rebuilds a table's CHECK expressions for every statement
//! (read back from the catalog string, planned, compiled), and the hot paths
//! are single-row statements. Written as seven declarative constraints the
//! rules cost about 50 µs per claim, complete or enqueue, more than the row
//! change itself; as a function of ten expressions (a cast to text, two
//! `length` calls, a null test) about 23 µs per statement. Given the columns
//! themselves, each read without conversion, it costs a few µs per
//! statement. (A function of the whole row is as cheap to rebuild but costs
//! about 2 µs more per row, for the copy of the row: dearer for batches.)

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

/// Length in characters of a text datum, in the database's encoding.
pub(crate) unsafe fn text_length(datum: pg_sys::Datum) -> i32 {
    // SAFETY: a non-null text datum, possibly short-header or toasted.
    unsafe {
        let text = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        pg_sys::pg_mbstrlen_with_len(
            pgrx::varlena::vardata_any(text).cast(),
            pgrx::varlena::varsize_any_exhdr(text) as i32,
        )
    }
}

/// A job type or queue name as `jobs._is_name` has it: present, 1 to 128
/// characters.
pub(crate) unsafe fn is_name(value: Option<pg_sys::Datum>) -> bool {
    value.is_some_and(|value| (1..=128).contains(&unsafe { text_length(value) }))
}

/// A queue name that API calls take: a name, and not `sql` (SQL jobs'
/// queue, which only the extension's own functions use).
pub(crate) unsafe fn queue_valid(queue: Option<pg_sys::Datum>) -> bool {
    let Some(queue) = queue else { return false };
    // The bytes are copied only for a name as long as `sql`.
    unsafe {
        let characters = text_length(queue);
        (1..=128).contains(&characters) && (characters != 3 || crate::position::text_bytes(queue) != b"sql")
    }
}

/// The state an enum value stands for, by its label in the catalog cache;
/// None for a label that is no state.
unsafe fn enum_label(value: pg_sys::Datum) -> Option<&'static str> {
    // SAFETY: a syscache lookup by OID, released before returning; the
    // label is matched against the states and only a static one returned.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::ENUMOID as i32, value);
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_enum>(tuple);
        let label = std::ffi::CStr::from_ptr((*form).enumlabel.data.as_ptr()).to_bytes();
        let state =
            ["queued", "running", "completed", "failed", "canceled"].into_iter().find(|s| s.as_bytes() == label);
        pg_sys::ReleaseSysCache(tuple);
        state
    }
}

finfo_v1!(pg_finfo_job_row_valid);
/// `jobs._job_row_valid(state, queue, job_type, attempts, max_attempts,
/// lease_token, lease_until, worker_id, started_at, finished_at)`, declared
/// in sql/invariants.sql with the columns' own types. Written against the
/// function manager rather than through `#[pg_extern]`: the arguments are
/// plain columns, so the constraint is cheap to rebuild, and each is read
/// here without a conversion (the state's label from the catalog cache, the
/// texts' lengths in place). Not STRICT: a NULL where the invariants demand
/// a value fails the check, as a NULL result would pass it.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn job_row_valid(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called by the function manager with the ten arguments of the
    // declaration: jobs.job_state, two text, two int, uuid, timestamptz,
    // text, two timestamptz.
    let arg = |i: usize| unsafe { pgrx::fcinfo::pg_getarg_datum(fcinfo, i) };
    let int = |i: usize| arg(i).map(|d| d.value() as i32);
    let length = |i: usize| arg(i).map(|d| unsafe { text_length(d) });
    let valid = JobRow {
        state: arg(0).and_then(|d| unsafe { enum_label(d) }),
        queue_length: length(1),
        job_type_length: length(2),
        attempts: int(3),
        max_attempts: int(4),
        has_lease_token: arg(5).is_some(),
        has_lease_until: arg(6).is_some(),
        has_worker: arg(7).is_some(),
        has_started_at: arg(8).is_some(),
        has_finished_at: arg(9).is_some(),
    }
    .valid();
    pg_sys::Datum::from(valid)
}

finfo_v1!(pg_finfo_job_row_valid_wrapper);
/// The column-wise form of the check that 0.2.0's schema calls
/// (`jobs._job_row_valid(text, int, int, int, int, uuid, timestamptz, bool,
/// timestamptz, timestamptz)`, C symbol `job_row_valid_wrapper`): a database
/// keeps writing jobs between installing this library and
/// `ALTER EXTENSION jobs UPDATE`, which replaces it with the form above.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn job_row_valid_wrapper(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called by the function manager with the ten arguments of
    // 0.2.0's declaration: text, four int, uuid, timestamptz, bool, two timestamptz.
    let arg = |i: usize| unsafe { pgrx::fcinfo::pg_getarg_datum(fcinfo, i) };
    let state = arg(0).and_then(|t| unsafe { pgrx::text_to_rust_str(t.cast_mut_ptr()) }.ok().map(str::to_owned));
    let int = |i: usize| arg(i).map(|d| d.value() as i32);
    let valid = JobRow {
        state: state.as_deref(),
        queue_length: int(1),
        job_type_length: int(2),
        attempts: int(3),
        max_attempts: int(4),
        has_lease_token: arg(5).is_some(),
        has_lease_until: arg(6).is_some(),
        has_worker: arg(7).is_some_and(|d| d.value() != 0),
        has_started_at: arg(8).is_some(),
        has_finished_at: arg(9).is_some(),
    }
    .valid();
    pg_sys::Datum::from(valid)
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
