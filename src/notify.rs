//! Notifications on channel `jobs`. With the background worker serving this
//! database, a transaction that makes jobs claimable only marks their queues
//! in shared memory once it has committed, and sets the worker's latch; the
//! worker sends one NOTIFY per marked queue. A transaction that sends NOTIFY
//! holds a database-wide lock through its commit, so producers that did it
//! themselves would queue their commits one behind another.

use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgAtomic, PgLwLock, pg_shmem_init};
use std::cell::RefCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

/// Distinct queues waiting for the worker; more set `overflow`.
const SLOTS: usize = 64;
/// Queue names are at most 128 characters, so at most 512 bytes (kept in
/// the database's encoding, which need not be UTF-8).
const NAME_BYTES: usize = 512;

#[derive(Copy, Clone)]
pub struct Pending {
    count: usize,
    /// More queues were marked than there are slots: the worker announces
    /// every queue that has due jobs.
    overflow: bool,
    lengths: [u16; SLOTS],
    names: [[u8; NAME_BYTES]; SLOTS],
}

unsafe impl PGRXSharedMemory for Pending {}

impl Pending {
    const EMPTY: Pending = Pending { count: 0, overflow: false, lengths: [0; SLOTS], names: [[0; NAME_BYTES]; SLOTS] };

    fn name(&self, i: usize) -> &[u8] {
        &self.names[i][..usize::from(self.lengths[i])]
    }

    /// Whether this was news to the worker: false when the queue (or an
    /// overflow) was already waiting for it, since whoever marked that
    /// has woken it and it has not taken the marks yet.
    fn mark(&mut self, bytes: &[u8]) -> bool {
        if self.overflow || bytes.len() > NAME_BYTES || (0..self.count).any(|i| self.name(i) == bytes) {
            return false;
        }
        if self.count == SLOTS {
            self.overflow = true;
            return true;
        }
        self.names[self.count][..bytes.len()].copy_from_slice(bytes);
        self.lengths[self.count] = bytes.len() as u16;
        self.count += 1;
        true
    }

    fn take(&mut self) -> (Vec<Vec<u8>>, bool) {
        let queues = (0..self.count).map(|i| self.name(i).to_vec()).collect();
        let overflow = self.overflow;
        self.count = 0;
        self.overflow = false;
        (queues, overflow)
    }
}

static PENDING: PgLwLock<Pending> = unsafe { PgLwLock::new(c"jobs notifications") };
/// The worker's latch (its address in shared memory, the same in every
/// backend) and the database it serves; 0 while no worker runs.
static WORKER_LATCH: PgAtomic<AtomicU64> = unsafe { PgAtomic::new(c"jobs worker latch") };
static WORKER_DATABASE: PgAtomic<AtomicU32> = unsafe { PgAtomic::new(c"jobs worker database") };
/// Set with the latch when the worker must run its duties (a schedule
/// changed, a SQL job came), not only send notifications.
static DUTIES: PgAtomic<AtomicBool> = unsafe { PgAtomic::new(c"jobs worker duties") };

/// In `_PG_init`, when the library is preloaded.
pub fn init_shared_memory() {
    pg_shmem_init!(PENDING = Pending::EMPTY);
    pg_shmem_init!(WORKER_LATCH);
    pg_shmem_init!(WORKER_DATABASE);
    pg_shmem_init!(DUTIES);
}

fn my_latch() -> u64 {
    unsafe { (&raw mut (*pg_sys::MyProc).procLatch) as u64 }
}

/// The worker, connected: from now on this database's producers leave
/// their notifications to it.
pub fn serve() {
    WORKER_DATABASE.get().store(unsafe { pg_sys::MyDatabaseId }.to_u32(), Ordering::Release);
    WORKER_LATCH.get().store(my_latch(), Ordering::Release);
    unsafe { pg_sys::before_shmem_exit(Some(stop_serving), pg_sys::Datum::from(0)) };
}

#[pg_guard]
unsafe extern "C-unwind" fn stop_serving(_code: i32, _arg: pg_sys::Datum) {
    let _ = WORKER_LATCH.get().compare_exchange(my_latch(), 0, Ordering::AcqRel, Ordering::Acquire);
}

fn worker_latch() -> Option<*mut pg_sys::Latch> {
    if !crate::PRELOADED.load(Ordering::Relaxed) {
        return None;
    }
    let latch = WORKER_LATCH.get().load(Ordering::Acquire);
    (latch != 0).then_some(latch as *mut pg_sys::Latch)
}

/// Wakes the worker to run its duties (after the caller's commit).
pub fn request_duties() {
    if let Some(latch) = worker_latch() {
        DUTIES.get().store(true, Ordering::Release);
        unsafe { pg_sys::SetLatch(latch) };
    }
}

/// The worker: whether something asked for its duties since it last looked.
pub fn duties_requested() -> bool {
    DUTIES.get().swap(false, Ordering::AcqRel)
}

/// The worker, in a transaction: one NOTIFY per queue marked since it last
/// looked; after an overflow, one per queue with due jobs.
pub fn send_pending() {
    let (queues, overflow) = PENDING.exclusive().take();
    for queue in queues {
        unsafe {
            let payload = pg_sys::cstring_to_text_with_len(queue.as_ptr().cast(), queue.len() as i32);
            notify(pg_sys::Datum::from(payload));
        }
    }
    if overflow {
        Spi::run(
            "SELECT pg_catalog.pg_notify('jobs', d.queue)
             FROM (SELECT DISTINCT j.queue FROM jobs.job j WHERE j.state = 'queued' AND j.run_at <= pg_catalog.now()) d",
        )
        .expect("notify every queue with due jobs");
    }
}

/// Whether any notification waits for the worker.
pub fn pending() -> bool {
    let pending = PENDING.share();
    pending.count > 0 || pending.overflow
}

/// NOTIFY jobs, <text datum>, in the current transaction.
fn notify(queue: pg_sys::Datum) {
    unsafe {
        pgrx::fcinfo::direct_function_call::<()>(pg_sys::pg_notify, &["jobs".into_datum(), Some(queue)]);
    }
}

thread_local! {
    /// Queues this transaction made claimable (in the database's encoding),
    /// with the subtransaction that did.
    static MARKED: RefCell<Vec<(Vec<u8>, pg_sys::SubTransactionId)>> = const { RefCell::new(Vec::new()) };
}
static mut CALLBACKS_REGISTERED: bool = false;

/// Announces on channel `jobs` that `queue` has claimable jobs, once the
/// caller's transaction commits: through the worker when it serves this
/// database (and this is not the worker), else with NOTIFY in the
/// transaction itself.
/// `queue` is text; taken as anyelement so that its bytes need not be
/// UTF-8 (a LATIN1 database).
#[pg_extern(volatile, parallel_unsafe, name = "_announce")]
pub fn announce(queue: pgrx::AnyElement) {
    announce_text(queue.datum());
}

/// `jobs._announce` of a text datum.
pub fn announce_text(queue: pg_sys::Datum) {
    let latch = worker_latch();
    let served = latch.is_some_and(|latch| latch as u64 != my_latch())
        && WORKER_DATABASE.get().load(Ordering::Acquire) == unsafe { pg_sys::MyDatabaseId }.to_u32();
    if !served {
        notify(queue);
        return;
    }
    unsafe {
        if !CALLBACKS_REGISTERED {
            pg_sys::RegisterXactCallback(Some(on_transaction_end), std::ptr::null_mut());
            pg_sys::RegisterSubXactCallback(Some(on_subtransaction_end), std::ptr::null_mut());
            CALLBACKS_REGISTERED = true;
        }
    }
    let bytes = unsafe { std::ffi::CStr::from_ptr(pg_sys::text_to_cstring(queue.cast_mut_ptr())) }.to_bytes();
    let subtransaction = unsafe { pg_sys::GetCurrentSubTransactionId() };
    MARKED.with(|marked| {
        let mut marked = marked.borrow_mut();
        if !marked.iter().any(|(q, s)| q == bytes && *s == subtransaction) {
            marked.push((bytes.to_vec(), subtransaction));
        }
    });
}

/// After a commit (durable and visible), the marked queues go to the
/// worker; after an abort, nowhere. A prepared transaction's are dropped:
/// it may commit in another session (workers poll for those).
#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    if event != pg_sys::XactEvent::XACT_EVENT_COMMIT
        && event != pg_sys::XactEvent::XACT_EVENT_ABORT
        && event != pg_sys::XactEvent::XACT_EVENT_PREPARE
    {
        return;
    }
    let marked = MARKED.with(|marked| std::mem::take(&mut *marked.borrow_mut()));
    if marked.is_empty() || event != pg_sys::XactEvent::XACT_EVENT_COMMIT {
        return;
    }
    let news = {
        let mut pending = PENDING.exclusive();
        marked.iter().fold(false, |news, (queue, _)| pending.mark(queue) || news)
    };
    // At thousands of commits a second most find their queue still waiting:
    // the worker is awake already, and the wake-up would be a system call.
    if news && let Some(latch) = worker_latch() {
        unsafe { pg_sys::SetLatch(latch) };
    }
}

/// What a rolled-back subtransaction marked is forgotten; what a committed
/// one marked belongs to its parent.
#[pg_guard]
unsafe extern "C-unwind" fn on_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    subtransaction: pg_sys::SubTransactionId,
    parent: pg_sys::SubTransactionId,
    _arg: *mut c_void,
) {
    MARKED.with(|marked| {
        let mut marked = marked.borrow_mut();
        if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
            marked.retain(|(_, s)| *s != subtransaction);
        } else if event == pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB {
            for (_, s) in marked.iter_mut().filter(|(_, s)| *s == subtransaction) {
                *s = parent;
            }
        }
    });
}
