//! Where claimable work starts, per queue: a claim walks `job_claim_idx` in
//! claim order from the queue's position instead of from the queue's start.
//!
//! Why: every job a claim takes leaves its index entry behind, and while a
//! snapshot older than that claim is held (a long report, `pg_dump`) no scan
//! may skip it or remove it. A claim that starts at the queue's start walks
//! every entry of every job claimed since the snapshot: its cost grows with
//! the length of the hold.
//!
//! The position is a lower bound of the claim-order key (priority, run_at,
//! id) of every row that is queued or may become queued without passing
//! through here again, so a claim that starts there misses nothing:
//!
//! - Whatever makes a row queued (an enqueue, a retry, `retry_now`, lease
//!   recovery, a schedule firing) calls `jobs._queued` with its key. Just
//!   before the transaction commits, the position is lowered to the least
//!   key it made queued, so once the row can be seen, so can the lower
//!   position; the transaction counts in the queue's `makers` and bumps its
//!   `generation` then, and the count drops again at its end, once its commit
//!   is visible. A maker that has not reached its commit needs no count: its
//!   rows are invisible, and it lowers the position before they are not.
//! - A claim reads the position inside its claim statement, after the
//!   statement's snapshot was taken (`jobs._claim_from_*`, one read per
//!   ticket): any maker that committed before that snapshot has lowered it.
//! - Only a claim raises it, and only while the oldest snapshot is holding
//!   back cleanup (otherwise the walk past claimed jobs is cheap, as their
//!   entries are marked dead as scans pass), and at most every 5 ms per
//!   queue. After its claim statement it reads the position again and, if no
//!   maker is in flight, runs a second statement from there: the new
//!   position is the least key of the queue's queued rows as that statement
//!   sees them, or of the rows its own transaction claimed (they are queued
//!   again if it rolls back), whichever is less, and it is stored only if no
//!   maker began since the read (the generation is unchanged). Rows that other claims hold uncommitted are
//!   still queued to its snapshot. A maker that finds no entry for its queue
//!   (all 256 have makers in flight) holds every raise off until it ends.
//! - Prepared transactions may commit in another session after their
//!   transaction callbacks ran: with `max_prepared_transactions` above zero
//!   there is no position. Every few seconds the background worker looks up
//!   each queue's first queued row and lowers a position above it
//!   (`jobs._lower_positions`): rows written to the table other than through
//!   the extension's functions (a restore into a live database, a repair by
//!   hand) are claimable then.

use pgrx::prelude::*;
use pgrx::{PGRXSharedMemory, PgLwLock, pg_shmem_init};
use std::cell::RefCell;
use std::ffi::c_void;

/// Queues (of all databases) with a position; beyond that the least
/// recently used one without a maker in flight gives up its entry.
const ENTRIES: usize = 256;
/// Queue names are at most 128 characters: at most 512 bytes.
const NAME_BYTES: usize = 512;
/// How far (in transaction ids) the oldest snapshot must lag behind before
/// claims raise the position.
const HELD_XIDS: u32 = 1000;
/// The least time between two raises of one queue's position (µs): a raise
/// is a statement of its own, dearer than the walk past the few jobs claimed
/// in between.
const RAISE_SPACING_US: i64 = 5_000;

/// A claim-order key. Fields in claim order, so the derived order is it.
#[derive(Copy, Clone, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub struct Key {
    pub priority: i32,
    /// timestamptz, microseconds; i64::MIN and MAX are -infinity and infinity
    pub run_at: i64,
    pub id: i64,
}

impl Key {
    pub const MIN: Key = Key { priority: i32::MIN, run_at: i64::MIN, id: i64::MIN };
    pub const MAX: Key = Key { priority: i32::MAX, run_at: i64::MAX, id: i64::MAX };
}

#[derive(Copy, Clone)]
struct Entry {
    in_use: bool,
    database: u32,
    relation: u32,
    length: u16,
    name: [u8; NAME_BYTES],
    position: Key,
    /// Bumped when a maker reaches its commit, when the entry is (re)assigned
    /// and when the worker lowers the position: a claim raises the position
    /// only if it is unchanged since it read the position.
    generation: u64,
    /// Transactions that made rows of this queue queued, reached their
    /// commit and have not ended.
    makers: u32,
    last_used: u64,
    /// When a claim last tried to raise the position (µs, timestamptz).
    raised_at: i64,
}

#[derive(Copy, Clone)]
pub struct Positions {
    clock: u64,
    entries: [Entry; ENTRIES],
    /// Makers that found no entry for their queue (every one had a maker in
    /// flight): until they end no claim raises any position, as a queue's
    /// entry made meanwhile would not count them.
    unplaced: u32,
    /// Bumped when such a maker reaches its commit.
    unplaced_generation: u64,
}

unsafe impl PGRXSharedMemory for Positions {}

/// Which queue: database, jobs.job's OID, the name's bytes.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Queue {
    database: u32,
    relation: u32,
    name: Vec<u8>,
}

impl Entry {
    const EMPTY: Entry = Entry {
        in_use: false,
        database: 0,
        relation: 0,
        length: 0,
        name: [0; NAME_BYTES],
        position: Key::MIN,
        generation: 0,
        makers: 0,
        last_used: 0,
        raised_at: i64::MIN,
    };

    fn is(&self, queue: &Queue) -> bool {
        self.in_use
            && self.database == queue.database
            && self.relation == queue.relation
            && &self.name[..usize::from(self.length)] == queue.name.as_slice()
    }
}

impl Positions {
    const EMPTY: Positions =
        Positions { clock: 0, entries: [Entry::EMPTY; ENTRIES], unplaced: 0, unplaced_generation: 0 };

    /// The queue's entry, made if need be; None when every entry has a
    /// maker in flight (or the name is too long).
    fn entry(&mut self, queue: &Queue) -> Option<usize> {
        self.clock += 1;
        let clock = self.clock;
        if let Some(i) = self.entries.iter().position(|e| e.is(queue)) {
            self.entries[i].last_used = clock;
            return Some(i);
        }
        if queue.name.len() > NAME_BYTES {
            return None;
        }
        let i = self
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| !e.in_use || e.makers == 0)
            .min_by_key(|(_, e)| (e.in_use, e.last_used))
            .map(|(i, _)| i)?;
        let e = &mut self.entries[i];
        *e = Entry {
            in_use: true,
            database: queue.database,
            relation: queue.relation,
            length: queue.name.len() as u16,
            position: Key::MIN,
            generation: e.generation + 1,
            makers: 0,
            last_used: clock,
            ..Entry::EMPTY
        };
        e.name[..queue.name.len()].copy_from_slice(&queue.name);
        Some(i)
    }
}

static POSITIONS: PgLwLock<Positions> = unsafe { PgLwLock::new(c"jobs claim positions") };

/// In `_PG_init`, when the library is preloaded.
pub fn init_shared_memory() {
    pg_shmem_init!(POSITIONS = Positions::EMPTY);
}

unsafe extern "C" {
    /// twophase.c's `max_prepared_xacts` (the `max_prepared_transactions` setting).
    static max_prepared_xacts: std::ffi::c_int;
}

fn enabled() -> bool {
    crate::PRELOADED.load(std::sync::atomic::Ordering::Relaxed) && unsafe { max_prepared_xacts } == 0
}

/// Whether the oldest snapshot of any backend holds back cleanup by more
/// than HELD_XIDS transactions.
pub fn horizon_held() -> bool {
    unsafe {
        let next = pg_sys::ReadNextFullTransactionId().value as u32;
        let oldest = pg_sys::GetOldestNonRemovableTransactionId(std::ptr::null_mut());
        next.wrapping_sub(oldest.into_inner()) > HELD_XIDS
    }
}

/// What one claim read: its ticket, the position, and whether it may raise it.
struct Reading {
    ticket: i64,
    queue: Queue,
    position: Key,
    /// Set when the claim may raise the position: no maker in flight, cleanup
    /// held back, no raise of this queue in the last RAISE_SPACING_US.
    raise: Option<Raise>,
}

/// What a raise checks is unchanged since the position was read: the
/// entry, its generation, and the generation of unplaced makers.
#[derive(Copy, Clone)]
struct Raise {
    entry: usize,
    generation: u64,
    unplaced_generation: u64,
}

/// A transaction's part in a queue: rows it made queued, rows it claimed.
struct Part {
    queue: Queue,
    /// The entry it counts itself in as a maker, from just before its commit
    /// (None: not a maker, not yet, or no entry).
    maker_entry: Option<usize>,
    /// A maker that found no entry (counted in `Positions::unplaced`).
    unplaced: bool,
    made_least: Option<Key>,
    claimed_least: Option<Key>,
}

thread_local! {
    static TICKETS: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
    static READING: RefCell<Option<Reading>> = const { RefCell::new(None) };
    static PARTS: RefCell<Vec<Part>> = const { RefCell::new(Vec::new()) };
}
static mut CALLBACK_REGISTERED: bool = false;

fn register_callback() {
    unsafe {
        if !CALLBACK_REGISTERED {
            pg_sys::RegisterXactCallback(Some(on_transaction_end), std::ptr::null_mut());
            CALLBACK_REGISTERED = true;
        }
    }
}

fn with_part<R>(queue: &Queue, f: impl FnOnce(&mut Part) -> R) -> R {
    register_callback();
    PARTS.with(|parts| {
        let mut parts = parts.borrow_mut();
        let i = match parts.iter().position(|p| &p.queue == queue) {
            Some(i) => i,
            None => {
                parts.push(Part {
                    queue: queue.clone(),
                    maker_entry: None,
                    unplaced: false,
                    made_least: None,
                    claimed_least: None,
                });
                parts.len() - 1
            }
        };
        f(&mut parts[i])
    })
}

/// Just before the commit, the positions come down to what the transaction
/// made queued (its rows become visible only after this) and it counts as a
/// maker until its end: from then on until its commit is visible, a claim
/// may not raise them.
#[pg_guard]
unsafe extern "C-unwind" fn on_transaction_end(event: pg_sys::XactEvent::Type, _arg: *mut c_void) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            PARTS.with(|parts| {
                let mut parts = parts.borrow_mut();
                if parts.iter().all(|p| p.made_least.is_none()) {
                    return;
                }
                let mut positions = POSITIONS.exclusive();
                for part in parts.iter_mut() {
                    let Some(least) = part.made_least else { continue };
                    if let Some(i) = positions.entry(&part.queue) {
                        let e = &mut positions.entries[i];
                        e.position = e.position.min(least);
                        e.makers += 1;
                        e.generation += 1;
                        part.maker_entry = Some(i);
                    } else {
                        positions.unplaced += 1;
                        positions.unplaced_generation += 1;
                        part.unplaced = true;
                    }
                }
            });
        }
        XACT_EVENT_COMMIT
        | XACT_EVENT_PARALLEL_COMMIT
        | XACT_EVENT_ABORT
        | XACT_EVENT_PARALLEL_ABORT
        | XACT_EVENT_PREPARE => {
            READING.with(|r| r.borrow_mut().take());
            let parts = PARTS.with(|parts| std::mem::take(&mut *parts.borrow_mut()));
            if parts.iter().all(|p| p.maker_entry.is_none() && !p.unplaced) {
                return;
            }
            let mut positions = POSITIONS.exclusive();
            for part in parts.iter() {
                if let Some(i) = part.maker_entry {
                    let e = &mut positions.entries[i];
                    e.makers = e.makers.saturating_sub(1);
                }
                if part.unplaced {
                    positions.unplaced = positions.unplaced.saturating_sub(1);
                }
            }
        }
        _ => {}
    }
}

/// This transaction made a row of `queue` with `key` queued: it counts as
/// a maker from just before its commit (`on_transaction_end`).
fn made_queued(queue: Queue, key: Key) {
    if enabled() {
        with_part(&queue, |part| part.made_least = Some(part.made_least.map_or(key, |least| least.min(key))));
    }
}

/// The position a claim with this ticket starts from, read once per ticket.
fn read(queue: Queue, ticket: i64) -> Key {
    if let Some(position) =
        READING.with(|r| r.borrow().as_ref().filter(|r| r.ticket == ticket && r.queue == queue).map(|r| r.position))
    {
        return position;
    }
    let (position, raise) = reread(&queue, false);
    READING.with(|r| *r.borrow_mut() = Some(Reading { ticket, queue, position, raise }));
    position
}

/// The queue's position, and with `for_raise` (entry, generation) if a
/// claim may raise it: no maker in flight and cleanup held back.
fn reread(queue: &Queue, for_raise: bool) -> (Key, Option<Raise>) {
    if !enabled() {
        return (Key::MIN, None);
    }
    let now = unsafe { pg_sys::GetCurrentTimestamp() };
    let mut positions = POSITIONS.exclusive();
    let Some(i) = positions.entry(queue) else {
        return (Key::MIN, None);
    };
    let (unplaced, unplaced_generation) = (positions.unplaced, positions.unplaced_generation);
    let e = &mut positions.entries[i];
    let raise = Raise { entry: i, generation: e.generation, unplaced_generation };
    let may = for_raise
        && e.makers == 0
        && unplaced == 0
        && now.saturating_sub(e.raised_at) >= RAISE_SPACING_US
        && horizon_held();
    if may {
        e.raised_at = now;
    }
    (e.position, may.then_some(raise))
}

/// A new ticket for a claim (src/claim.rs): its first `jobs._claim_from_*`
/// reads the position.
pub fn claim_ticket() -> i64 {
    TICKETS.with(|t| {
        t.set(t.get() + 1);
        t.get()
    })
}

/// The claim of this ticket took rows, the least in claim order with this
/// key: the position may not pass it while the transaction runs.
pub fn claim_took(ticket: i64, least: Key) {
    let queue = READING.with(|r| r.borrow().as_ref().filter(|r| r.ticket == ticket).map(|r| r.queue.clone()));
    if let Some(queue) = queue {
        with_part(&queue, |part| part.claimed_least = Some(part.claimed_least.map_or(least, |l| l.min(least))));
    }
}

/// Whether the claim of this ticket may raise the position, read again
/// now, just before the statement that computes the new one: the window in
/// which a maker that begins refuses the raise is that statement alone, not
/// the claim's too. The statement starts from the position read here.
pub fn claim_may_raise(ticket: i64) -> bool {
    let Some(queue) = READING.with(|r| r.borrow().as_ref().filter(|r| r.ticket == ticket).map(|r| r.queue.clone()))
    else {
        return false;
    };
    let (position, raise) = reread(&queue, true);
    READING.with(|r| *r.borrow_mut() = Some(Reading { ticket, queue, position, raise }));
    raise.is_some()
}

/// Raises the position to the least key of the queue's queued rows as the
/// caller's statement saw them (NULLs: none) or of the rows its transaction
/// claimed, whichever is less, if no maker began since the ticket's read.
#[pg_extern(volatile, parallel_unsafe, name = "_claim_raise")]
fn claim_raise(ticket: i64, priority: Option<i32>, run_at: Option<TimestampWithTimeZone>, id: Option<i64>) -> bool {
    let Some((queue, raise)) = READING
        .with(|r| r.borrow().as_ref().filter(|r| r.ticket == ticket).and_then(|r| Some((r.queue.clone(), r.raise?))))
    else {
        return false;
    };
    let seen = match (priority, run_at, id) {
        (Some(priority), Some(run_at), Some(id)) => Key { priority, run_at: run_at.into(), id },
        _ => Key::MAX,
    };
    let claimed = PARTS.with(|parts| parts.borrow().iter().find(|p| p.queue == queue).and_then(|p| p.claimed_least));
    let least = claimed.map_or(seen, |c| c.min(seen));
    let mut positions = POSITIONS.exclusive();
    if positions.unplaced_generation != raise.unplaced_generation {
        return false;
    }
    let e = &mut positions.entries[raise.entry];
    if e.is(&queue) && e.generation == raise.generation && e.position < least {
        e.position = least;
        return true;
    }
    false
}

/// The bytes of a text datum, in the database's encoding.
pub(crate) unsafe fn text_bytes(datum: pg_sys::Datum) -> Vec<u8> {
    // SAFETY: a non-null text datum, possibly short-header or toasted.
    unsafe {
        let text = pg_sys::pg_detoast_datum_packed(datum.cast_mut_ptr());
        std::slice::from_raw_parts(
            pgrx::varlena::vardata_any(text).cast::<u8>(),
            pgrx::varlena::varsize_any_exhdr(text),
        )
        .to_vec()
    }
}

fn queue_of(relation: pg_sys::Oid, name: Vec<u8>) -> Queue {
    Queue { database: unsafe { pg_sys::MyDatabaseId }.to_u32(), relation: relation.to_u32(), name }
}

/// `jobs._claim_from_priority(relation regclass, queue text, ticket bigint)`
/// and its `_run_at` and `_id` siblings: the parts of the position a claim
/// starts from. STABLE, so that they bound the index scan: evaluated when it
/// starts, after the statement's snapshot, and the three parts come from
/// one read. Written against the function manager to take the queue's text
/// in whatever encoding the database has.
unsafe fn claim_from(fcinfo: pg_sys::FunctionCallInfo) -> Key {
    // SAFETY: called with the three non-null arguments of the declaration (STRICT).
    unsafe {
        let arg = |i: usize| pgrx::fcinfo::pg_getarg_datum(fcinfo, i).expect("STRICT");
        let relation = pg_sys::Oid::from(arg(0).value() as u32);
        let queue = queue_of(relation, text_bytes(arg(1)));
        read(queue, arg(2).value() as i64)
    }
}

finfo_v1!(pg_finfo_claim_from_priority);
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn claim_from_priority(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    pg_sys::Datum::from(unsafe { claim_from(fcinfo) }.priority)
}

finfo_v1!(pg_finfo_claim_from_run_at);
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn claim_from_run_at(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    pg_sys::Datum::from(unsafe { claim_from(fcinfo) }.run_at)
}

finfo_v1!(pg_finfo_claim_from_id);
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn claim_from_id(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    pg_sys::Datum::from(unsafe { claim_from(fcinfo) }.id)
}

finfo_v1!(pg_finfo_lower_position);
/// `jobs._lower_position(relation regclass, queue text, priority int, run_at
/// timestamptz, id bigint)`: the worker found the queue's first queued row
/// here; a position above it comes down (rows written with the trigger
/// disabled were never counted). Whether it did.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn lower_position(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called with the five non-null arguments of the declaration (STRICT).
    let lowered = unsafe {
        let arg = |i: usize| pgrx::fcinfo::pg_getarg_datum(fcinfo, i).expect("STRICT");
        let queue = queue_of(pg_sys::Oid::from(arg(0).value() as u32), text_bytes(arg(1)));
        let key = Key { priority: arg(2).value() as i32, run_at: arg(3).value() as i64, id: arg(4).value() as i64 };
        enabled() && {
            let mut positions = POSITIONS.exclusive();
            match positions.entries.iter_mut().find(|e| e.is(&queue)) {
                Some(e) if key < e.position => {
                    e.position = key;
                    e.generation += 1;
                    true
                }
                _ => false,
            }
        }
    };
    pg_sys::Datum::from(lowered)
}

finfo_v1!(pg_finfo_queued);
/// `jobs._queued(relation regclass, queue text, priority int, run_at
/// timestamptz, id bigint)`: every function that makes a row of jobs.job
/// queued calls this with the row's claim key (or a key at or below it):
/// the queue's position comes down to it before the transaction commits,
/// and a due job is announced (src/notify.rs), so one call does both.
#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn queued(fcinfo: pg_sys::FunctionCallInfo) -> pg_sys::Datum {
    // SAFETY: called with the five non-null arguments of the declaration (STRICT).
    unsafe {
        let arg = |i: usize| pgrx::fcinfo::pg_getarg_datum(fcinfo, i).expect("STRICT");
        let key = Key { priority: arg(2).value() as i32, run_at: arg(3).value() as i64, id: arg(4).value() as i64 };
        queued_row(pg_sys::Oid::from(arg(0).value() as u32), arg(1), key);
        pg_sys::Datum::from(0)
    }
}

/// `jobs._queued` for compiled callers: `queue` a text datum.
pub unsafe fn queued_row(relation: pg_sys::Oid, queue: pg_sys::Datum, key: Key) {
    unsafe {
        made_queued(queue_of(relation, text_bytes(queue)), key);
        if key.run_at <= pg_sys::GetCurrentTransactionStartTimestamp() {
            crate::notify::announce_text(queue);
        }
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    fn queue(name: &str) -> Queue {
        Queue { database: 1, relation: 2, name: name.as_bytes().to_vec() }
    }

    #[test]
    fn keys_order_as_claims_do() {
        let k = |priority, run_at, id| Key { priority, run_at, id };
        assert!(k(0, 5, 9) < k(1, 0, 0));
        assert!(k(0, 5, 9) < k(0, 6, 0));
        assert!(k(0, 5, 9) < k(0, 5, 10));
        assert!(Key::MIN < k(i32::MIN, 0, 0) && k(i32::MAX, i64::MAX, 0) < Key::MAX);
    }

    #[test]
    fn entries_are_found_made_and_given_up_only_without_makers() {
        let mut p = Box::new(Positions::EMPTY);
        let a = p.entry(&queue("a")).unwrap();
        assert_eq!(p.entry(&queue("a")), Some(a));
        assert_eq!(p.entries[a].position, Key::MIN);
        for i in 0..ENTRIES {
            let e = p.entry(&queue(&format!("q{i}"))).unwrap();
            p.entries[e].makers = 1;
        }
        // every entry has a maker in flight: no room, and "a" was given up
        assert!(!p.entries.iter().any(|e| e.is(&queue("a"))));
        assert_eq!(p.entry(&queue("b")), None);
        let before = p.entries[3].generation;
        p.entries[3].makers = 0;
        let b = p.entry(&queue("b")).unwrap();
        assert_eq!(b, 3);
        assert!(p.entries[b].generation > before, "a reassigned entry refuses raises read before");
        assert_eq!(p.entries[b].position, Key::MIN);
        assert_eq!(p.entry(&queue(&"x".repeat(NAME_BYTES + 1))), None);
    }
}
