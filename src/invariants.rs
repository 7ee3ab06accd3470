//! The job state machine's invariants, checked on every row written to
//! jobs.job by one CHECK constraint (sql/invariants.sql).
//!
//! Why one function of the whole row and not a CHECK constraint per rule, or
//! a function of the columns: PostgreSQL rebuilds a table's CHECK
//! expressions for every statement (read back from the catalog string,
//! planned, compiled), and the hot paths are single-row statements. Written
//! as seven declarative constraints the rules cost about 50 µs per claim,
//! complete or enqueue, more than the row change itself; as a function of
//! ten column expressions (lengths, a cast, a null test) about 23 µs; as a
//! function of the row, one variable and one call, about 5 µs.

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

/// The columns of jobs.job that the invariants read, by attribute number.
struct Columns {
    state: usize,
    queue: usize,
    job_type: usize,
    attempts: usize,
    max_attempts: usize,
    lease_token: usize,
    lease_until: usize,
    worker_id: usize,
    started_at: usize,
    finished_at: usize,
}

impl Columns {
    /// Looked up by name in the row's descriptor on every call: attribute
    /// numbers differ between a fresh install and an updated one, and the
    /// type may be dropped and recreated while a backend lives.
    unsafe fn of(tupdesc: pg_sys::TupleDesc) -> Option<Columns> {
        let mut found: [Option<usize>; 10] = [None; 10];
        const NAMES: [&[u8]; 10] = [
            b"state",
            b"queue",
            b"job_type",
            b"attempts",
            b"max_attempts",
            b"lease_token",
            b"lease_until",
            b"worker_id",
            b"started_at",
            b"finished_at",
        ];
        // SAFETY: a valid descriptor, released by the caller, not here.
        let desc = unsafe { pgrx::PgTupleDesc::from_pg_unchecked(tupdesc) };
        for (i, attr) in desc.iter().enumerate() {
            if attr.attisdropped {
                continue;
            }
            let name = unsafe { std::ffi::CStr::from_ptr(attr.attname.data.as_ptr()) }.to_bytes();
            if let Some(k) = NAMES.iter().position(|n| *n == name) {
                found[k] = Some(i);
            }
        }
        let [
            state,
            queue,
            job_type,
            attempts,
            max_attempts,
            lease_token,
            lease_until,
            worker_id,
            started_at,
            finished_at,
        ] = found;
        Some(Columns {
            state: state?,
            queue: queue?,
            job_type: job_type?,
            attempts: attempts?,
            max_attempts: max_attempts?,
            lease_token: lease_token?,
            lease_until: lease_until?,
            worker_id: worker_id?,
            started_at: started_at?,
            finished_at: finished_at?,
        })
    }
}

/// Length in characters of a text datum, in the database's encoding.
unsafe fn text_length(datum: pg_sys::Datum) -> i32 {
    // SAFETY: a non-null text datum, possibly short-header or toasted.
    unsafe {
        let text = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        pg_sys::pg_mbstrlen_with_len(
            pgrx::varlena::vardata_any(text).cast(),
            pgrx::varlena::varsize_any_exhdr(text) as i32,
        )
    }
}

/// Whether `row`, a jobs.job, keeps the invariants. A NULL where they demand
/// a value fails the check (not STRICT: a NULL result would pass it).
unsafe fn row_valid(row: pg_sys::Datum) -> bool {
    // SAFETY: the argument is a composite datum of jobs.job's row type; its
    // descriptor is pinned while the values are read and released after.
    unsafe {
        let header = pg_sys::pg_detoast_datum(row.cast_mut_ptr()) as pg_sys::HeapTupleHeader;
        let fields = (*header).t_choice.t_datum;
        let tupdesc = pg_sys::lookup_rowtype_tupdesc(fields.datum_typeid, fields.datum_typmod);
        let natts = (*tupdesc).natts as usize;
        let mut values = vec![pg_sys::Datum::from(0); natts];
        let mut nulls = vec![true; natts];
        let mut tuple = pg_sys::HeapTupleData {
            t_len: pgrx::varlena::varsize(header.cast()) as u32,
            t_data: header,
            ..Default::default()
        };
        pg_sys::heap_deform_tuple(&mut tuple, tupdesc, values.as_mut_ptr(), nulls.as_mut_ptr());
        let columns = Columns::of(tupdesc);
        if (*tupdesc).tdrefcount >= 0 {
            pg_sys::DecrTupleDescRefCount(tupdesc);
        }
        let Some(c) = columns else {
            error!("jobs._job_row_valid: a jobs.job row lacks one of the columns its invariants read");
        };
        let present = |i: usize| !nulls[i];
        let int = |i: usize| present(i).then(|| values[i].value() as i32);
        let length = |i: usize| present(i).then(|| text_length(values[i]));
        let label = present(c.state).then(|| enum_label(values[c.state])).flatten();
        JobRow {
            state: label.as_deref(),
            queue_length: length(c.queue),
            job_type_length: length(c.job_type),
            attempts: int(c.attempts),
            max_attempts: int(c.max_attempts),
            has_lease_token: present(c.lease_token),
            has_lease_until: present(c.lease_until),
            has_worker: present(c.worker_id),
            has_started_at: present(c.started_at),
            has_finished_at: present(c.finished_at),
        }
        .valid()
    }
}

/// The label of an enum value (the state), from the catalog cache.
unsafe fn enum_label(value: pg_sys::Datum) -> Option<String> {
    // SAFETY: a syscache lookup by OID, released before returning.
    unsafe {
        let tuple = pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::ENUMOID as i32, value);
        if tuple.is_null() {
            return None;
        }
        let form = pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_enum>(tuple);
        let label = std::ffi::CStr::from_ptr((*form).enumlabel.data.as_ptr()).to_str().ok().map(str::to_owned);
        pg_sys::ReleaseSysCache(tuple);
        label
    }
}

/// `jobs._job_row_valid(jobs.job)`, declared in sql/invariants.sql: a
/// function of a composite type that pgrx's macros do not take raw.
#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_job_row_valid() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn job_row_valid(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called by the function manager with one argument.
    let valid = match unsafe { pgrx::fcinfo::pg_getarg_datum(fcinfo, 0) } {
        Some(row) => unsafe { row_valid(row) },
        None => false,
    };
    pg_sys::Datum::from(valid)
}

/// The column-wise form of the check that 0.2.0's schema calls
/// (`jobs._job_row_valid(text, int, int, int, int, uuid, timestamptz, bool,
/// timestamptz, timestamptz)`, C symbol `job_row_valid_wrapper`): a database
/// keeps writing jobs between installing this library and
/// `ALTER EXTENSION jobs UPDATE`, which replaces it with the row form.
#[unsafe(no_mangle)]
pub extern "C" fn pg_finfo_job_row_valid_wrapper() -> &'static pg_sys::Pg_finfo_record {
    const V1: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1
}

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
