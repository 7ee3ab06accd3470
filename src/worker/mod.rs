//! The background worker: fires schedules, recovers expired leases, prunes
//! old jobs and announces delayed jobs, one duty per module, each with a
//! `run_once` that returns a count. `jobs.tick()` runs the same pass. It also
//! starts and watches the executors of SQL jobs (src/executor/).

use crate::executor::{Executors, Plan};
use crate::guc;
use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

mod due_jobs;
mod pruning;
mod recovery;
mod scheduler;

/// The worker's name and its `backend_type` in pg_stat_activity.
const WORKER_TYPE: &str = "jobs worker";

pub fn register() {
    BackgroundWorkerBuilder::new(WORKER_TYPE)
        .set_type(WORKER_TYPE)
        .set_library("jobs")
        .set_function("jobs_worker_main")
        // Also: start only once recovery has finished, never on a standby.
        .enable_spi_access()
        .set_restart_time(Some(Duration::from_secs(2)))
        .load();
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn jobs_worker_main(_arg: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = guc::database_name();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // The worker runs only the extension's own statements; nothing a user
    // puts in a schema on the default search_path can stand in for them.
    unsafe {
        pg_sys::SetConfigOption(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    crate::notify::serve();
    log!("jobs worker serving database \"{database}\"");

    let mut due_since = None;
    let mut next_pass = Instant::now();
    let mut next_send = Instant::now();
    let mut executors = Executors::default();
    while BackgroundWorker::wait_latch(Some(until(next_pass, crate::notify::pending().then_some(next_send)))) {
        if BackgroundWorker::sighup_received() {
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
        if Instant::now() >= next_send && send_notifications() {
            next_send = Instant::now() + SEND_SPACING;
        }
        // Producers' commits wake the worker for their notifications only.
        if Instant::now() >= next_pass || crate::notify::duties_requested() || executors.any_stopped() {
            let (nap, pass_started) = pass_surviving_errors(due_since, &mut executors);
            due_since = pass_started.or(due_since);
            // Running commands: leases to renew, cancels to notice.
            let nap = if executors.busy() { nap.min(Duration::from_secs(1)) } else { nap };
            next_pass = Instant::now() + nap;
        }
    }
    // Non-zero: the postmaster restarts a worker that was terminated
    // (pg_terminate_backend); exit code 0 would unregister it for good.
    unsafe { pg_sys::proc_exit(1) }
}

/// One pass in its own transaction. An error is logged and rolled back, and
/// the worker goes on after its usual interval. Executors start only once
/// the pass that claimed their jobs has committed.
fn pass_surviving_errors(
    due_since: Option<TimestampWithTimeZone>,
    executors: &mut Executors,
) -> (Duration, Option<TimestampWithTimeZone>) {
    let interval = maintenance_interval();
    let mut in_pass = AssertUnwindSafe(&mut *executors);
    let (nap, started, plan) = PgTryBuilder::new(AssertUnwindSafe(|| {
        BackgroundWorker::transaction(AssertUnwindSafe(|| pass(due_since, interval, &mut in_pass)))
    }))
    .catch_others(move |e| {
        unsafe { pg_sys::AbortCurrentTransaction() };
        warning!("jobs worker: pass failed and was rolled back: {}", message(&e));
        (interval, None, Plan::default())
    })
    .execute();
    executors.carry_out(plan);
    (nap, started)
}

/// How often the worker checks the claim positions of its database against
/// the queues' first queued rows (src/position.rs): rows written to jobs.job
/// other than through the extension's functions are claimable at the latest
/// this long after.
const CHECK_POSITIONS: Duration = Duration::from_secs(10);

thread_local! {
    static POSITIONS_CHECKED: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

/// The least time between two sends of notifications. Under a stream of
/// commits each send is a transaction of the worker's for the marks that
/// came meanwhile; spaced, one send covers a few milliseconds of commits
/// instead of one or two, and a commit after a quiet moment is still
/// announced at once.
const SEND_SPACING: Duration = Duration::from_millis(2);

/// How long to wait for the latch: until the next pass, or until
/// notifications that wait may be sent. At least a millisecond when
/// waiting at all, since the wait counts in whole milliseconds.
fn until(next_pass: Instant, next_send: Option<Instant>) -> Duration {
    let at = next_send.map_or(next_pass, |send| send.min(next_pass));
    let wait = at.saturating_duration_since(Instant::now());
    if wait.is_zero() { wait } else { wait.max(Duration::from_millis(1)) }
}

/// Sends, in a transaction of its own, the notifications that producers'
/// commits left to the worker (src/notify.rs). Whether there were any.
fn send_notifications() -> bool {
    if !crate::notify::pending() {
        return false;
    }
    PgTryBuilder::new(|| BackgroundWorker::transaction(crate::notify::send_pending))
        .catch_others(|e| {
            unsafe { pg_sys::AbortCurrentTransaction() };
            warning!("jobs worker: could not send notifications: {}", message(&e));
        })
        .execute();
    true
}

/// Returns how long to sleep and when this pass started (the next pass
/// announces jobs that became due since then).
fn pass(
    due_since: Option<TimestampWithTimeZone>,
    interval: Duration,
    executors: &mut Executors,
) -> (Duration, Option<TimestampWithTimeZone>, Plan) {
    // Quiet until CREATE EXTENSION jobs has run in this database.
    if !Spi::get_one::<bool>("SELECT EXISTS (SELECT FROM pg_catalog.pg_extension WHERE extname = 'jobs')")
        .ok()
        .flatten()
        .unwrap_or(false)
    {
        return (interval, None, Plan::default());
    }
    let started = Spi::get_one::<TimestampWithTimeZone>("SELECT pg_catalog.now()").ok().flatten();
    let counts = run_duties(due_since);
    if POSITIONS_CHECKED.get().is_none_or(|at| at.elapsed() >= CHECK_POSITIONS) {
        Spi::run("SELECT jobs._lower_positions()").expect("jobs._lower_positions");
        POSITIONS_CHECKED.set(Some(Instant::now()));
    }
    let plan = executors.supervise();
    let batch = i64::from(guc::BATCH_SIZE.get());
    if counts.leases_recovered >= batch || counts.jobs_pruned >= batch {
        return (Duration::ZERO, started, plan); // more of the backlog waits
    }
    (until_next_wakeup(interval), started, plan)
}

pub struct Counts {
    pub schedules_fired: i64,
    pub schedules_skipped: i64,
    pub leases_recovered: i64,
    pub jobs_pruned: i64,
    pub due_jobs_notified: i64,
}

/// Every duty once, in the caller's transaction. `due_since` None: announce
/// jobs that became due within the last maintenance interval.
pub fn run_duties(due_since: Option<TimestampWithTimeZone>) -> Counts {
    let (schedules_fired, schedules_skipped) = scheduler::run_once();
    Counts {
        schedules_fired,
        schedules_skipped,
        leases_recovered: recovery::run_once(guc::BATCH_SIZE.get()),
        jobs_pruned: pruning::run_once(guc::RETENTION.get(), guc::BATCH_SIZE.get()),
        due_jobs_notified: due_jobs::run_once(due_since, maintenance_interval()),
    }
}

fn maintenance_interval() -> Duration {
    Duration::from_millis(guc::MAINTENANCE_INTERVAL.get().max(1) as u64)
}

/// Until the next schedule occurrence or lease expiry, at most `interval`.
fn until_next_wakeup(interval: Duration) -> Duration {
    let millis = Spi::get_one::<i64>("SELECT jobs._millis_until_next_wakeup()").ok().flatten();
    match millis {
        Some(ms) => Duration::from_millis(ms.max(0) as u64).min(interval),
        None => interval,
    }
}

fn message(e: &CaughtError) -> String {
    match e {
        CaughtError::PostgresError(r) | CaughtError::ErrorReport(r) => r.message().to_string(),
        CaughtError::RustPanic { ereport, .. } => ereport.message().to_string(),
    }
}

/// Wakes the worker for its duties once the caller's transaction commits,
/// so that it sees what the transaction wrote (a schedule, a SQL job).
pub fn wake_on_commit() {
    if crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed) {
        pgrx::register_xact_callback(pgrx::PgXactCallbackEvent::Commit, crate::notify::request_duties);
    }
}

/// One pass of every duty in the caller's transaction, for servers that do
/// not preload the library (or databases its worker does not serve). Safe
/// beside the worker and other callers.
#[pg_extern(volatile, security_definer)]
#[search_path(pg_catalog, pg_temp)]
fn tick() -> TableIterator<'static, (name!(task, String), name!(count, i64))> {
    let counts = run_duties(None);
    TableIterator::new(vec![
        ("schedules_fired".to_string(), counts.schedules_fired),
        ("schedules_skipped".to_string(), counts.schedules_skipped),
        ("leases_recovered".to_string(), counts.leases_recovered),
        ("jobs_pruned".to_string(), counts.jobs_pruned),
        ("due_jobs_notified".to_string(), counts.due_jobs_notified),
    ])
}
