//! `jobs.claim`, compiled, for the reason src/complete.rs gives: the same
//! claim statement through a kept plan (src/kept_plan.rs), without a
//! PL/pgSQL call, its variables and the copy of every claimed row into a
//! result set and back out.
//!
//! How the statement finds and orders work, and the position it starts from,
//! are in src/position.rs.

use crate::kept_plan::{self, KeptPlan};
use crate::position;
use pgrx::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use std::cell::RefCell;

const CLAIM_TYPES: &[pg_sys::Oid] =
    &[pg_sys::TEXTOID, pg_sys::TEXTOID, pg_sys::INT4OID, pg_sys::INTERVALOID, pg_sys::TEXTARRAYOID, pg_sys::INT8OID];

thread_local! {
    /// SKIP LOCKED: rows another claimer is taking right now are passed
    /// over, never waited for. The subquery walks job_claim_idx in claim
    /// order from the queue's position (no queued row lies before it); the
    /// ids come back as an array so the update finds each row by primary key
    /// (a join let the planner hash against a scan of the whole table).
    /// `RETURNING j.*`: the rows as the function returns them. An update
    /// returns its rows in the order it finds them (here the primary
    /// key's), so `claim` sorts them by their claim-order key (a sort in the
    /// statement needs it wrapped in a CTE, whose every row is stored and
    /// read again).
    static CLAIM: KeptPlan = const { KeptPlan::new(
        c"UPDATE jobs.job j
          SET state = 'running',
              attempts = j.attempts OPERATOR(pg_catalog.+) 1,
              lease_token = jobs._lease_token(),
              lease_until = pg_catalog.now() OPERATOR(pg_catalog.+) $4,
              worker_id = $1,
              started_at = pg_catalog.now(),
              updated_at = pg_catalog.now()
          WHERE j.id OPERATOR(pg_catalog.=) ANY (ARRAY(
              SELECT p.id
              FROM jobs.job p
              WHERE p.state OPERATOR(pg_catalog.=) 'queued'
                AND p.queue OPERATOR(pg_catalog.=) $2
                AND (p.priority, p.run_at, p.id) OPERATOR(pg_catalog.>=)
                    (jobs._claim_from_priority('jobs.job', $2, $6),
                     jobs._claim_from_run_at('jobs.job', $2, $6),
                     jobs._claim_from_id('jobs.job', $2, $6))
                AND p.run_at OPERATOR(pg_catalog.<=) pg_catalog.now()
                AND ($5 IS NULL OR p.job_type OPERATOR(pg_catalog.=) ANY ($5))
              ORDER BY p.priority, p.run_at, p.id
              LIMIT $3
              FOR UPDATE SKIP LOCKED))
          RETURNING j.*",
        CLAIM_TYPES,
    ) };

    /// While an old snapshot keeps claimed jobs' index entries alive, the
    /// position moves up to the first queued row (a new statement: it sees
    /// this claim's rows as taken).
    static RAISE: KeptPlan = const { KeptPlan::new(
        c"SELECT jobs._claim_raise($2, first.priority, first.run_at, first.id)
          FROM (SELECT) one
          LEFT JOIN LATERAL (
              SELECT p.priority, p.run_at, p.id
              FROM jobs.job p
              WHERE p.state OPERATOR(pg_catalog.=) 'queued'
                AND p.queue OPERATOR(pg_catalog.=) $1
                AND (p.priority, p.run_at, p.id) OPERATOR(pg_catalog.>=)
                    (jobs._claim_from_priority('jobs.job', $1, $2),
                     jobs._claim_from_run_at('jobs.job', $1, $2),
                     jobs._claim_from_id('jobs.job', $1, $2))
              ORDER BY p.priority, p.run_at, p.id
              LIMIT 1) first ON true",
        &[pg_sys::TEXTOID, pg_sys::INT8OID],
    ) };
}

thread_local! {
    /// This backend's generator of lease tokens, with the process that
    /// seeded it: a process forked from one that had seeded it seeds anew.
    static TOKENS: RefCell<Option<(i32, ChaCha20Rng)>> = const { RefCell::new(None) };
}

finfo_v1!(pg_finfo_lease_token);
/// `jobs._lease_token() RETURNS uuid`, declared in sql/claim.sql: a claim's
/// lease token, a random (version 4) UUID as `gen_random_uuid` makes, from
/// a ChaCha20 stream seeded once per backend from `pg_strong_random`. A
/// token is what fences a worker, so it must stay as unguessable; OpenSSL's
/// generator behind `gen_random_uuid` took 4 % of the server's time in
/// batch mode (claim 100 + `complete_batch`), for 16 bytes a job.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn lease_token(_fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    let mut bytes = [0u8; 16];
    TOKENS.with(|tokens| {
        let mut tokens = tokens.borrow_mut();
        let pid = unsafe { pg_sys::MyProcPid };
        if tokens.as_ref().is_none_or(|(seeded_in, _)| *seeded_in != pid) {
            let mut seed = [0u8; 32];
            if !unsafe { pg_sys::pg_strong_random(seed.as_mut_ptr().cast(), seed.len()) } {
                error!("jobs: could not generate random values");
            }
            *tokens = Some((pid, ChaCha20Rng::from_seed(seed)));
        }
        tokens.as_mut().expect("seeded").1.fill_bytes(&mut bytes);
    });
    // RFC 9562: version 4, variant 10.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    // SAFETY: a uuid is 16 bytes passed by reference, in the caller's memory context.
    unsafe {
        let uuid = pg_sys::palloc(bytes.len()).cast::<u8>();
        std::ptr::copy_nonoverlapping(bytes.as_ptr(), uuid, bytes.len());
        pg_sys::Datum::from(uuid)
    }
}

/// `lease` NULL (the default lease), or within (0, 100 years].
fn lease_valid(lease: Option<pg_sys::Datum>) -> bool {
    let Some(lease) = lease else { return true };
    let cmp = |months: i32| unsafe {
        let bound = Interval::new(months, 0, 0).expect("a valid interval").into_datum().expect("not null");
        pgrx::direct_function_call::<i32>(pg_sys::interval_cmp, &[Some(lease), Some(bound)]).expect("not null")
    };
    cmp(0) > 0 && cmp(1200) <= 0
}

finfo_v1!(pg_finfo_claim);
/// `jobs.claim(worker_id text, queue text DEFAULT 'default', max_jobs int
/// DEFAULT 1, lease interval DEFAULT NULL, job_types text[] DEFAULT NULL)
/// RETURNS SETOF jobs.job`, declared in sql/claim.sql.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn claim(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called by the function manager with the five arguments of the declaration.
    unsafe {
        let arg = |i: usize| pgrx::fcinfo::pg_getarg_datum(fcinfo, i);
        let (worker_id, queue, max_jobs, lease, job_types) = (arg(0), arg(1), arg(2), arg(3), arg(4));
        let valid = worker_id.is_some()
            && crate::invariants::queue_valid(queue)
            && max_jobs.is_some_and(|m| m.value() as i32 >= 1)
            && lease_valid(lease);
        if !valid {
            Spi::run_with_args(
                "SELECT jobs._refuse_claim($1, $2, $3, $4)",
                &[
                    kept_plan::param(worker_id, pg_sys::TEXTOID),
                    kept_plan::param(queue, pg_sys::TEXTOID),
                    kept_plan::param(max_jobs, pg_sys::INT4OID),
                    kept_plan::param(lease, pg_sys::INTERVALOID),
                ],
            )
            .expect("an invalid argument raises");
            unreachable!("jobs._refuse_claim raises");
        }
        let lease = lease.unwrap_or_else(|| crate::backoff::default_lease().into_datum().expect("not null"));
        let ticket = position::claim_ticket();
        let args = [worker_id, queue, max_jobs, Some(lease), job_types, Some(pg_sys::Datum::from(ticket))];

        let out = kept_plan::Rows::begin(fcinfo, "jobs.claim");

        kept_plan::connect();
        let code = CLAIM.with(|p| p.execute(&args, 0));
        if code != pg_sys::SPI_OK_UPDATE_RETURNING as i32 {
            error!("jobs.claim: its statement failed (SPI code {code})");
        }
        let taken = pg_sys::SPI_processed as usize;
        let mut rows: Vec<(position::Key, usize)> = Vec::with_capacity(taken);
        if taken > 0 {
            let (priority, run_at, id) = (
                kept_plan::column_number(c"priority"),
                kept_plan::column_number(c"run_at"),
                kept_plan::column_number(c"id"),
            );
            rows.extend((0..taken).map(|i| {
                let key = position::Key {
                    priority: kept_plan::column(i, priority).expect("not null").value() as i32,
                    run_at: kept_plan::column(i, run_at).expect("not null").value() as i64,
                    id: kept_plan::column(i, id).expect("not null").value() as i64,
                };
                (key, i)
            }));
        }
        rows.sort_unstable_by_key(|&(key, _)| key);
        if let Some(&(least, _)) = rows.first() {
            position::claim_took(ticket, least);
        }
        for (_, i) in rows {
            out.put_result_row(i);
        }
        if position::claim_may_raise(ticket) {
            let code = RAISE.with(|p| p.execute(&[queue, Some(pg_sys::Datum::from(ticket))], 0));
            if code != pg_sys::SPI_OK_SELECT as i32 {
                error!("jobs.claim: raising the position failed (SPI code {code})");
            }
        }
        pg_sys::SPI_finish();

        out.finish()
    }
}
