//! `jobs.enqueue`, compiled, for the reason src/complete.rs gives. Its
//! common call, valid arguments without an idempotency key, is one `INSERT`
//! through a kept plan (src/kept_plan.rs), then the queue's position and
//! announcement (src/position.rs) straight from Rust. The PL/pgSQL function
//! saved and restored its `SET search_path`, evaluated an expression of
//! checks and ran `jobs._queued` as a second statement: one-row enqueues
//! from 8 pgbench connections went from 8,900–9,600 a second to
//! 11,000–11,800 (the floor's `INSERT`: 15,300). Every other call goes to
//! the PL/pgSQL `jobs._enqueue` (sql/enqueue.sql), which refuses bad
//! arguments with the contract's errors and runs the idempotent insert
//! with its `ON CONFLICT` loop.

use crate::invariants;
use crate::kept_plan::{self, KeptPlan};
use crate::position;
use pgrx::prelude::*;

const ENQUEUE_TYPES: &[pg_sys::Oid] = &[
    pg_sys::TEXTOID,
    pg_sys::JSONBOID,
    pg_sys::TEXTOID,
    pg_sys::TIMESTAMPTZOID,
    pg_sys::INT4OID,
    pg_sys::INT4OID,
    pg_sys::TEXTOID,
];

thread_local! {
    /// `RETURNING j`: the row as a datum of jobs.job's row type, which the
    /// function returns; its id and the table's oid for the position.
    static INSERT: KeptPlan = const { KeptPlan::new(
        c"INSERT INTO jobs.job AS j (queue, job_type, payload, priority, run_at, max_attempts)
          VALUES ($3, $1, $2, $5, $4, $6)
          RETURNING j, j.id, j.tableoid",
        // The arguments but the idempotency key.
        ENQUEUE_TYPES.split_at(6).0,
    ) };

    static OTHERWISE: KeptPlan = const { KeptPlan::new(
        c"SELECT jobs._enqueue($1, $2, $3, $4, $5, $6, $7)",
        ENQUEUE_TYPES,
    ) };
}

/// A timestamptz that is neither -infinity nor infinity.
fn finite(timestamp: pg_sys::Datum) -> bool {
    let micros = timestamp.value() as i64;
    micros != i64::MIN && micros != i64::MAX
}

finfo_v1!(pg_finfo_enqueue);
/// `jobs.enqueue(job_type text, payload jsonb DEFAULT '{}', queue text
/// DEFAULT 'default', run_at timestamptz DEFAULT NULL, priority int DEFAULT
/// 0, max_attempts int DEFAULT NULL, idempotency_key text DEFAULT NULL)
/// RETURNS jobs.job`, declared in sql/enqueue.sql.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn enqueue(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called by the function manager with the seven arguments of the declaration.
    unsafe {
        let args: [Option<pg_sys::Datum>; 7] = std::array::from_fn(|i| pgrx::fcinfo::pg_getarg_datum(fcinfo, i));
        let [job_type, payload, queue, run_at, priority, max_attempts, idempotency_key] = args;
        let common = invariants::is_name(job_type)
            && invariants::queue_valid(queue)
            && payload.is_some()
            && priority.is_some()
            && run_at.is_none_or(finite)
            && max_attempts.is_none_or(|m| m.value() as i32 >= 1)
            && idempotency_key.is_none();
        kept_plan::connect();
        if !common {
            let code = OTHERWISE.with(|p| p.execute(&args, 1));
            if code != pg_sys::SPI_OK_SELECT as i32 {
                error!("jobs.enqueue: its statement failed (SPI code {code})");
            }
            let job = pg_sys::SPI_datumTransfer(kept_plan::column(0, 1).expect("a row"), false, -1);
            pg_sys::SPI_finish();
            return job;
        }
        // now(), as the column defaults have it.
        let run_at = run_at.unwrap_or(pg_sys::Datum::from(pg_sys::GetCurrentTransactionStartTimestamp()));
        let max_attempts = max_attempts.unwrap_or(pg_sys::Datum::from(crate::guc::DEFAULT_MAX_ATTEMPTS.get()));
        let values = [job_type, payload, queue, Some(run_at), priority, Some(max_attempts)];
        let code = INSERT.with(|p| p.execute(&values, 1));
        if code != pg_sys::SPI_OK_INSERT_RETURNING as i32 {
            error!("jobs.enqueue: its insert failed (SPI code {code})");
        }
        let id = kept_plan::column(0, 2).expect("not null").value() as i64;
        let relation = pg_sys::Oid::from(kept_plan::column(0, 3).expect("not null").value() as u32);
        // Copied into the caller's memory: SPI's goes with SPI_finish.
        let job = pg_sys::SPI_datumTransfer(kept_plan::column(0, 1).expect("a row"), false, -1);
        pg_sys::SPI_finish();
        // Claims start at or below it; announced if due, once per queue per
        // transaction, after the commit (src/notify.rs).
        let key =
            position::Key { priority: priority.expect("checked").value() as i32, run_at: run_at.value() as i64, id };
        position::queued_row(relation, queue.expect("checked"), key);
        job
    }
}
