//! Streaming replication and failover: a primary with the library preloaded
//! and a synchronous standby made with pg_basebackup. On the standby nothing
//! of the extension runs (no worker, no error in its log), its tables and
//! views can be read, and writes fail with PostgreSQL's read-only error
//! (25006). Then producers and workers run against the primary while it is
//! stopped with `-m immediate` and the standby promoted: the worker starts on
//! the new primary, no acknowledged enqueue or completion is lost, no
//! schedule occurrence fires twice, a lease held through the old primary is
//! recovered, and the clients continue on the new primary.

mod common;

use common::{Cluster, PATIENCE, as_postgres, expired_at, pg_bin, wait_for, wait_for_state};
use postgres::error::SqlState;
use postgres::{Client, NoTls};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const PRODUCERS: usize = 2;
const JOBS_PER_PRODUCER: usize = 600;
const WORKERS: usize = 2;

/// Where the clients connect: the primary, then the promoted standby.
#[derive(Clone)]
struct Target(Arc<Mutex<String>>);

impl Target {
    fn connect(&self) -> Client {
        wait_for(PATIENCE, || Client::connect(&self.0.lock().unwrap().clone(), NoTls).ok())
            .expect("a server to connect to")
    }
}

fn count(db: &mut Client, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

#[test]
fn standby_runs_nothing_and_failover_loses_nothing() {
    let bin = pg_bin();
    let primary = Cluster::start("primary", 21, "jobs.database_name = 'postgres'\nwal_level = replica\n");
    let mut admin = primary.connect("postgres");
    admin.batch_execute("CREATE EXTENSION jobs").unwrap();

    let standby_data = format!("/tmp/jobs-standby-{}", std::process::id());
    let _ = std::process::Command::new("rm").args(["-rf", &standby_data]).status();
    as_postgres(
        &format!("{bin}/pg_basebackup"),
        &[
            "-h",
            "127.0.0.1",
            "-p",
            &primary.port.to_string(),
            "-U",
            "postgres",
            "-D",
            &standby_data,
            "-R",
            "-X",
            "stream",
        ],
    );
    let standby = Cluster::adopt(&bin, &standby_data, 22);
    // Its own port, socket and log (pg_basebackup copied the primary's).
    standby.append_conf(&format!("port = {}\nunix_socket_directories = '{standby_data}'\n", standby.port));
    as_postgres("/usr/bin/truncate", &["-s", "0", &format!("{standby_data}/server.log")]);
    standby.pg_ctl(&["start"]);
    // Synchronous from now on: a commit the primary acknowledges is on the
    // standby (set after the base backup, so the standby does not inherit it).
    admin.batch_execute("ALTER SYSTEM SET synchronous_standby_names = '*'").unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    wait_for(PATIENCE, || {
        let state: Option<String> =
            admin.query_opt("SELECT sync_state FROM pg_stat_replication", &[]).unwrap().map(|r| r.get(0));
        (state.as_deref() == Some("sync")).then_some(())
    })
    .expect("the standby replicates synchronously");

    // The standby: readable, refuses writes, runs no worker.
    admin.batch_execute("SELECT jobs.enqueue_batch('seen', array_fill('{}'::jsonb, ARRAY[5]), queue => 'r')").unwrap();
    let mut replica = standby.connect("postgres");
    wait_for(PATIENCE, || (count(&mut replica, "SELECT count(*) FROM jobs.job WHERE queue = 'r'") == 5).then_some(()))
        .expect("the standby replays the jobs");
    assert!(replica.query_one("SELECT pg_is_in_recovery()", &[]).unwrap().get::<_, bool>(0));
    let queued: i64 = replica.query_one("SELECT queued FROM jobs.stats('r')", &[]).unwrap().get(0);
    assert_eq!(queued, 5, "jobs.stats() answers on the standby");
    count(&mut replica, "SELECT count(*) FROM jobs.queue_stats");
    count(&mut replica, "SELECT count(*) FROM jobs.recent_failures");
    let err = replica.execute("SELECT jobs.enqueue('nope')", &[]).expect_err("the standby refuses writes");
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION), "{err}");
    let err = replica.execute("SELECT jobs.claim('w', 'r')", &[]).expect_err("and claims");
    assert_eq!(err.code(), Some(&SqlState::READ_ONLY_SQL_TRANSACTION), "{err}");

    // The load: producers (idempotency keys, retried when the outcome is
    // unknown), workers, a schedule, and one job whose worker never returns.
    admin.batch_execute("SELECT jobs.schedule('beat', '* * * * * *', 'beat', queue => 'beat')").unwrap();
    let abandoned: i64 =
        admin.query_one("SELECT id FROM jobs.enqueue('abandoned', queue => 'gone')", &[]).unwrap().get(0);

    let target = Target(Arc::new(Mutex::new(primary.dsn("postgres"))));
    let acked_enqueues = Arc::new(Mutex::new(HashSet::<String>::new()));
    let acked_completions = Arc::new(Mutex::new(HashSet::<i64>::new()));
    let reconnects = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (target, acked, reconnects) = (target.clone(), Arc::clone(&acked_enqueues), Arc::clone(&reconnects));
            thread::spawn(move || {
                let mut db = target.connect();
                for n in 0..JOBS_PER_PRODUCER {
                    let key = format!("failover-{p}-{n}");
                    while db
                        .execute("SELECT jobs.enqueue('work', queue => 'ledger', idempotency_key => $1)", &[&key])
                        .is_err()
                    {
                        reconnects.fetch_add(1, Ordering::Relaxed);
                        db = target.connect();
                    }
                    acked.lock().unwrap().insert(key);
                }
            })
        })
        .collect();
    let workers: Vec<_> = (0..WORKERS)
        .map(|w| {
            let (target, acked, reconnects, done) =
                (target.clone(), Arc::clone(&acked_completions), Arc::clone(&reconnects), Arc::clone(&done));
            thread::spawn(move || {
                let mut db = target.connect();
                let worker = format!("failover-worker-{w}");
                while !done.load(Ordering::Relaxed) {
                    let jobs: Vec<(i64, String)> = match db.query(
                        "SELECT id, lease_token::text FROM jobs.claim($1, 'ledger', max_jobs => 5, lease => '3 seconds')",
                        &[&worker],
                    ) {
                        Ok(rows) => rows.iter().map(|r| (r.get(0), r.get(1))).collect(),
                        Err(_) => {
                            reconnects.fetch_add(1, Ordering::Relaxed);
                            db = target.connect();
                            continue;
                        }
                    };
                    if jobs.is_empty() {
                        thread::sleep(Duration::from_millis(20));
                    }
                    // Jobs in hand are finished with their tokens, across a
                    // reconnect, until the lease is gone (55000).
                    for (id, token) in jobs {
                        loop {
                            match db.execute("SELECT jobs.complete($1, $2::text::uuid)", &[&id, &token]) {
                                Ok(_) => {
                                    acked.lock().unwrap().insert(id);
                                    break;
                                }
                                Err(e) if e.code() == Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE) => break,
                                Err(_) => {
                                    reconnects.fetch_add(1, Ordering::Relaxed);
                                    db = target.connect();
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();

    // Failover once work is under way on the primary.
    let mut watch = primary.connect("postgres");
    wait_for(PATIENCE, || {
        (count(&mut watch, "SELECT count(*) FROM jobs.job WHERE queue = 'ledger' AND state = 'completed'") >= 200
            && count(&mut watch, "SELECT count(*) FROM jobs.job WHERE queue = 'beat'") >= 2)
            .then_some(())
    })
    .expect("work under way on the primary");
    drop(watch);
    // Claimed on the primary just before it dies, by a worker that never
    // comes back: only the new primary can recover it.
    let abandoned_lease: f64 = admin
        .query_one(
            "SELECT extract(epoch FROM lease_until)::float8 FROM jobs.claim('gone', 'gone', lease => '5 seconds')",
            &[],
        )
        .unwrap()
        .get(0);
    drop(admin);
    let no_worker_on_standby =
        count(&mut replica, "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'jobs worker'");
    assert_eq!(no_worker_on_standby, 0, "no jobs worker runs on the standby");
    drop(replica);
    let standby_log = standby.log();

    primary.pg_ctl(&["stop", "-m", "immediate"]);
    let promoted = Instant::now();
    standby.pg_ctl(&["promote"]);
    *target.0.lock().unwrap() = standby.dsn("postgres");
    let worker_after = wait_for(PATIENCE, || standby.worker_pid().map(|_| promoted.elapsed()))
        .expect("the worker starts on the promoted standby");

    for p in producers {
        p.join().expect("producer panicked");
    }
    let mut db = standby.connect("postgres");
    let expected = (PRODUCERS * JOBS_PER_PRODUCER) as i64;
    wait_for(PATIENCE * 2, || {
        (count(&mut db, "SELECT count(*) FROM jobs.job WHERE queue = 'ledger' AND state = 'completed'") == expected)
            .then_some(())
    })
    .expect("every job completed on the new primary");
    done.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("worker panicked");
    }
    wait_for_state(&mut db, abandoned, "queued", "the lease held through the old primary is recovered");
    assert!(expired_at(&mut db, abandoned) >= abandoned_lease, "recovered before its lease ended");
    let beats_after = count(
        &mut db,
        "SELECT count(*) FROM jobs.job WHERE queue = 'beat' AND created_at > pg_postmaster_start_time()",
    );
    wait_for(PATIENCE, || {
        (count(
            &mut db,
            "SELECT count(*) FROM jobs.job WHERE queue = 'beat' AND created_at > pg_postmaster_start_time()",
        ) > beats_after)
            .then_some(())
    })
    .expect("the schedule fires on the new primary");

    // Nothing acknowledged is lost, nothing is done twice.
    let acked_enqueues: Vec<String> = acked_enqueues.lock().unwrap().iter().cloned().collect();
    let acked_completions: Vec<i64> = acked_completions.lock().unwrap().iter().copied().collect();
    let row = db
        .query_one(
            "SELECT (SELECT count(*) FROM jobs.job WHERE idempotency_key = ANY($1)),
                    (SELECT count(*) FROM jobs.job WHERE id = ANY($2) AND state = 'completed'),
                    (SELECT count(*) FROM jobs.job WHERE queue = 'ledger'),
                    (SELECT count(DISTINCT idempotency_key) FROM jobs.job WHERE queue = 'ledger'),
                    (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j ON j.id = r.job_id
                      WHERE j.queue = 'ledger' AND r.outcome = 'completed'),
                    (SELECT count(*) - count(DISTINCT scheduled_for) FROM jobs.job WHERE queue = 'beat'),
                    (SELECT count(*) FROM jobs.job WHERE queue = 'beat')",
            &[&acked_enqueues, &acked_completions],
        )
        .unwrap();
    let (enqueues_kept, completions_kept, jobs, keys, completed_runs, fired_twice, beats): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4), row.get(5), row.get(6));
    println!(
        "failover: worker on the new primary {worker_after:?} after promotion; {} acknowledged enqueues, {} \
         acknowledged completions, all on the new primary; {jobs} jobs, {completed_runs} completed attempts; \
         schedule fired {beats} times, {fired_twice} twice; {} reconnects",
        acked_enqueues.len(),
        acked_completions.len(),
        reconnects.load(Ordering::Relaxed)
    );
    assert_eq!(enqueues_kept, acked_enqueues.len() as i64, "an acknowledged enqueue was lost");
    assert_eq!(enqueues_kept, expected, "every producer's enqueue was acknowledged in the end");
    assert_eq!(completions_kept, acked_completions.len() as i64, "an acknowledged completion was lost");
    assert_eq!((jobs, keys), (expected, expected), "one job per idempotency key");
    assert_eq!(completed_runs, expected, "one completed attempt per job");
    assert_eq!(fired_twice, 0, "no schedule occurrence fired twice");
    assert!(reconnects.load(Ordering::Relaxed) >= 1, "the clients reconnected to the new primary");

    // The standby's log while it was one: nothing of the extension.
    let troubles: Vec<&str> = standby_log
        .lines()
        .filter(|l| ["ERROR:", "WARNING:", "FATAL:", "PANIC:"].iter().any(|s| l.contains(s)))
        .filter(|l| !l.contains("read-only transaction"))
        .collect();
    assert!(troubles.is_empty(), "the standby's log: {troubles:#?}");
    assert!(!standby_log.contains("jobs worker"), "a jobs worker ran on the standby");
}
