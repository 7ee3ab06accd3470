//! The example workers of tests/clients/, in Python (psycopg 3) and Node
//! (pg), run as real processes against the test cluster, two of each. What
//! the contract and the workers' own comments promise, each made to happen
//! on purpose rather than hoped for: 1,000 jobs drained exactly once; a job
//! that fails twice and then succeeds; jobs held longer than their lease,
//! waiting in a claimed batch, that do not expire; every worker connection
//! terminated while known jobs are in hand, and those jobs finished with
//! their tokens after the reconnect, in one attempt; a worker killed while
//! holding a job, which is recovered after its lease and run by the other; a
//! running job canceled, which the worker gives up cleanly; a clean exit on
//! SIGTERM. pg_test/test.sh installs the clients' pinned dependencies first.

mod common;

use common::{connect, dsn, fresh_name, wait_for};
use postgres::Client;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const QUICK_JOBS: i64 = 1000;
const LEASE_SECONDS: f64 = 5.0;
const WORKERS: usize = 2;
/// Generous bounds for things that take milliseconds; they only end a test
/// that would otherwise hang.
const PATIENCE: Duration = Duration::from_secs(120);

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

struct Run {
    language: &'static str,
    queue: String,
    files: PathBuf,
    db: Client,
}

impl Run {
    fn one(&mut self, sql: &str, params: &[&(dyn postgres::types::ToSql + Sync)]) -> postgres::Row {
        self.db.query_one(sql, params).unwrap_or_else(|e| panic!("{}: {sql}: {e}", self.language))
    }

    fn count(&mut self, state: &str) -> i64 {
        let queue = self.queue.clone();
        self.one("SELECT count(*) FROM jobs.job WHERE queue = $1 AND state::text = $2", &[&queue, &state]).get(0)
    }

    /// Jobs that run until the test creates their files, enqueued in one
    /// statement: every claim that sees one sees them all.
    fn enqueue_waiting(&mut self, names: &[&str], priority: i32) -> Vec<(i64, PathBuf)> {
        let paths: Vec<PathBuf> = names.iter().map(|name| self.files.join(name)).collect();
        let payloads: Vec<serde_json::Value> =
            paths.iter().map(|path| serde_json::json!({ "path": path.to_str().unwrap() })).collect();
        let queue = self.queue.clone();
        let ids: Vec<i64> = self
            .db
            .query(
                "SELECT id FROM jobs.enqueue_batch('wait_for_file', $1::jsonb[], queue => $2, priority => $3)",
                &[&payloads, &queue, &priority],
            )
            .unwrap_or_else(|e| panic!("{}: enqueue_batch: {e}", self.language))
            .iter()
            .map(|row| row.get(0))
            .collect();
        ids.into_iter().zip(paths).collect()
    }

    fn until(&mut self, what: &str, mut done: impl FnMut(&mut Run) -> bool) {
        let language = self.language;
        wait_for(PATIENCE, || done(self).then_some(())).unwrap_or_else(|| panic!("{language}: {what}"));
    }

    /// (attempts, worker_id, lease_until as epoch seconds, started_at epoch) of a running job.
    fn held(&mut self, id: i64) -> Option<(i32, String, f64, f64)> {
        let row = self.one(
            "SELECT state = 'running', attempts, worker_id, extract(epoch FROM lease_until)::float8,
                    extract(epoch FROM started_at)::float8
             FROM jobs.job WHERE id = $1",
            &[&id],
        );
        let running: bool = row.get(0);
        running.then(|| (row.get(1), row.get(2), row.get(3), row.get(4)))
    }

    fn history(&mut self, id: i64) -> Vec<String> {
        self.one("SELECT coalesce(array_agg(outcome ORDER BY id), '{}') FROM jobs.job_run WHERE job_id = $1", &[&id])
            .get(0)
    }

    fn now(&mut self) -> f64 {
        self.one("SELECT extract(epoch FROM clock_timestamp())::float8", &[]).get(0)
    }
}

/// The worker processes, killed if the test ends before they exit.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for worker in &mut self.0 {
            let _ = worker.kill();
            let _ = worker.wait();
        }
    }
}

fn release(path: &Path) {
    std::fs::write(path, b"").unwrap();
}

fn pid_of(worker_id: &str) -> u32 {
    worker_id.rsplit('-').next().and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("pid in {worker_id}"))
}

fn drain(language: &'static str, application_name: &'static str, start: impl Fn(&str) -> Child) {
    let files = std::env::temp_dir().join(fresh_name(&format!("jobs-clients-{language}")));
    std::fs::create_dir_all(&files).unwrap();
    let mut run = Run { language, queue: fresh_name(language), files, db: connect() };
    let queue = run.queue.clone();
    run.one(
        "SELECT count(*) FROM jobs.enqueue_batch('noop', array_fill('{}'::jsonb, ARRAY[$2::int]), queue => $1)",
        &[&queue, &(QUICK_JOBS as i32)],
    );
    let flaky: i64 = run
        .one(
            "SELECT id FROM jobs.enqueue('flaky', '{\"succeed_on_attempt\": 3}', queue => $1,
                                         priority => -1, max_attempts => 3)",
            &[&queue],
        )
        .get(0);

    let started = Instant::now();
    let mut workers = Workers((0..WORKERS).map(|_| start(&queue)).collect());

    // 1. Work under way: the flaky job done, 200 others too.
    run.until("the flaky job and 200 others were not done", |r| {
        let flaky_done: bool = r.one("SELECT state = 'completed' FROM jobs.job WHERE id = $1", &[&flaky]).get(0);
        flaky_done && r.count("completed") >= 200
    });
    let (done_early, early) = (run.count("completed"), started.elapsed());

    // 2. Three jobs in hand at once, claimed before anything else. Each
    //    worker runs what it holds one after another, so some of these wait
    //    in a claimed batch while another runs.
    let waiting = run.enqueue_waiting(&["held-0", "held-1", "held-2"], -10);
    let ids: Vec<i64> = waiting.iter().map(|(id, _)| *id).collect();
    run.until("the three waiting jobs were not all claimed", |r| ids.iter().all(|&id| r.held(id).is_some()));

    // 3. Every worker connection dropped while those jobs are in hand.
    let row = run.one(
        "SELECT count(*), extract(epoch FROM clock_timestamp())::float8
         FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1) t",
        &[&application_name],
    );
    let (dropped, dropped_at): (i64, f64) = (row.get(0), row.get(1));
    assert_eq!(dropped, WORKERS as i64, "{language}: one connection per worker");

    // 4. The workers reconnected and extended every held job's lease (a
    //    lease that ends later than one granted at the drop was granted
    //    after it), and the jobs were held beyond their first lease; then
    //    they may finish.
    run.until("the leases of the held jobs were not extended after the drop", |r| {
        ids.iter().all(|&id| r.held(id).is_some_and(|h| h.2 > dropped_at + LEASE_SECONDS))
    });
    let last_claimed = ids.iter().map(|&id| run.held(id).unwrap().3).fold(f64::MIN, f64::max);
    run.until("the clock did not pass the first lease", |r| r.now() > last_claimed + LEASE_SECONDS);
    for (_, path) in &waiting {
        release(path);
    }
    run.until("the held jobs were not completed", |r| ids.iter().all(|&id| r.held(id).is_none()));
    for &id in &ids {
        let row = run.one(
            "SELECT state::text, attempts, extract(epoch FROM finished_at - started_at)::float8 FROM jobs.job WHERE id = $1",
            &[&id],
        );
        let (state, attempts, ran): (String, i32, f64) = (row.get(0), row.get(1), row.get(2));
        assert_eq!((state.as_str(), attempts), ("completed", 1), "{language}: held job {id} across the drop");
        assert_eq!(run.history(id), ["completed"], "{language}: held job {id}");
        assert!(ran > LEASE_SECONDS, "{language}: held job {id} was held {ran:.1} s, not beyond its lease");
    }

    // 5. A worker killed while it holds a job: recovered after its lease,
    //    then run by the other worker.
    let (orphan, orphan_file) = run.enqueue_waiting(&["orphan"], -10).remove(0);
    run.until("the orphan job was not claimed", |r| r.held(orphan).is_some());
    let (_, holder, lease_at_kill, _) = run.held(orphan).unwrap();
    let victim = pid_of(&holder);
    let index = workers.0.iter().position(|w| w.id() == victim).unwrap_or_else(|| panic!("{holder} is not ours"));
    let mut killed = workers.0.remove(index);
    killed.kill().unwrap();
    killed.wait().unwrap();
    release(&orphan_file);
    run.until("the orphan job was not recovered and completed", |r| {
        r.one("SELECT state = 'completed' FROM jobs.job WHERE id = $1", &[&orphan]).get(0)
    });
    assert_eq!(run.history(orphan), ["lease_expired", "completed"], "{language}: orphan job");
    let recovered_at: f64 = run
        .one(
            "SELECT extract(epoch FROM finished_at)::float8 FROM jobs.job_run
             WHERE job_id = $1 AND outcome = 'lease_expired'",
            &[&orphan],
        )
        .get(0);
    assert!(recovered_at >= lease_at_kill, "{language}: orphan recovered before its lease ran out");

    // 6. A running job canceled: the worker gives it up and goes on.
    let (canceled, canceled_file) = run.enqueue_waiting(&["canceled"], -10).remove(0);
    run.until("the job to cancel was not claimed", |r| r.held(canceled).is_some());
    run.one("SELECT state FROM jobs.cancel($1)", &[&canceled]);
    release(&canceled_file);

    run.until("not every other job completed", |r| r.count("completed") == QUICK_JOBS + 1 + 3 + 1);
    let drained_in = started.elapsed();

    // SIGTERM: the surviving worker exits 0 and prints its summary.
    let survivor = workers.0.last_mut().unwrap();
    Command::new("kill").args(["-TERM", &survivor.id().to_string()]).status().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = survivor.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "{language}: the worker ignored SIGTERM for 30 s");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{language}: worker exited with {status}");
    let last = BufReader::new(survivor.stdout.take().unwrap()).lines().map_while(Result::ok).last();
    let summary: serde_json::Value = serde_json::from_str(&last.expect("a summary line")).unwrap();
    assert!(summary["reconnects"].as_i64().unwrap() >= 1, "{language}: {summary}");
    assert!(summary["lost_leases"].as_i64().unwrap() >= 1, "{language}: the canceled job was not given up: {summary}");

    // Exactly once: every job but the canceled one completed, one completed
    // attempt each; the canceled one stays canceled.
    let row = run.one(
        "SELECT count(*) FILTER (WHERE j.state = 'completed'),
                count(*) FILTER (WHERE j.state = 'canceled'),
                (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j2 ON j2.id = r.job_id
                  WHERE j2.queue = $1 AND r.outcome = 'completed'),
                (SELECT count(*) FROM jobs.job_run r JOIN jobs.job j2 ON j2.id = r.job_id
                  WHERE j2.queue = $1 AND r.outcome = 'lease_expired')
         FROM jobs.job j WHERE j.queue = $1",
        &[&queue],
    );
    let (done, canceled_jobs, completed_runs, expired_runs): (i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3));
    let total = QUICK_JOBS + 1 + 3 + 1;
    assert_eq!((done, canceled_jobs), (total, 1), "{language}: completed and canceled jobs");
    assert_eq!(completed_runs, total, "{language}: one completed attempt per job");
    assert_eq!(run.history(canceled), ["canceled"], "{language}: the canceled job");

    // The flaky job: failed, failed, completed, with the worker's error text.
    let runs: Vec<(String, Option<String>)> = run
        .db
        .query("SELECT outcome, error FROM jobs.job_run WHERE job_id = $1 ORDER BY attempt, id", &[&flaky])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let outcomes: Vec<&str> = runs.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(outcomes, ["failed", "failed", "completed"], "{language}: flaky job history");
    assert!(runs[0].1.as_deref().unwrap().contains("flaky failure on attempt 1"), "{language}: {:?}", runs[0]);

    std::fs::remove_dir_all(&run.files).ok();
    println!(
        "{language}: {WORKERS} workers completed {done_early} jobs in {:.2} s from their start ({:.0} jobs/s, \
         interpreter start included); everything in {:.1} s; lease_expired attempts {expired_runs} (the killed \
         worker's jobs in hand); survivor {summary}",
        early.as_secs_f64(),
        done_early as f64 / early.as_secs_f64(),
        drained_in.as_secs_f64(),
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
