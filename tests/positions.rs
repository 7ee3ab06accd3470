//! Claims while an old snapshot is held (src/position.rs): they start where
//! the queue's claimable work starts, not at every index entry the snapshot
//! keeps alive, and still take exactly the job the claim order names, whatever
//! made it claimable: an enqueue below the position, a retry, `retry_now`,
//! lease recovery, a claim that rolled back, a maker that committed late.

mod common;

use common::{PATIENCE, Rng, connect, fresh_name, wait_for, wait_for_state};
use postgres::Client;

/// More than the least time between two raises of a queue's position
/// (src/position.rs): a claim after this long may raise it.
const RAISE_SPACING: std::time::Duration = std::time::Duration::from_millis(6);

/// A REPEATABLE READ transaction that has read jobs.job, left open (what
/// pg_dump or a long report does), and enough transactions after it that
/// cleanup counts as held back (claims raise positions only then).
fn hold_snapshot() -> Client {
    let mut holder = connect();
    holder.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM jobs.job").unwrap();
    let mut db = connect();
    for _ in 0..1100 {
        db.execute("SELECT pg_current_xact_id()", &[]).unwrap();
    }
    holder
}

fn enqueue(db: &mut Client, queue: &str, priority: i32, ago_seconds: i32) -> i64 {
    db.query_one(
        "SELECT id FROM jobs.enqueue('t', '{}', $1, run_at => now() - $3::int * interval '1 second', priority => $2,
                                     max_attempts => 1000)",
        &[&queue, &priority, &ago_seconds],
    )
    .unwrap()
    .get(0)
}

fn claim(db: &mut Client, queue: &str, n: i32) -> Vec<(i64, String)> {
    db.query("SELECT id, lease_token::text FROM jobs.claim('w', $1, $2)", &[&queue, &n])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// The due jobs a claim of `n` must take, in claim order.
fn expected(db: &mut Client, queue: &str, n: i32) -> Vec<i64> {
    db.query(
        "SELECT id FROM jobs.job WHERE queue = $1 AND state = 'queued' AND run_at <= now()
         ORDER BY priority, run_at, id LIMIT $2",
        &[&queue, &i64::from(n)],
    )
    .unwrap()
    .iter()
    .map(|r| r.get(0))
    .collect()
}

fn claim_in_order(db: &mut Client, queue: &str, n: i32) -> Vec<(i64, String)> {
    let want = expected(db, queue, n);
    let got = claim(db, queue, n);
    assert_eq!(got.iter().map(|(id, _)| *id).collect::<Vec<_>>(), want, "claim order");
    got
}

fn complete_all(db: &mut Client, jobs: &[(i64, String)]) {
    let ids: Vec<i64> = jobs.iter().map(|(id, _)| *id).collect();
    let tokens: Vec<String> = jobs.iter().map(|(_, t)| t.clone()).collect();
    let done: i64 = db
        .query_one("SELECT count(*) FROM jobs.complete_batch($1, $2::text[]::uuid[])", &[&ids, &tokens])
        .unwrap()
        .get(0);
    assert_eq!(done, ids.len() as i64);
}

/// Claims (3 at a time, each claim checked against the claim order) and
/// completes every due job of `queue`.
fn claim_and_complete_everything_due(db: &mut Client, queue: &str) {
    loop {
        let jobs = claim_in_order(db, queue, 3);
        if jobs.is_empty() {
            break;
        }
        complete_all(db, &jobs);
    }
}

/// Index entries of job_claim_idx that one claim of `n` read.
fn entries_read_by_a_claim(db: &mut Client, queue: &str, n: i32) -> (i64, usize) {
    let mut tx = db.transaction().unwrap();
    let read = "SELECT pg_stat_get_xact_tuples_returned('jobs.job_claim_idx'::regclass)";
    let before: i64 = tx.query_one(read, &[]).unwrap().get(0);
    let claimed = tx.query("SELECT id FROM jobs.claim('w', $1, $2)", &[&queue, &n]).unwrap().len();
    let after: i64 = tx.query_one(read, &[]).unwrap().get(0);
    tx.rollback().unwrap();
    (after - before, claimed)
}

#[test]
fn a_claim_under_a_held_snapshot_reads_only_the_entries_near_the_start_of_queued_work() {
    let queue = fresh_name("positions-walk");
    let mut db = connect();
    db.execute("SELECT jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[3000]), $1)", &[&queue]).unwrap();
    let holder = hold_snapshot();
    // 2,500 jobs claimed and completed after the snapshot: their entries
    // stay, none may be skipped by a scan that starts at the queue's start.
    for i in 0..250 {
        if i == 249 {
            // Claims raise a queue's position at most every 5 ms: the last
            // one before the measure surely does.
            std::thread::sleep(RAISE_SPACING);
        }
        let jobs = claim(&mut db, &queue, 10);
        assert_eq!(jobs.len(), 10);
        complete_all(&mut db, &jobs);
    }
    let (read, claimed) = entries_read_by_a_claim(&mut db, &queue, 10);
    assert_eq!(claimed, 10);
    assert!(read < 100, "a claim read {read} index entries; 2,500 claimed jobs lie before the queued ones");
    drop(holder);
}

#[test]
fn claims_under_a_held_snapshot_take_jobs_in_claim_order_whatever_made_them_claimable() {
    let queue = fresh_name("positions-order");
    let mut db = connect();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut enqueued = 0;
    for _ in 0..40 {
        enqueue(&mut db, &queue, rng.below(7) as i32 - 3, rng.below(3600) as i32);
        enqueued += 1;
    }
    // Never due in this test: the position may not pass it.
    let delayed: i64 = db
        .query_one("SELECT id FROM jobs.enqueue('t', '{}', $1, run_at => now() + interval '1 hour')", &[&queue])
        .unwrap()
        .get(0);
    let holder = hold_snapshot();
    let mut held: Vec<(i64, String)> = Vec::new();
    let mut failed: Vec<i64> = Vec::new();
    for _ in 0..600 {
        match rng.below(10) {
            0 | 1 => {
                enqueue(&mut db, &queue, rng.below(7) as i32 - 3, rng.below(3600) as i32);
                enqueued += 1;
            }
            2 | 3 | 4 => {
                let n = *rng.pick(&[1, 3, 10]);
                held.extend(claim_in_order(&mut db, &queue, n));
            }
            5 if !held.is_empty() => {
                let job = held.swap_remove(rng.below(held.len()));
                complete_all(&mut db, &[job]);
            }
            6 if !held.is_empty() => {
                // Queued again at once, often below where claims have got to.
                let (id, token) = held.swap_remove(rng.below(held.len()));
                db.execute("SELECT jobs.fail($1, $2::text::uuid, 'again', retry_in => '0')", &[&id, &token]).unwrap();
            }
            7 if !held.is_empty() => {
                let (id, token) = held.swap_remove(rng.below(held.len()));
                db.execute("SELECT jobs.fail($1, $2::text::uuid, 'no', retryable => false)", &[&id, &token]).unwrap();
                failed.push(id);
            }
            8 if !failed.is_empty() => {
                let id = failed.swap_remove(rng.below(failed.len()));
                db.execute("SELECT jobs.retry_now($1)", &[&id]).unwrap();
            }
            9 => {
                // A transaction that claims twice and rolls back: its jobs
                // are queued again, below any position its claims reached.
                let mut tx = db.transaction().unwrap();
                tx.query("SELECT id FROM jobs.claim('w', $1, 3)", &[&queue]).unwrap();
                // The second claim may raise the position (past the first's jobs?).
                std::thread::sleep(RAISE_SPACING);
                tx.query("SELECT id FROM jobs.claim('w', $1, 3)", &[&queue]).unwrap();
                tx.rollback().unwrap();
            }
            _ => {}
        }
    }
    // Everything due is still found, in order, and nothing was lost.
    loop {
        let jobs = claim_in_order(&mut db, &queue, 7);
        if jobs.is_empty() {
            break;
        }
        held.extend(jobs);
    }
    complete_all(&mut db, &held);
    for id in failed {
        db.execute("SELECT jobs.retry_now($1)", &[&id]).unwrap();
        let jobs = claim_in_order(&mut db, &queue, 1);
        assert_eq!(jobs[0].0, id);
        complete_all(&mut db, &jobs);
    }
    let counts = db
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'completed'), count(*) FILTER (WHERE state = 'queued')
             FROM jobs.job WHERE queue = $1",
            &[&queue],
        )
        .unwrap();
    let (completed, queued): (i64, i64) = (counts.get(0), counts.get(1));
    assert_eq!(completed, enqueued);
    assert_eq!(queued, 1, "the delayed job {delayed} is still queued");
    drop(holder);
}

#[test]
fn a_recovered_lease_and_a_late_committed_enqueue_are_claimed_below_the_position() {
    let queue = fresh_name("positions-late");
    let mut db = connect();
    for _ in 0..30 {
        enqueue(&mut db, &queue, 0, 60);
    }
    // Not due for an hour: once the rest is claimed, claims raise the
    // position up to it.
    db.execute("SELECT jobs.enqueue('t', '{}', $1, run_at => now() + interval '1 hour')", &[&queue]).unwrap();
    let holder = hold_snapshot();
    // The first job in claim order, leased for a second and abandoned.
    let lost: i64 = db.query_one("SELECT id FROM jobs.claim('w', $1, lease => '1 second')", &[&queue]).unwrap().get(0);
    claim_and_complete_everything_due(&mut db, &queue);
    // A job that goes first, committed only after another claim started
    // and found nothing.
    let mut maker = connect();
    let mut tx = maker.transaction().unwrap();
    let urgent: i64 =
        tx.query_one("SELECT id FROM jobs.enqueue('t', '{}', $1, priority => -10)", &[&queue]).unwrap().get(0);
    assert!(claim_in_order(&mut db, &queue, 1).is_empty());
    tx.commit().unwrap();
    let jobs = claim_in_order(&mut db, &queue, 1);
    assert_eq!(jobs.iter().map(|j| j.0).collect::<Vec<_>>(), [urgent]);
    complete_all(&mut db, &jobs);
    // The worker recovers the lease: the job is queued again (after a
    // backoff), below the position.
    wait_for_state(&mut db, lost, "queued", "the abandoned lease was recovered");
    wait_for(PATIENCE, || {
        let due: bool = db.query_one("SELECT run_at <= now() FROM jobs.job WHERE id = $1", &[&lost]).unwrap().get(0);
        due.then_some(())
    })
    .expect("the recovered job became due");
    let jobs = claim_in_order(&mut db, &queue, 1);
    assert_eq!(jobs.iter().map(|j| j.0).collect::<Vec<_>>(), [lost]);
    complete_all(&mut db, &jobs);
    drop(holder);
}

#[test]
fn a_row_written_by_hand_is_claimed_once_the_worker_checks_the_positions() {
    let queue = fresh_name("positions-untracked");
    let mut db = connect();
    for _ in 0..10 {
        enqueue(&mut db, &queue, 0, 60);
    }
    db.execute("SELECT jobs.enqueue('t', '{}', $1, run_at => now() + interval '1 hour')", &[&queue]).unwrap();
    let holder = hold_snapshot();
    claim_and_complete_everything_due(&mut db, &queue);
    // What a data-only restore into a live database or a repair by hand
    // does: a queued row, below the position, that no function of the
    // extension wrote.
    let untracked: i64 = db
        .query_one(
            "INSERT INTO jobs.job (queue, job_type, payload, priority, max_attempts) VALUES ($1, 't', '{}', -1, 1)
             RETURNING id",
            &[&queue],
        )
        .unwrap()
        .get(0);
    let claimed = wait_for(PATIENCE, || {
        let jobs = claim(&mut db, &queue, 1);
        (!jobs.is_empty()).then_some(jobs)
    })
    .expect("the untracked row was claimed");
    assert_eq!(claimed.iter().map(|j| j.0).collect::<Vec<_>>(), [untracked]);
    complete_all(&mut db, &claimed);
    drop(holder);
}
