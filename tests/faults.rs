//! The ledger test: producers and 8 workers run while connections, the
//! background worker and the whole server are killed; afterwards every job
//! whose enqueue committed is completed exactly once and nothing is lost.
//! Restarts the cluster twice; the tests that run after it reconnect.

mod common;

use common::{PATIENCE, Rng, dsn, fresh_name, wait_for};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PRODUCERS: usize = 2;
const JOBS_PER_PRODUCER: usize = 1_500;
const WORKERS: usize = 8;

/// Connects, retrying while the server restarts.
fn reconnect(application: &str) -> Client {
    let mut config: postgres::Config = dsn().parse().unwrap();
    config.application_name(application);
    wait_for(PATIENCE, || config.connect(NoTls).ok()).expect("the server comes back")
}

#[derive(Default)]
struct Tally {
    faults_connections: AtomicU64,
    faults_worker: AtomicU64,
    faults_restarts: AtomicU64,
    stale_rejections: AtomicU64,
    outlived_leases: AtomicU64,
    enqueue_retries: AtomicU64,
}

#[test]
fn every_committed_job_completes_exactly_once_through_kills_and_crashes() {
    let queue = fresh_name("ledger");
    let schedule = fresh_name("ledger-schedule");
    let tally = Arc::new(Tally::default());
    let done = Arc::new(AtomicBool::new(false));
    // Successful completes as the workers saw them, per job id.
    let completions = Arc::new(Mutex::new(HashMap::<i64, u32>::new()));

    reconnect("ledger-setup")
        .execute("SELECT jobs.schedule($1, '* * * * * *', 'beat', queue => $1)", &[&schedule])
        .unwrap();

    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (queue, tally) = (queue.clone(), Arc::clone(&tally));
            thread::spawn(move || {
                let mut client = reconnect("ledger-producer");
                for n in 0..JOBS_PER_PRODUCER {
                    let uid = format!("{queue}-{p}-{n}");
                    // An enqueue whose outcome is unknown (connection lost) is
                    // retried with the same idempotency key: one job either way.
                    loop {
                        match client.execute(
                            "SELECT jobs.enqueue('ledger', jsonb_build_object('uid', $2::text), queue => $1,
                                                 max_attempts => 100, idempotency_key => $2)",
                            &[&queue, &uid],
                        ) {
                            Ok(_) => break,
                            Err(_) => {
                                tally.enqueue_retries.fetch_add(1, Ordering::Relaxed);
                                client = reconnect("ledger-producer");
                            }
                        }
                    }
                }
            })
        })
        .collect();

    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (queue, tally, done, completions) =
                (queue.clone(), Arc::clone(&tally), Arc::clone(&done), Arc::clone(&completions));
            thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (w as u64 + 1));
                let mut client = reconnect("ledger-worker");
                let worker = format!("ledger-worker-{w}");
                while !done.load(Ordering::Relaxed) {
                    let max_jobs = 1 + rng.below(5) as i32;
                    let claimed = match client.query(
                        "SELECT id, lease_token::text FROM jobs.claim($1, $2, max_jobs => $3, lease => '2 seconds')",
                        &[&worker, &queue, &max_jobs],
                    ) {
                        Ok(rows) => rows,
                        Err(_) => {
                            client = reconnect("ledger-worker");
                            continue;
                        }
                    };
                    if claimed.is_empty() {
                        thread::sleep(Duration::from_millis(20));
                    }
                    for row in claimed {
                        let (id, token): (i64, String) = (row.get(0), row.get(1));
                        // Now and then a job outlives its lease: this worker
                        // waits until it has been recovered, and then its
                        // complete must fail.
                        if rng.below(200) == 0 {
                            let lost = wait_for(PATIENCE, || {
                                client
                                    .query_one(
                                        "SELECT state <> 'running' OR lease_token IS DISTINCT FROM $2::text::uuid
                                         FROM jobs.job WHERE id = $1",
                                        &[&id, &token],
                                    )
                                    .map_or(Some(false), |row| row.get::<_, bool>(0).then_some(true))
                            });
                            if lost != Some(true) {
                                client = reconnect("ledger-worker");
                                break;
                            }
                            tally.outlived_leases.fetch_add(1, Ordering::Relaxed);
                        } else {
                            thread::sleep(Duration::from_millis(rng.below(5) as u64));
                        }
                        match client.execute("SELECT jobs.complete($1, $2::text::uuid)", &[&id, &token]) {
                            Ok(_) => *completions.lock().unwrap().entry(id).or_default() += 1,
                            Err(e) if e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => {
                                tally.stale_rejections.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(_) => {
                                client = reconnect("ledger-worker");
                                break;
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // Faults: every ~700 ms kill something; two immediate restarts.
    let mut admin = reconnect("ledger-admin");
    let mut rng = Rng(42);
    let faults_started = Instant::now();
    for round in 0..30 {
        thread::sleep(Duration::from_millis(700));
        if round == 10 || round == 20 {
            common::restart_immediately();
            tally.faults_restarts.fetch_add(1, Ordering::Relaxed);
            admin = reconnect("ledger-admin");
            continue;
        }
        let (target, counter) = if round % 7 == 3 {
            ("backend_type = 'jobs worker'", &tally.faults_worker)
        } else {
            ("application_name = 'ledger-worker'", &tally.faults_connections)
        };
        // One of the targets, once there is one (the worker may still be
        // coming back from the last fault).
        let terminated = wait_for(PATIENCE, || {
            let pids: Vec<i32> = match admin.query(&format!("SELECT pid FROM pg_stat_activity WHERE {target}"), &[]) {
                Ok(rows) => rows.iter().map(|r| r.get(0)).collect(),
                Err(_) => {
                    admin = reconnect("ledger-admin");
                    return None;
                }
            };
            let &pid = pids.get(rng.below(pids.len().max(1)))?;
            admin.query_one("SELECT pg_terminate_backend($1)", &[&pid]).ok()?.get::<_, bool>(0).then_some(())
        });
        assert!(terminated.is_some(), "round {round}: nothing to terminate where {target}");
        counter.fetch_add(1, Ordering::Relaxed);
    }
    println!("faults injected over {:?}", faults_started.elapsed());

    for p in producers {
        p.join().expect("producer panicked");
    }
    // Jobs held by killed workers come back after their 2 s leases.
    let expected = (PRODUCERS * JOBS_PER_PRODUCER) as i64;
    let drained = wait_for(PATIENCE * 2, || {
        let n: i64 = admin
            .query_one("SELECT count(*) FROM jobs.job WHERE queue = $1 AND state = 'completed'", &[&queue])
            .unwrap()
            .get(0);
        (n == expected).then_some(())
    });
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }
    admin.execute("SELECT jobs.unschedule($1)", &[&schedule]).unwrap();

    let row = admin
        .query_one(
            "SELECT count(*),
                    count(DISTINCT payload->>'uid'),
                    count(*) FILTER (WHERE state = 'completed'),
                    count(*) FILTER (WHERE state = 'running'),
                    (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j ON j.id = r.job_id
                      WHERE j.queue = $1 AND r.outcome = 'lease_expired'),
                    (SELECT count(*) FROM (SELECT r.job_id FROM jobs.job_run r JOIN jobs.job j ON j.id = r.job_id
                      WHERE j.queue = $1 AND r.outcome = 'completed' GROUP BY r.job_id HAVING count(*) > 1) d),
                    (SELECT count(*) FROM jobs.job j WHERE j.queue = $1 AND j.state = 'completed'
                       AND NOT EXISTS (SELECT FROM jobs.job_run r WHERE r.job_id = j.id AND r.outcome = 'completed')),
                    (SELECT count(*) - count(DISTINCT scheduled_for) FROM jobs.job WHERE queue = $2)
             FROM jobs.job WHERE queue = $1",
            &[&queue, &schedule],
        )
        .unwrap();
    let (jobs, uids, completed, running, recoveries, doubly_recorded, unrecorded, schedule_duplicates): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6), row.get(7));
    let completions = completions.lock().unwrap();
    let completed_twice = completions.values().filter(|&&n| n > 1).count();
    let lost = expected - uids;

    println!(
        "ledger: jobs {jobs} (expected {expected}), completed {completed}, running {running}; faults: \
         {} connections terminated, {} worker terminations, {} immediate restarts; {} enqueue retries; \
         recoveries {recoveries}; stale completes rejected {}; duplicates {}; lost {lost}; \
         schedule occurrences fired twice {schedule_duplicates}",
        tally.faults_connections.load(Ordering::Relaxed),
        tally.faults_worker.load(Ordering::Relaxed),
        tally.faults_restarts.load(Ordering::Relaxed),
        tally.enqueue_retries.load(Ordering::Relaxed),
        tally.stale_rejections.load(Ordering::Relaxed),
        jobs - uids + doubly_recorded + completed_twice as i64,
    );
    assert!(drained.is_some(), "all jobs completed once leases expired");
    assert_eq!(tally.faults_restarts.load(Ordering::Relaxed), 2);
    assert_eq!(tally.faults_connections.load(Ordering::Relaxed), 25);
    assert_eq!(tally.faults_worker.load(Ordering::Relaxed), 3);
    assert_eq!(jobs, expected, "one job per enqueue that committed");
    assert_eq!(uids, expected, "none lost");
    assert_eq!(completed, expected);
    assert_eq!(running, 0);
    assert_eq!(doubly_recorded, 0, "no job has two completed attempts");
    assert_eq!(unrecorded, 0, "every completion has its history row");
    assert_eq!(completed_twice, 0, "no complete succeeded twice for one job");
    assert_eq!(schedule_duplicates, 0);
    // Each job that outlived its lease was then refused by complete, unless
    // the connection dropped first (its complete then never reached the server).
    let outlived = tally.outlived_leases.load(Ordering::Relaxed);
    assert!(outlived > 0, "some jobs outlived their leases");
    assert!(tally.stale_rejections.load(Ordering::Relaxed) > 0, "fencing was exercised: {outlived} outlived leases");
}
