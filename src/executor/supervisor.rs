//! The background worker's side of SQL jobs: takes due SQL jobs for free
//! executors, starts them, holds their leases, stops canceled commands and
//! finishes each job with its command's outcome (sql/sql_jobs.sql).

use super::channel::{Channel, Outcome, Request};
use crate::guc;
use pgrx::bgworkers::BackgroundWorkerBuilder;
use pgrx::prelude::*;
use serde::Deserialize;
use std::time::{Duration, Instant};

/// backend_type of the executors in pg_stat_activity.
const EXECUTOR_TYPE: &str = "jobs sql executor";
/// Lease of a running SQL job; the worker renews it on every pass (at most
/// a second apart while commands run), so it only runs out when the worker
/// is gone.
const LEASE_SECS: f64 = 60.0;
/// How long past its timeout a command may take to stop on its own before
/// the worker terminates its executor.
const TIMEOUT_GRACE: Duration = Duration::from_secs(5);
const TIMED_OUT: &str = "57014: canceling statement due to statement timeout";

/// The payload of a SQL job, as jobs.enqueue_sql writes it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Payload {
    command: String,
    database: String,
    run_as: String,
    /// seconds
    timeout: f64,
}

struct Executor {
    job_id: i64,
    lease_token: pgrx::Uuid,
    handle: *mut pg_sys::BackgroundWorkerHandle,
    channel: Channel,
    deadline: Option<Instant>,
    /// The job is no longer held (canceled): the outcome is not recorded.
    abandoned: bool,
    timed_out: bool,
}

/// A claimed job waiting to be started once the claim has committed.
pub struct Claimed {
    lease_token: pgrx::Uuid,
    request: Request,
}

#[derive(Default)]
pub struct Executors {
    running: Vec<Executor>,
    /// Claimed jobs whose executor could not be started.
    unstarted: Vec<(i64, pgrx::Uuid)>,
    orphans_handled: bool,
}

/// What one pass decided, carried out once its transaction has committed.
#[derive(Default)]
pub struct Plan {
    finished: Vec<i64>,
    start: Vec<Claimed>,
    released: Vec<(i64, pgrx::Uuid)>,
    orphans_handled: bool,
}

impl Executors {
    pub fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// Whether an executor has exited since the last pass looked.
    pub fn any_stopped(&self) -> bool {
        self.running.iter().any(Executor::stopped)
    }

    /// The worker's duty for SQL jobs, in the pass's transaction.
    /// Nothing it decides is forgotten before the pass commits: a pass that
    /// fails leaves everything to the next.
    pub fn supervise(&mut self) -> Plan {
        let mut plan = Plan::default();
        if !self.orphans_handled {
            fail_orphans();
            plan.orphans_handled = true;
        }
        for &(job_id, token) in &self.unstarted {
            Spi::run_with_args("SELECT jobs._release_sql($1, $2)", &[job_id.into(), token.into()])
                .expect("jobs._release_sql");
            plan.released.push((job_id, token));
        }
        for executor in &self.running {
            if executor.stopped() {
                executor.record_outcome();
                plan.finished.push(executor.job_id);
            }
        }
        self.hold(&plan.finished);
        let busy = self.running.len() - plan.finished.len();
        let free = (guc::SQL_WORKERS.get().max(0) as usize).saturating_sub(busy);
        if free > 0 {
            plan.start = claim(free);
        }
        plan
    }

    /// Renews the leases of running commands; stops those whose job was
    /// canceled, and those that outlived their timeout.
    fn hold(&mut self, finished: &[i64]) {
        let live: Vec<&mut Executor> =
            self.running.iter_mut().filter(|e| !e.abandoned && !finished.contains(&e.job_id)).collect();
        if live.is_empty() {
            return;
        }
        let ids: Vec<i64> = live.iter().map(|e| e.job_id).collect();
        let tokens: Vec<pgrx::Uuid> = live.iter().map(|e| e.lease_token).collect();
        let held: Vec<i64> = Spi::connect_mut(|client| {
            client
                .update(
                    "SELECT jobs._hold_sql($1, $2, pg_catalog.make_interval(secs => $3))",
                    None,
                    &[ids.into(), tokens.into(), LEASE_SECS.into()],
                )?
                .map(|row| row.get::<i64>(1).map(|id| id.unwrap_or(0)))
                .collect::<Result<Vec<_>, _>>()
        })
        .expect("jobs._hold_sql");
        for executor in live {
            if !held.contains(&executor.job_id) {
                executor.abandoned = true;
                executor.stop();
            } else if executor.deadline.is_some_and(|d| Instant::now() > d + TIMEOUT_GRACE) && !executor.timed_out {
                executor.timed_out = true;
                executor.stop();
            }
        }
    }

    /// After the pass committed: forgets finished executors and starts the
    /// claimed jobs' executors.
    pub fn carry_out(&mut self, plan: Plan) {
        self.orphans_handled |= plan.orphans_handled;
        self.unstarted.retain(|unstarted| !plan.released.contains(unstarted));
        let (done, running): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.running).into_iter().partition(|e| plan.finished.contains(&e.job_id));
        self.running = running;
        for executor in done {
            executor.close();
        }
        for claimed in plan.start {
            match start(&claimed.request) {
                Some((handle, channel)) => self.running.push(Executor {
                    job_id: claimed.request.job_id,
                    lease_token: claimed.lease_token,
                    handle,
                    channel,
                    deadline: claimed.request.timeout_ms.map(|ms| Instant::now() + Duration::from_millis(ms)),
                    abandoned: false,
                    timed_out: false,
                }),
                None => self.unstarted.push((claimed.request.job_id, claimed.lease_token)),
            }
        }
    }
}

impl Executor {
    fn stopped(&self) -> bool {
        let mut pid = 0;
        let status = unsafe { pg_sys::GetBackgroundWorkerPid(self.handle, &mut pid) };
        status == pg_sys::BgwHandleStatus::BGWH_STOPPED || status == pg_sys::BgwHandleStatus::BGWH_POSTMASTER_DIED
    }

    fn stop(&self) {
        unsafe { pg_sys::TerminateBackgroundWorker(self.handle) }
    }

    /// Completes or fails the job with what its executor reported.
    fn record_outcome(&self) {
        if self.abandoned {
            return;
        }
        let (result, error) = match self.channel.outcome() {
            _ if self.timed_out => (None, Some(TIMED_OUT.to_string())),
            Some(Outcome::Completed { status, rows }) => {
                (Some(pgrx::JsonB(serde_json::json!({"status": status, "rows": rows}))), None)
            }
            Some(Outcome::Failed { error }) => (None, Some(error)),
            None => (None, Some("57P01: the SQL executor exited before the command finished".to_string())),
        };
        finish(self.job_id, self.lease_token, result, error.as_deref(), true);
    }

    fn close(self) {
        self.channel.close();
        unsafe { pg_sys::pfree(self.handle.cast()) };
    }
}

/// Takes up to `free` due SQL jobs. A job whose payload cannot be read, or
/// whose role or database cannot be used now, fails here without an executor.
fn claim(free: usize) -> Vec<Claimed> {
    let rows: Vec<(i64, pgrx::Uuid, pgrx::JsonB)> = Spi::connect_mut(|client| {
        client
            .update(
                "SELECT id, lease_token, payload FROM jobs._claim_sql($1, pg_catalog.make_interval(secs => $2))",
                None,
                &[(free as i32).into(), LEASE_SECS.into()],
            )?
            .map(|row| {
                let token = row.get::<pgrx::Uuid>(2)?.unwrap_or(pgrx::Uuid::from_bytes([0; 16]));
                let payload = row.get::<pgrx::JsonB>(3)?.unwrap_or(pgrx::JsonB(serde_json::Value::Null));
                Ok((row.get::<i64>(1)?.unwrap_or(0), token, payload))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    })
    .expect("jobs._claim_sql");

    let mut claimed = Vec::new();
    for (job_id, lease_token, pgrx::JsonB(payload)) in rows {
        let payload = match Payload::deserialize(payload) {
            Ok(payload) => payload,
            Err(e) => {
                refuse(
                    job_id,
                    lease_token,
                    &format!("22023: the payload of SQL job {job_id} is malformed: {e}"),
                    false,
                );
                continue;
            }
        };
        let login_required = cfg!(not(any(feature = "pg17", feature = "pg18")));
        let refusal = Spi::get_one_with_args::<String>(
            "SELECT jobs._sql_job_refusal($1, $2, $3)",
            &[payload.database.as_str().into(), payload.run_as.as_str().into(), login_required.into()],
        )
        .expect("jobs._sql_job_refusal");
        if let Some(refusal) = refusal {
            refuse(job_id, lease_token, &refusal, true);
            continue;
        }
        let timeout_ms = (payload.timeout * 1000.0).ceil();
        claimed.push(Claimed {
            lease_token,
            request: Request {
                job_id,
                command: payload.command,
                database: payload.database,
                run_as: payload.run_as,
                timeout_ms: (timeout_ms.is_finite() && timeout_ms < 1e15).then_some(timeout_ms.max(1.0) as u64),
            },
        });
    }
    claimed
}

/// Completes the job with `result`, or fails it with `error`; nothing when
/// it is no longer held under `lease_token` (canceled meanwhile).
fn finish(job_id: i64, lease_token: pgrx::Uuid, result: Option<pgrx::JsonB>, error: Option<&str>, retryable: bool) {
    Spi::get_one_with_args::<bool>(
        "SELECT jobs._finish_sql($1, $2, $3, $4, $5)",
        &[job_id.into(), lease_token.into(), result.into(), error.into(), retryable.into()],
    )
    .expect("jobs._finish_sql");
}

fn refuse(job_id: i64, lease_token: pgrx::Uuid, error: &str, retryable: bool) {
    finish(job_id, lease_token, None, Some(error), retryable);
}

/// Starts an executor for `request`, outside any transaction: the segment
/// and the handle must outlive the pass.
fn start(request: &Request) -> Option<(*mut pg_sys::BackgroundWorkerHandle, Channel)> {
    unsafe {
        let old = pg_sys::MemoryContextSwitchTo(pg_sys::TopMemoryContext);
        let channel = Channel::create(request);
        let builder = BackgroundWorkerBuilder::new(&format!("jobs sql job {}", request.job_id))
            .set_type(EXECUTOR_TYPE)
            .set_library("jobs")
            .set_function("jobs_sql_executor_main")
            .enable_spi_access()
            .set_argument(Some(pg_sys::Datum::from(channel.handle())))
            .set_notify_pid(pg_sys::MyProcPid);
        let mut worker: pg_sys::BackgroundWorker = (&builder).into();
        let mut handle = std::ptr::null_mut();
        let started = pg_sys::RegisterDynamicBackgroundWorker(&mut worker, &mut handle);
        pg_sys::MemoryContextSwitchTo(old);
        if started {
            return Some((handle, channel));
        }
        warning!(
            "jobs worker: could not start an executor for SQL job {}: max_worker_processes reached; it waits in the queue",
            request.job_id
        );
        channel.close();
        None
    }
}

/// SQL jobs still running when the worker starts belonged to executors of an
/// earlier worker: stop those executors and end the jobs' attempts now.
fn fail_orphans() {
    Spi::run_with_args(
        "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE backend_type = $1",
        &[EXECUTOR_TYPE.into()],
    )
    .expect("terminate orphaned executors");
    Spi::run("SELECT jobs._fail_orphaned_sql('57P01: the jobs worker restarted while the command ran')")
        .expect("jobs._fail_orphaned_sql");
}
