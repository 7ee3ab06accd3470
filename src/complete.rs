//! `jobs.complete` and `jobs.complete_batch`, compiled: the calls that end
//! a worker's attempts, one job or a claimed batch at a time.
//!
//! Why not PL/pgSQL: measured against the same `UPDATE` sent by the client
//! (8 connections, 2 cores), the PL/pgSQL function completed about 15 %
//! fewer jobs a second: its call, its statement's executor start and
//! snapshot, and the row it copies into a variable and back cost about 8 µs
//! a call in the server, half as much as the `UPDATE` itself. These
//! functions run the same guarded `UPDATE`s through kept plans
//! (src/kept_plan.rs); `complete_batch` without PL/pgSQL's array of the
//! completed rows, which it needed to name an offender and return them.

use crate::kept_plan::{self, KeptPlan};
use pgrx::prelude::*;

thread_local! {
    /// The completed row is the attempt's history row too (jobs.job_run).
    /// `RETURNING j`: the row as a datum of jobs.job's row type, which is
    /// what the function returns.
    static COMPLETE: KeptPlan = const { KeptPlan::new(
        c"UPDATE jobs.job j
          SET state = 'completed', result = $3, lease_token = NULL, lease_until = NULL,
              finished_at = pg_catalog.now(), updated_at = pg_catalog.now()
          WHERE j.id OPERATOR(pg_catalog.=) $1
            AND j.state OPERATOR(pg_catalog.=) 'running'
            AND j.lease_token OPERATOR(pg_catalog.=) $2
          RETURNING j",
        &[pg_sys::INT8OID, pg_sys::UUIDOID, pg_sys::JSONBOID],
    ) };
}

finfo_v1!(pg_finfo_complete);
/// `jobs.complete(job_id bigint, lease_token uuid, result jsonb DEFAULT NULL)
/// RETURNS jobs.job`, declared in sql/finish.sql.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn complete(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called by the function manager with the three arguments of the declaration.
    unsafe {
        let args = [0, 1, 2].map(|i| pgrx::fcinfo::pg_getarg_datum(fcinfo, i));
        let (Some(job_id), Some(_)) = (args[0], args[1]) else {
            Spi::run_with_args(
                "SELECT jobs._check_not_null('job_id', $1), jobs._check_not_null('lease_token', $2)",
                &[kept_plan::param(args[0], pg_sys::INT8OID), kept_plan::param(args[1], pg_sys::UUIDOID)],
            )
            .expect("a null argument raises");
            unreachable!("jobs._check_not_null raises for a null argument");
        };
        kept_plan::connect();
        let code = COMPLETE.with(|p| p.execute(&args, 1));
        if code != pg_sys::SPI_OK_UPDATE_RETURNING as i32 {
            error!("jobs.complete: its update failed (SPI code {code})");
        }
        // Copied into the caller's memory: SPI's goes with SPI_finish.
        let done = (pg_sys::SPI_processed == 1)
            .then(|| pg_sys::SPI_datumTransfer(kept_plan::column(0, 1).expect("a row"), false, -1));
        pg_sys::SPI_finish();
        done.unwrap_or_else(|| {
            Spi::run_with_args("SELECT jobs._raise_not_held($1)", &[kept_plan::param(Some(job_id), pg_sys::INT8OID)])
                .expect("jobs._raise_not_held raises");
            unreachable!("jobs._raise_not_held raises");
        })
    }
}

thread_local! {
    /// Each (id, token) pair finds its row by primary key; ids do not repeat,
    /// so no row is met twice. `ROWS FROM` pairs the arrays: the
    /// two-argument `unnest(a, b)` is expanded into it only when written
    /// unqualified, which a caller's `search_path` could redirect.
    /// `RETURNING j.*`: the rows as the function returns them.
    static COMPLETE_BATCH: KeptPlan = const { KeptPlan::new(
        c"UPDATE jobs.job j
          SET state = 'completed', lease_token = NULL, lease_until = NULL,
              finished_at = pg_catalog.now(), updated_at = pg_catalog.now()
          FROM ROWS FROM (pg_catalog.unnest($1), pg_catalog.unnest($2)) AS b (id, lease_token)
          WHERE j.id OPERATOR(pg_catalog.=) b.id
            AND j.state OPERATOR(pg_catalog.=) 'running'
            AND j.lease_token OPERATOR(pg_catalog.=) b.lease_token
          RETURNING j.*",
        &[pg_sys::INT8ARRAYOID, pg_sys::UUIDARRAYOID],
    ) };
}

/// The job ids of a valid batch (no nulls, as many as tokens, none twice).
unsafe fn batch_ids(job_ids: Option<pg_sys::Datum>, lease_tokens: Option<pg_sys::Datum>) -> Option<Vec<i64>> {
    unsafe {
        let ids = Array::<i64>::from_datum(job_ids?, false)?;
        let tokens = Array::<pgrx::Uuid>::from_datum(lease_tokens?, false)?;
        if ids.len() != tokens.len() || ids.contains_nulls() || tokens.contains_nulls() {
            return None;
        }
        let ids: Vec<i64> = ids.iter_deny_null().collect();
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        sorted.windows(2).all(|w| w[0] != w[1]).then_some(ids)
    }
}

finfo_v1!(pg_finfo_complete_batch);
/// `jobs.complete_batch(job_ids bigint[], lease_tokens uuid[]) RETURNS SETOF
/// jobs.job`, declared in sql/finish.sql: the completed rows in id order.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn complete_batch(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called by the function manager with the two arguments of the declaration.
    unsafe {
        let args = [0, 1].map(|i| pgrx::fcinfo::pg_getarg_datum(fcinfo, i));
        let Some(ids) = batch_ids(args[0], args[1]) else {
            Spi::run_with_args(
                "SELECT jobs._refuse_complete_batch($1, $2)",
                &[kept_plan::param(args[0], pg_sys::INT8ARRAYOID), kept_plan::param(args[1], pg_sys::UUIDARRAYOID)],
            )
            .expect("an invalid argument raises");
            unreachable!("jobs._refuse_complete_batch raises");
        };
        let out = kept_plan::Rows::begin(fcinfo, "jobs.complete_batch");
        kept_plan::connect();
        let code = COMPLETE_BATCH.with(|p| p.execute(&args, 0));
        if code != pg_sys::SPI_OK_UPDATE_RETURNING as i32 {
            error!("jobs.complete_batch: its update failed (SPI code {code})");
        }
        let completed = pg_sys::SPI_processed as usize;
        let id = if completed > 0 { kept_plan::column_number(c"id") } else { 0 };
        let mut done: Vec<(i64, usize)> =
            (0..completed).map(|i| (kept_plan::column(i, id).expect("not null").value() as i64, i)).collect();
        done.sort_unstable_by_key(|&(id, _)| id);
        if done.len() < ids.len() {
            // The first job of the call not completed. Raising undoes the
            // completions: all or nothing.
            let offender = ids
                .iter()
                .copied()
                .find(|id| done.binary_search_by_key(id, |&(done_id, _)| done_id).is_err())
                .expect("a job not completed");
            pg_sys::SPI_finish();
            Spi::run_with_args("SELECT jobs._raise_not_held($1)", &[offender.into()])
                .expect("jobs._raise_not_held raises");
            unreachable!("jobs._raise_not_held raises");
        }
        for (_, i) in done {
            out.put_result_row(i);
        }
        pg_sys::SPI_finish();
        out.finish()
    }
}
