//! The example workers of tests/clients/, in Python (psycopg 3) and Node
//! (pg), run as real processes against the test cluster, two of each: 1,000
//! jobs drained exactly once, a job that fails twice and then succeeds, a job
//! that outlives its lease only because the worker extends it, every worker
//! connection terminated mid-run and survived, and a clean exit on SIGTERM.
//! pg_test/test.sh installs the clients' pinned dependencies first.

mod common;

use common::{connect, dsn, fresh_name, wait_for};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const QUICK_JOBS: i64 = 1000;
const LEASE_SECONDS: f64 = 2.0;
const WORKERS: usize = 2;

/// libpq's environment variables for the test cluster's DSN, which both
/// clients read (PGOPTIONS too: fast retries for the flaky job).
fn pg_env() -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = dsn()
        .split_whitespace()
        .filter_map(|pair| pair.split_once('='))
        .filter_map(|(key, value)| {
            let var = match key {
                "host" => "PGHOST",
                "port" => "PGPORT",
                "user" => "PGUSER",
                "dbname" => "PGDATABASE",
                "password" => "PGPASSWORD",
                _ => return None,
            };
            Some((var.to_string(), value.to_string()))
        })
        .collect();
    env.push(("PGOPTIONS".into(), "-c jobs.backoff_base=200ms".into()));
    env
}

fn spawn(program: &str, args: &[&str], queue: &str) -> Child {
    Command::new(program)
        .args(args)
        .envs(pg_env())
        .env("JOBS_QUEUE", queue)
        .env("JOBS_BATCH", "10")
        .env("JOBS_LEASE_SECONDS", LEASE_SECONDS.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {program}: {e}"))
}

/// Runs the drain with `WORKERS` processes started by `start` whose
/// connections carry `application_name`.
fn drain(language: &str, application_name: &str, start: impl Fn(&str) -> Child) {
    let mut db = connect();
    let queue = fresh_name(language);
    db.execute(
        "SELECT count(*) FROM jobs.enqueue_batch('noop', array_fill('{}'::jsonb, ARRAY[$2::int]), queue => $1)",
        &[&queue, &(QUICK_JOBS as i32)],
    )
    .unwrap();
    let flaky: i64 = db
        .query_one(
            "SELECT id FROM jobs.enqueue('flaky', '{\"succeed_on_attempt\": 3}', queue => $1,
                                         priority => -1, max_attempts => 3)",
            &[&queue],
        )
        .unwrap()
        .get(0);
    // Lowest priority: claimed after the connections were dropped.
    let slow: i64 = db
        .query_one("SELECT id FROM jobs.enqueue('sleep', '{\"seconds\": 5}', queue => $1, priority => 1)", &[&queue])
        .unwrap()
        .get(0);
    let total = QUICK_JOBS + 2;

    let started = Instant::now();
    let mut workers: Vec<Child> = (0..WORKERS).map(|_| start(&queue)).collect();
    let completed = |db: &mut postgres::Client| -> i64 {
        db.query_one("SELECT count(*) FROM jobs.job WHERE queue = $1 AND state = 'completed'", &[&queue])
            .unwrap()
            .get(0)
    };

    // Once the flaky job is done and work is under way, drop every worker
    // connection.
    wait_for(Duration::from_secs(60), || {
        let flaky_done: bool = db
            .query_one("SELECT state = 'completed' FROM jobs.job WHERE id = $1", &[&flaky])
            .unwrap()
            .get(0);
        (flaky_done && completed(&mut db) >= 200).then_some(())
    })
    .unwrap_or_else(|| panic!("{language}: the flaky job and 200 others were not done within 60 s"));
    let (done_before_drop, elapsed_before_drop) = (completed(&mut db), started.elapsed());
    let dropped: i64 = db
        .query_one(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                                   WHERE application_name = $1) t",
            &[&application_name],
        )
        .unwrap()
        .get(0);
    assert_eq!(dropped, WORKERS as i64, "{language}: one connection per worker");

    wait_for(Duration::from_secs(120), || (completed(&mut db) == total).then_some(()))
        .unwrap_or_else(|| panic!("{language}: {} of {total} jobs completed within 120 s", completed(&mut db)));
    let drained_in = started.elapsed();

    // SIGTERM: each worker exits 0 and prints its summary.
    let mut summaries = Vec::new();
    for worker in &mut workers {
        Command::new("kill").args(["-TERM", &worker.id().to_string()]).status().unwrap();
    }
    for mut worker in workers {
        let deadline = Instant::now() + Duration::from_secs(15);
        let status = loop {
            if let Some(status) = worker.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "{language}: a worker ignored SIGTERM for 15 s");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{language}: worker exited with {status}");
        let last = BufReader::new(worker.stdout.take().unwrap()).lines().map_while(Result::ok).last();
        let summary: serde_json::Value = serde_json::from_str(&last.expect("a summary line")).unwrap();
        summaries.push(summary);
    }
    let sum = |key: &str| summaries.iter().map(|s| s[key].as_i64().unwrap()).sum::<i64>();

    // Exactly once: every job completed, one completed attempt each.
    let row = db
        .query_one(
            "SELECT count(*) FILTER (WHERE j.state = 'completed'),
                    (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j2 ON j2.id = r.job_id
                      WHERE j2.queue = $1 AND r.outcome = 'completed'),
                    (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j2 ON j2.id = r.job_id
                      WHERE j2.queue = $1 AND r.outcome = 'lease_expired'),
                    extract(epoch FROM max(j.finished_at) FILTER (WHERE j.job_type = 'noop')
                                     - min(j.started_at) FILTER (WHERE j.job_type = 'noop'))::float8
             FROM jobs.job j WHERE j.queue = $1",
            &[&queue],
        )
        .unwrap();
    let (done, completed_runs, expired_runs, noop_seconds): (i64, i64, i64, f64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    assert_eq!(done, total, "{language}: all jobs completed");
    assert_eq!(completed_runs, total, "{language}: one completed attempt per job");
    // A complete in flight when its connection died may have committed
    // without the worker hearing of it: at most one per worker.
    assert!(
        (total - WORKERS as i64..=total).contains(&sum("completed")),
        "{language}: workers report {} completions of {total}",
        sum("completed")
    );

    // The flaky job: failed, failed, completed, with the worker's error text.
    let runs: Vec<(String, Option<String>)> = db
        .query("SELECT outcome, error FROM jobs.job_run WHERE job_id = $1 ORDER BY attempt, id", &[&flaky])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let outcomes: Vec<&str> = runs.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["failed", "failed", "completed"], "{language}: flaky job history");
    assert!(runs[0].1.as_deref().unwrap().contains("flaky failure on attempt 1"), "{language}: {:?}", runs[0]);
    assert_eq!(sum("failed"), 2, "{language}: two failures reported");

    // The slow job ran 5 s on a 2 s lease in one attempt: extended, never recovered.
    let row = db
        .query_one(
            "SELECT attempts, extract(epoch FROM finished_at - started_at)::float8,
                    (SELECT array_agg(outcome ORDER BY id) FROM jobs.job_run WHERE job_id = $1)
             FROM jobs.job WHERE id = $1",
            &[&slow],
        )
        .unwrap();
    let (attempts, ran_for, outcomes): (i32, f64, Vec<String>) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((attempts, outcomes), (1, vec!["completed".to_string()]), "{language}: slow job");
    assert!(ran_for > 2.0 * LEASE_SECONDS, "{language}: slow job ran {ran_for:.1} s");

    let reconnects: Vec<i64> = summaries.iter().map(|s| s["reconnects"].as_i64().unwrap()).collect();
    assert!(reconnects.iter().all(|&r| r >= 1), "{language}: reconnects {reconnects:?}");

    println!(
        "{language}: {WORKERS} workers completed {done_before_drop} jobs in {:.2} s from their start ({:.0} jobs/s) \
         before their connections were dropped; the {QUICK_JOBS} quick jobs took {noop_seconds:.2} s from first \
         claim to last completion, the {LEASE_SECONDS} s lease recovery of the jobs in hand included; everything in \
         {:.1} s; reconnects {reconnects:?}; lease_expired attempts {expired_runs}; lost leases {}",
        elapsed_before_drop.as_secs_f64(),
        done_before_drop as f64 / elapsed_before_drop.as_secs_f64(),
        drained_in.as_secs_f64(),
        sum("lost_leases"),
    );
}

fn client_dir(language: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(language);
    dir.to_str().unwrap().to_string()
}

#[test]
fn python_worker() {
    let dir = client_dir("python");
    let python = format!("{dir}/.venv/bin/python");
    assert!(Path::new(&python).exists(), "{python} missing: pg_test/test.sh installs the Python client");
    drain("python", "jobs-python-worker", |queue| spawn(&python, &[&format!("{dir}/worker.py")], queue));
}

#[test]
fn node_worker() {
    let dir = client_dir("node");
    assert!(Path::new(&format!("{dir}/node_modules/pg")).exists(), "pg missing: pg_test/test.sh installs it");
    drain("node", "jobs-node-worker", |queue| spawn("node", &[&format!("{dir}/worker.js")], queue));
}
