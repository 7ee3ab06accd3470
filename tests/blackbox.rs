//! Black-box tests over real connections to a running cluster with `jobs`
//! installed: concurrency, locking, fencing and notifications.
//! `pg_test/test.sh` starts the cluster and sets JOBS_TEST_DSN.

mod common;

use common::{PATIENCE, connect, connect_to, fresh_name as fresh_queue};
use postgres::Client;
use postgres::error::SqlState;
use std::collections::HashMap;
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

fn enqueue_many(client: &mut Client, queue: &str, count: usize) {
    for start in (0..count).step_by(1000) {
        let n = (count - start).min(1000) as i32;
        client
            .execute(
                "SELECT jobs.enqueue_batch('noop', array_agg(jsonb_build_object('n', g)), queue => $1)
                 FROM generate_series($2::int, $2::int + $3::int - 1) g",
                &[&queue, &(start as i32), &n],
            )
            .unwrap();
    }
}

/// 8 workers claim `max_jobs` at a time and complete each job; returns how
/// many times each job id was completed by a worker, and the drain rate.
fn drain(queue: &str, workers: usize, max_jobs: i32) -> (HashMap<i64, u32>, f64) {
    let completions = Arc::new(Mutex::new(HashMap::<i64, u32>::new()));
    let start = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let queue = queue.to_string();
            let completions = Arc::clone(&completions);
            thread::spawn(move || {
                let mut client = connect();
                let worker = format!("worker-{w}");
                loop {
                    let rows = client
                        .query(
                            "SELECT id, lease_token::text FROM jobs.claim($1, $2, max_jobs => $3)",
                            &[&worker, &queue, &max_jobs],
                        )
                        .unwrap();
                    if rows.is_empty() {
                        break;
                    }
                    for row in rows {
                        let id: i64 = row.get(0);
                        let token: String = row.get(1);
                        client.execute("SELECT jobs.complete($1, $2::text::uuid)", &[&id, &token]).unwrap();
                        *completions.lock().unwrap().entry(id).or_default() += 1;
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker thread panicked");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let completions = Arc::try_unwrap(completions).unwrap().into_inner().unwrap();
    let rate = completions.values().sum::<u32>() as f64 / elapsed;
    (completions, rate)
}

fn assert_drained_exactly_once(queue: &str, jobs: usize, completions: &HashMap<i64, u32>) {
    assert_eq!(completions.len(), jobs, "every job was completed by some worker");
    assert!(completions.values().all(|&n| n == 1), "no job was completed twice");
    let mut client = connect();
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'completed'),
                    count(*) FILTER (WHERE state <> 'completed'),
                    (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j ON j.id = r.job_id
                      WHERE j.queue = $1 AND r.outcome = 'completed'),
                    (SELECT count(*) FROM (SELECT r.job_id FROM jobs.job_run r JOIN jobs.job j ON j.id = r.job_id
                      WHERE j.queue = $1 GROUP BY r.job_id HAVING count(*) > 1) dup)
             FROM jobs.job WHERE queue = $1",
            &[&queue],
        )
        .unwrap();
    let (completed, left, runs, duplicated): (i64, i64, i64, i64) = (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(completed, jobs as i64);
    assert_eq!(left, 0, "nothing left behind");
    assert_eq!(runs, jobs as i64, "one completed history row per job");
    assert_eq!(duplicated, 0);
}

fn drain_test(max_jobs: i32) {
    const JOBS: usize = 5_000;
    let queue = fresh_queue(&format!("drain{max_jobs}"));
    enqueue_many(&mut connect(), &queue, JOBS);
    let (completions, rate) = drain(&queue, 8, max_jobs);
    println!("drain of {JOBS} jobs by 8 workers, max_jobs {max_jobs}: {rate:.0} jobs/s");
    assert_drained_exactly_once(&queue, JOBS, &completions);
}

#[test]
fn eight_workers_drain_5000_jobs_exactly_once_one_at_a_time() {
    drain_test(1);
}

#[test]
fn eight_workers_drain_5000_jobs_exactly_once_ten_at_a_time() {
    drain_test(10);
}

#[test]
fn claim_skips_rows_another_transaction_holds_without_waiting() {
    let queue = fresh_queue("skiplocked");
    enqueue_many(&mut connect(), &queue, 10);

    let mut holder = connect();
    let mut tx = holder.transaction().unwrap();
    let held: Vec<i64> = tx
        .query("SELECT id FROM jobs.claim('holder', $1, max_jobs => 5)", &[&queue])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(held.len(), 5);

    let mut other = connect();
    // The holder never commits while the claim runs: a claim that waited on
    // its locks would wait forever, and this timeout ends it with an error.
    other.batch_execute("SET statement_timeout = '30s'").unwrap();
    let started = Instant::now();
    let got: Vec<i64> = other
        .query("SELECT id FROM jobs.claim('other', $1, max_jobs => 10)", &[&queue])
        .expect("claim returns beside an uncommitted claim instead of waiting on its locks")
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!("claim beside an uncommitted claim returned in {:?}", started.elapsed());
    assert_eq!(got.len(), 5, "the five rows nobody holds");
    assert!(got.iter().all(|id| !held.contains(id)));
    tx.rollback().unwrap();
}

#[test]
fn stale_worker_cannot_complete_a_canceled_job() {
    let queue = fresh_queue("stale");
    let mut worker = connect();
    let mut admin = connect();
    worker.execute("SELECT jobs.enqueue('t', queue => $1)", &[&queue]).unwrap();
    let row = worker.query_one("SELECT id, lease_token::text FROM jobs.claim('w', $1)", &[&queue]).unwrap();
    let (id, token): (i64, String) = (row.get(0), row.get(1));
    admin.execute("SELECT jobs.cancel($1)", &[&id]).unwrap();

    let err = worker
        .execute("SELECT jobs.complete($1, $2::text::uuid)", &[&id, &token])
        .expect_err("a canceled job's old lease must not complete it");
    assert_eq!(err.code(), Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");
    let err = worker.execute("SELECT jobs.fail($1, $2::text::uuid, 'late')", &[&id, &token]).expect_err("nor fail it");
    assert_eq!(err.code(), Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");

    let row = admin
        .query_one(
            "SELECT state::text, (SELECT array_agg(outcome) FROM jobs.job_run WHERE job_id = $1)
             FROM jobs.job WHERE id = $1",
            &[&id],
        )
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "canceled");
    assert_eq!(row.get::<_, Vec<String>>(1), vec!["canceled".to_string()]);
}

#[test]
fn concurrent_enqueuers_with_one_idempotency_key_create_one_job() {
    const ENQUEUERS: usize = 8;
    let queue = fresh_queue("idem");
    let key = format!("key-{queue}");
    let barrier = Arc::new(Barrier::new(ENQUEUERS));
    let handles: Vec<_> = (0..ENQUEUERS)
        .map(|i| {
            let (queue, key, barrier) = (queue.clone(), key.clone(), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut client = connect();
                let mut tx = client.transaction().unwrap();
                barrier.wait();
                let id: i64 = tx
                    .query_one(
                        "SELECT id FROM jobs.enqueue('t', jsonb_build_object('by', $3::int), queue => $1,
                                                     idempotency_key => $2)",
                        &[&queue, &key, &(i as i32)],
                    )
                    .unwrap()
                    .get(0);
                // Hold the insert uncommitted so the others meet it mid-flight.
                thread::sleep(Duration::from_millis(50));
                tx.commit().unwrap();
                id
            })
        })
        .collect();
    let ids: Vec<i64> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "all enqueuers got one job: {ids:?}");
    let count: i64 = connect().query_one("SELECT count(*) FROM jobs.job WHERE queue = $1", &[&queue]).unwrap().get(0);
    assert_eq!(count, 1);
}

/// How long to go on listening for a notification that must not come.
const QUIET: Duration = Duration::from_millis(1_500);

/// Notifications on channel `jobs` for any of `queues` that reach
/// `listener`, with when each arrived after `since`: until `expected` have
/// come (or PATIENCE has passed), then QUIET longer for any that should not.
fn heard(listener: &mut Client, queues: &[&str], expected: usize, since: Instant) -> Vec<(String, Duration)> {
    let mut heard = Vec::new();
    let mut notifications = listener.notifications();
    let mut deadline = Instant::now() + if expected == 0 { QUIET } else { PATIENCE };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut iter = notifications.timeout_iter(left);
        let Some(n) = fallible_iterator::FallibleIterator::next(&mut iter).unwrap() else { break };
        assert_eq!(n.channel(), "jobs");
        if queues.contains(&n.payload()) {
            heard.push((n.payload().to_string(), since.elapsed()));
            if heard.len() == expected {
                deadline = Instant::now() + QUIET;
            }
        }
    }
    heard
}

#[test]
fn enqueue_notifies_listeners_once_per_queue_per_transaction() {
    let (q1, q2) = (fresh_queue("notify-a"), fresh_queue("notify-b"));
    let mut listener = connect();
    listener.batch_execute("LISTEN jobs").unwrap();

    let mut producer = connect();
    let mut tx = producer.transaction().unwrap();
    for _ in 0..3 {
        tx.execute("SELECT jobs.enqueue('t', queue => $1)", &[&q1]).unwrap();
    }
    tx.execute("SELECT jobs.enqueue_batch('t', ARRAY['{}', '{}']::jsonb[], queue => $1)", &[&q2]).unwrap();
    tx.execute("SELECT jobs.enqueue('t', queue => $1, run_at => now() + interval '1 hour')", &[&q2]).unwrap();
    tx.commit().unwrap();

    let mut payloads: Vec<String> =
        heard(&mut listener, &[&q1, &q2], 2, Instant::now()).into_iter().map(|(queue, _)| queue).collect();
    payloads.sort();
    assert_eq!(payloads, vec![q1, q2]);
}

/// Who sent the notifications for `queue` that reach `listener`, once `expected` have come.
fn senders(listener: &mut Client, queue: &str, expected: usize) -> Vec<i32> {
    let mut senders = Vec::new();
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(PATIENCE);
    while senders.len() < expected {
        let Some(n) = fallible_iterator::FallibleIterator::next(&mut iter).unwrap() else { break };
        if n.payload() == queue {
            senders.push(n.process_id());
        }
    }
    senders
}

#[test]
fn the_worker_sends_the_notifications_of_the_database_it_serves() {
    let queue = fresh_queue("notify-sender");
    let mut listener = connect();
    listener.batch_execute("LISTEN jobs").unwrap();
    let worker: i32 =
        listener.query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs worker'", &[]).unwrap().get(0);
    let mut producer = connect();
    producer.execute("SELECT jobs.enqueue('t', queue => $1)", &[&queue]).unwrap();
    assert_eq!(
        senders(&mut listener, &queue, 1),
        [worker],
        "the producer's commit left its notification to the worker"
    );

    // Where no worker serves, the enqueuing transaction notifies itself.
    let database = fresh_queue("unserved").replace('-', "_");
    let mut other = connect_to(&common::create_database(&database, ""));
    other.batch_execute("SET client_min_messages = error; CREATE EXTENSION jobs; LISTEN jobs").unwrap();
    let mut producer = connect_to(&common::dsn_for(&database));
    let me: i32 = producer.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    producer.execute("SELECT jobs.enqueue('t', queue => $1)", &[&queue]).unwrap();
    assert_eq!(senders(&mut other, &queue, 1), [me]);
    drop((other, producer));
    common::drop_database(&database);
}

#[test]
fn delayed_enqueue_does_not_notify() {
    let queue = fresh_queue("notify-later");
    let mut listener = connect();
    listener.batch_execute("LISTEN jobs").unwrap();
    connect().execute("SELECT jobs.enqueue('t', queue => $1, run_at => now() + interval '1 hour')", &[&queue]).unwrap();
    assert_eq!(heard(&mut listener, &[&queue], 0, Instant::now()), [], "a job due in an hour is not news yet");
}

#[test]
fn delayed_job_notifies_when_it_becomes_due() {
    let queue = fresh_queue("notify-due");
    let mut listener = connect();
    listener.batch_execute("LISTEN jobs").unwrap();
    // Before the enqueue: its now(), and so run_at - 2 s, is no earlier.
    let before = Instant::now();
    connect()
        .execute("SELECT jobs.enqueue('t', queue => $1, run_at => now() + interval '2 seconds')", &[&queue])
        .unwrap();
    let heard = heard(&mut listener, &[&queue], 1, before);
    let (_, after) = heard.first().expect("the background worker announces the job when it is due");
    println!("job due in 2 s announced after {after:?}");
    assert!(*after >= Duration::from_secs(2), "not before it is due: {after:?}");
    assert_eq!(heard.len(), 1, "once");
}

/// Makes every write to jobs of one queue take `ms` milliseconds, so a
/// statement can be interrupted half-way; removed however the test ends.
struct SlowQueue(String);

impl SlowQueue {
    fn new(queue: &str, ms: u32) -> SlowQueue {
        let name = format!("jobs_test_slow_{}", std::process::id());
        connect()
            .batch_execute(&format!(
                "CREATE FUNCTION public.{name}() RETURNS trigger LANGUAGE plpgsql AS $$
                 BEGIN PERFORM pg_sleep({ms} / 1000.0); RETURN NEW; END $$;
                 CREATE TRIGGER {name} BEFORE INSERT OR UPDATE ON jobs.job FOR EACH ROW
                 WHEN (NEW.queue = '{queue}') EXECUTE FUNCTION public.{name}()"
            ))
            .unwrap();
        SlowQueue(name)
    }
}

impl Drop for SlowQueue {
    fn drop(&mut self) {
        connect().batch_execute(&format!("DROP TRIGGER {0} ON jobs.job; DROP FUNCTION public.{0}()", self.0)).unwrap();
    }
}

fn assert_canceled(result: Result<u64, postgres::Error>) {
    let err = result.expect_err("the statement was interrupted");
    assert_eq!(err.code(), Some(&SqlState::QUERY_CANCELED), "{err}");
}

/// (queued, running, attempts made, history rows) of a queue.
fn queue_state(client: &mut Client, queue: &str) -> (i64, i64, i64, i64) {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'running'),
                    coalesce(sum(attempts), 0),
                    (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j ON j.id = r.job_id WHERE j.queue = $1)
             FROM jobs.job WHERE queue = $1",
            &[&queue],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2), row.get(3))
}

#[test]
fn statement_timeout_in_the_middle_of_claim_and_enqueue_batch_leaves_nothing_half_done() {
    let queue = fresh_queue("timeout");
    let mut client = connect();
    enqueue_many(&mut client, &queue, 50);
    let _slow = SlowQueue::new(&queue, 20);

    client.batch_execute("SET statement_timeout = '300ms'").unwrap();
    // The state is read over a connection without the timeout: on a busy
    // machine with a large table, reading the history can take longer.
    let mut observer = connect();
    assert_canceled(client.execute("SELECT jobs.claim('w', $1, max_jobs => 50)", &[&queue]));
    assert_eq!(queue_state(&mut observer, &queue), (50, 0, 0, 0), "no job claimed half-way");

    assert_canceled(
        client.execute("SELECT jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[100]), queue => $1)", &[&queue]),
    );
    assert_eq!(queue_state(&mut observer, &queue), (50, 0, 0, 0), "no job of the batch was enqueued");
}

#[test]
fn client_cancel_in_the_middle_of_complete_leaves_the_job_running_under_its_lease() {
    let queue = fresh_queue("cancel");
    let mut client = connect();
    enqueue_many(&mut client, &queue, 1);
    let row = client.query_one("SELECT id, lease_token::text FROM jobs.claim('w', $1)", &[&queue]).unwrap();
    let (id, token): (i64, String) = (row.get(0), row.get(1));
    let pid: i32 = client.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    // Long enough that only the cancel ends it.
    let slow = SlowQueue::new(&queue, 120_000);

    // Cancel once the complete is seen running (in the slow trigger).
    let cancel = client.cancel_token();
    let canceller = thread::spawn(move || {
        let mut admin = connect();
        common::wait_for(PATIENCE, || {
            admin
                .query_one(
                    "SELECT state = 'active' AND query LIKE '%jobs.complete%' FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .unwrap()
                .get::<_, bool>(0)
                .then_some(())
        })
        .expect("the complete runs");
        cancel.cancel_query(postgres::NoTls).unwrap();
    });
    assert_canceled(client.execute("SELECT jobs.complete($1, $2::text::uuid)", &[&id, &token]));
    canceller.join().unwrap();
    assert_eq!(queue_state(&mut client, &queue), (0, 1, 1, 0), "still running, no history written");

    drop(slow);
    client.execute("SELECT jobs.complete($1, $2::text::uuid)", &[&id, &token]).expect("the lease still holds");
    assert_eq!(queue_state(&mut client, &queue).3, 1);
}

#[test]
fn a_database_that_is_not_utf8_takes_names_in_its_own_encoding() {
    // The state machine's CHECK counts name lengths with PostgreSQL's
    // length(), in the database's encoding: LATIN1 'é' is one character.
    let name = "jobs_latin1_test";
    let dsn = common::create_database(name, "ENCODING 'LATIN1' TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'");
    let mut db = connect_to(&dsn);
    db.batch_execute("CREATE EXTENSION jobs").unwrap();
    let queue = "é".repeat(128);
    db.execute("SELECT jobs.enqueue('tâche', queue => $1)", &[&queue]).unwrap();
    let row = db.query_one("SELECT id, lease_token::text FROM jobs.claim('wörker', $1)", &[&queue]).unwrap();
    let (id, token): (i64, String) = (row.get(0), row.get(1));
    let state: String =
        db.query_one("SELECT state::text FROM jobs.complete($1, $2::text::uuid)", &[&id, &token]).unwrap().get(0);
    assert_eq!(state, "completed");
    let too_long = "é".repeat(129);
    let err = db.execute("SELECT jobs.enqueue('t', queue => $1)", &[&too_long]).unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE));
    // claim is compiled: its arguments reach the SQL that refuses them as
    // they came, in the database's encoding. (The message itself passes
    // through pgrx as UTF-8: here its é come out as U+FFFD.)
    let err = db.query("SELECT * FROM jobs.claim('wörker', $1)", &[&too_long]).unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE), "{err}");
    let message = err.as_db_error().unwrap().message();
    assert!(message.starts_with("queue \"") && message.ends_with("is longer than 128 characters"), "{message}");
    drop(db);
    common::drop_database(name);
}
