//! The benchmark's load generator: runs each workload against `jobs` and
//! against the cheapest plain SQL doing the same state transitions (the
//! floor), and prints one markdown row per measurement.
//!
//!     cargo run --release --features bench --example bench -- DSN
//!
//! pg_test/bench.sh starts the cluster, runs this, and writes the table.
//! BENCH_JOBS (default 100000) jobs are drained per drain run.

use postgres::{Client, NoTls};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const FLOOR_SCHEMA: &str = "
DROP SCHEMA IF EXISTS floor CASCADE;
CREATE SCHEMA floor;
CREATE TABLE floor.job (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue text NOT NULL,
    payload jsonb NOT NULL,
    state text NOT NULL DEFAULT 'queued',
    priority int NOT NULL DEFAULT 0,
    run_at timestamptz NOT NULL DEFAULT now(),
    attempts int NOT NULL DEFAULT 0,
    lease_until timestamptz,
    worker_id text
);
CREATE INDEX ON floor.job (queue, priority, run_at, id) WHERE state = 'queued';
";

#[derive(Clone, Copy, PartialEq)]
enum System {
    Jobs,
    Floor,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Jobs => "jobs",
            System::Floor => "plain SQL",
        }
    }
    fn enqueue_one(self) -> &'static str {
        match self {
            System::Jobs => "SELECT jobs.enqueue('noop', '{}', queue => 'bench')",
            System::Floor => "INSERT INTO floor.job (queue, payload) VALUES ('bench', '{}')",
        }
    }
    fn enqueue_many(self) -> &'static str {
        match self {
            System::Jobs => "SELECT count(*) FROM jobs.enqueue_batch('noop', $1::jsonb[], queue => 'bench')",
            System::Floor => "INSERT INTO floor.job (queue, payload) SELECT 'bench', p FROM unnest($1::jsonb[]) p",
        }
    }
    fn claim(self) -> &'static str {
        match self {
            System::Jobs => "SELECT id, lease_token::text FROM jobs.claim($1, 'bench', max_jobs => $2)",
            System::Floor => {
                "UPDATE floor.job j SET state = 'running', attempts = j.attempts + 1,
                        lease_until = now() + interval '5 minutes', worker_id = $1
                 WHERE j.id = ANY (ARRAY(
                     SELECT id FROM floor.job WHERE state = 'queued' AND queue = 'bench' AND run_at <= now()
                     ORDER BY priority, run_at, id LIMIT $2::int FOR UPDATE SKIP LOCKED))
                 RETURNING j.id, NULL::text"
            }
        }
    }
    fn finish(self) -> &'static str {
        match self {
            System::Jobs => "SELECT 1 FROM jobs.complete($1, $2::text::uuid)",
            System::Floor => {
                "UPDATE floor.job SET state = 'completed', lease_until = NULL
                 WHERE id = $1 AND state = 'running' AND $2::text IS NULL"
            }
        }
    }
    fn finish_many(self) -> &'static str {
        match self {
            System::Jobs => "SELECT count(*) FROM jobs.complete_batch($1, $2::text[]::uuid[])",
            System::Floor => {
                "UPDATE floor.job SET state = 'completed', lease_until = NULL
                 WHERE id = ANY ($1) AND state = 'running' AND cardinality($2::text[]) >= 0"
            }
        }
    }
    fn completed(self) -> &'static str {
        match self {
            System::Jobs => "SELECT count(*) FROM jobs.job WHERE queue = 'bench' AND state = 'completed'",
            System::Floor => "SELECT count(*) FROM floor.job WHERE queue = 'bench' AND state = 'completed'",
        }
    }
}

/// The server's cost of a stretch of work: CPU of the postmaster and all its
/// processes (the reaped ones through the postmaster's children times) and
/// WAL written. Read by a connection whose backend is one of those processes.
struct Cost {
    cpu_ticks: u64,
    wal_lsn: String,
}

/// Clock ticks per second of /proc's times (USER_HZ, 100 on Linux).
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok()?.trim().parse().ok())
        .unwrap_or(100.0)
}

/// utime, stime, cutime, cstime of /proc/<pid>/stat, and the parent pid.
fn proc_times(pid: i32) -> Option<(u64, u64, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let num = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    let ppid: i32 = fields.get(1)?.parse().ok()?;
    Some((num(11)? + num(12)?, num(13)? + num(14)?, ppid))
}

impl Cost {
    fn now(c: &mut Client) -> Cost {
        let row = c.query_one("SELECT pg_backend_pid(), pg_current_wal_lsn()::text", &[]).unwrap();
        let backend: i32 = row.get(0);
        let postmaster = proc_times(backend).expect("the backend's /proc entry").2;
        let (own, reaped, _) = proc_times(postmaster).expect("the postmaster's /proc entry");
        let mut cpu_ticks = own + reaped;
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
            if let Some((times, _, parent)) = proc_times(pid) {
                if parent == postmaster {
                    cpu_ticks += times;
                }
            }
        }
        Cost { cpu_ticks, wal_lsn: row.get(1) }
    }

    /// (server CPU µs, WAL bytes) per job since `self`.
    fn per_job(&self, c: &mut Client, jobs: usize) -> (f64, f64) {
        let end = Cost::now(c);
        let wal: f64 = c
            .query_one(
                "SELECT pg_wal_lsn_diff($1::text::pg_lsn, $2::text::pg_lsn)::float8",
                &[&end.wal_lsn, &self.wal_lsn],
            )
            .unwrap()
            .get(0);
        let cpu_us = (end.cpu_ticks - self.cpu_ticks) as f64 / clock_ticks() * 1e6;
        (cpu_us / jobs as f64, wal / jobs as f64)
    }
}

/// What one drain measured.
#[derive(Clone, Copy)]
struct Drained {
    rate: f64,
    cpu_us: f64,
    wal: f64,
}

/// Runs `once` for `jobs` and for the floor in turn, BENCH_RUNS times
/// (default 3), and gives each system's run of median rate. Alternating
/// keeps a drift of the machine (a checkpoint, the page cache, another
/// process) from falling on one side of a ratio.
fn paired<T: Copy>(mut once: impl FnMut(System) -> T, rate: impl Fn(&T) -> f64) -> (T, T) {
    let runs: usize = std::env::var("BENCH_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(3).max(1);
    let (mut ours, mut floor) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        ours.push(once(System::Jobs));
        floor.push(once(System::Floor));
    }
    let median = |mut all: Vec<T>| {
        all.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        all[runs / 2]
    };
    (median(ours), median(floor))
}

/// Sets jobs.retention for the server, the background worker included.
fn set_retention(dsn: &str, retention: &str) {
    let mut c = connect(dsn);
    c.batch_execute(&format!("ALTER SYSTEM SET jobs.retention = '{retention}'")).unwrap();
    c.batch_execute("SELECT pg_reload_conf()").unwrap();
    thread::sleep(Duration::from_secs(2));
}

fn connect(dsn: &str) -> Client {
    Client::connect(dsn, NoTls).unwrap_or_else(|e| panic!("connect: {e}"))
}

fn reset(dsn: &str) {
    let mut c = connect(dsn);
    c.batch_execute("TRUNCATE jobs.job, jobs.job_attempt; TRUNCATE floor.job").unwrap();
    c.batch_execute("VACUUM ANALYZE jobs.job, jobs.job_attempt, floor.job").unwrap();
    c.batch_execute("CHECKPOINT").unwrap();
}

/// One transaction per job from `conns` connections for `secs` seconds.
fn enqueue_single(dsn: &str, system: System, conns: usize, secs: u64) -> f64 {
    reset(dsn);
    let stop = Arc::new(AtomicBool::new(false));
    let barrier = Arc::new(Barrier::new(conns + 1));
    let handles: Vec<_> = (0..conns)
        .map(|_| {
            let (dsn, stop, barrier) = (dsn.to_string(), Arc::clone(&stop), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut c = connect(&dsn);
                let stmt = c.prepare(system.enqueue_one()).unwrap();
                barrier.wait();
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    c.execute(&stmt, &[]).unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect();
    barrier.wait();
    let started = Instant::now();
    thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let total: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    total as f64 / started.elapsed().as_secs_f64()
}

fn payloads(n: usize) -> Vec<serde_json::Value> {
    (0..n).map(|i| serde_json::json!({ "n": i })).collect()
}

/// Batches of `batch` jobs in one statement from one connection.
fn enqueue_batched(dsn: &str, system: System, batch: usize, secs: u64) -> f64 {
    reset(dsn);
    let mut c = connect(dsn);
    let stmt = c.prepare(system.enqueue_many()).unwrap();
    let batch_payloads = payloads(batch);
    let started = Instant::now();
    let mut total = 0usize;
    while started.elapsed() < Duration::from_secs(secs) {
        c.execute(&stmt, &[&batch_payloads]).unwrap();
        total += batch;
    }
    total as f64 / started.elapsed().as_secs_f64()
}

fn fill(dsn: &str, system: System, jobs: usize) {
    reset(dsn);
    let mut c = connect(dsn);
    let stmt = c.prepare(system.enqueue_many()).unwrap();
    for start in (0..jobs).step_by(1000) {
        c.execute(&stmt, &[&payloads((jobs - start).min(1000))]).unwrap();
    }
    c.batch_execute("VACUUM ANALYZE jobs.job, floor.job").unwrap();
    c.batch_execute("CHECKPOINT").unwrap();
}

/// `conns` workers claim `max_jobs` at a time and finish each job in its own
/// transaction (or, `batched`, all claimed jobs in one statement), until
/// nothing is left. Jobs/s from first claim to last finish, and the server's
/// CPU and WAL per job over the same stretch.
fn drain(dsn: &str, system: System, jobs: usize, conns: usize, max_jobs: i32, batched: bool) -> Drained {
    fill(dsn, system, jobs);
    let mut meter = connect(dsn);
    let barrier = Arc::new(Barrier::new(conns + 1));
    let handles: Vec<_> = (0..conns)
        .map(|w| {
            let (dsn, barrier) = (dsn.to_string(), Arc::clone(&barrier));
            thread::spawn(move || {
                let mut c = connect(&dsn);
                let claim = c.prepare(system.claim()).unwrap();
                let finish = c.prepare(system.finish()).unwrap();
                let finish_many = c.prepare(system.finish_many()).unwrap();
                let worker = format!("bench-{w}");
                barrier.wait();
                loop {
                    let rows = c.query(&claim, &[&worker, &max_jobs]).unwrap();
                    if rows.is_empty() {
                        break;
                    }
                    if batched {
                        let ids: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                        let tokens: Vec<Option<String>> = rows.iter().map(|r| r.get(1)).collect();
                        c.execute(&finish_many, &[&ids, &tokens]).unwrap();
                        continue;
                    }
                    for row in rows {
                        let (id, token): (i64, Option<String>) = (row.get(0), row.get(1));
                        c.execute(&finish, &[&id, &token]).unwrap();
                    }
                }
                // Kept open until the cost is read: an exited backend's CPU
                // reaches its parent's times only once it is reaped.
                c
            })
        })
        .collect();
    let before = Cost::now(&mut meter);
    barrier.wait();
    let started = Instant::now();
    let clients: Vec<Client> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let elapsed = started.elapsed().as_secs_f64();
    let (cpu_us, wal) = before.per_job(&mut meter, jobs);
    drop(clients);
    let done: i64 = meter.query_one(system.completed(), &[]).unwrap().get(0);
    assert_eq!(done as usize, jobs, "{} drain completed every job", system.name());
    Drained { rate: jobs as f64 / elapsed, cpu_us, wal }
}

/// Idle workers listening on `jobs`; a producer enqueues `count` jobs at
/// `rate`/s; latency from enqueue commit to claim. Returns (p50, p99, max) ms.
fn latency(dsn: &str, workers: usize, count: usize, rate: f64) -> (f64, f64, f64) {
    reset(dsn);
    let committed = Arc::new(Mutex::new(HashMap::<i64, Instant>::new()));
    let claimed = Arc::new(Mutex::new(HashMap::<i64, Instant>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(workers + 1));
    let handles: Vec<_> = (0..workers)
        .map(|w| {
            let (dsn, claimed, stop, ready) =
                (dsn.to_string(), Arc::clone(&claimed), Arc::clone(&stop), Arc::clone(&ready));
            thread::spawn(move || {
                let mut c = connect(&dsn);
                c.batch_execute("LISTEN jobs").unwrap();
                let claim = c.prepare(System::Jobs.claim()).unwrap();
                let finish = c.prepare(System::Jobs.finish()).unwrap();
                let worker = format!("latency-{w}");
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    // Drain what is there, then sleep until notified (or 1 s).
                    loop {
                        let rows = c.query(&claim, &[&worker, &10i32]).unwrap();
                        if rows.is_empty() {
                            break;
                        }
                        let at = Instant::now();
                        for row in &rows {
                            claimed.lock().unwrap().insert(row.get(0), at);
                        }
                        for row in rows {
                            let (id, token): (i64, Option<String>) = (row.get(0), row.get(1));
                            c.execute(&finish, &[&id, &token]).unwrap();
                        }
                    }
                    let mut notifications = c.notifications();
                    let mut iter = notifications.timeout_iter(Duration::from_secs(1));
                    let _ = fallible_iterator::FallibleIterator::next(&mut iter);
                }
            })
        })
        .collect();
    ready.wait();
    thread::sleep(Duration::from_millis(500));
    let mut producer = connect(dsn);
    let enqueue = producer.prepare("SELECT id FROM jobs.enqueue('noop', '{}', queue => 'bench')").unwrap();
    let started = Instant::now();
    for i in 0..count {
        let due = started + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            thread::sleep(wait);
        }
        let id: i64 = producer.query_one(&enqueue, &[]).unwrap().get(0);
        committed.lock().unwrap().insert(id, Instant::now());
    }
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().unwrap();
    }
    let (committed, claimed) = (committed.lock().unwrap(), claimed.lock().unwrap());
    let mut ms: Vec<f64> = committed
        .iter()
        .map(|(id, at)| {
            let got = claimed.get(id).expect("every job was claimed");
            // A claim can land before the producer's client saw its commit return.
            got.saturating_duration_since(*at).as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (percentile(&ms, 0.5), percentile(&ms, 0.99), *ms.last().unwrap())
}

/// What a steady load with a held snapshot measured.
struct Held {
    /// Completions per second while the snapshot was held, over the offered rate.
    completed: f64,
    /// Claim p99 (ms) before the hold and during it.
    p99_before: f64,
    p99_held: f64,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// Steady load for `secs`: a producer at `rate` jobs/s, 8 workers claiming
/// 10 and completing each. From 30 % to 70 % of the run a REPEATABLE READ
/// transaction that has read jobs.job sits idle, holding its snapshot (what
/// pg_dump or a long report does). Prints throughput, claim p99 and table
/// sizes per 30 s.
fn held_snapshot(dsn: &str, rate: f64, secs: u64) -> Held {
    reset(dsn);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let started = Instant::now();
    let producer = {
        let (dsn, stop) = (dsn.to_string(), Arc::clone(&stop));
        thread::spawn(move || {
            let mut c = connect(&dsn);
            let stmt = c.prepare(System::Jobs.enqueue_many()).unwrap();
            // Every 10 ms, one enqueue_batch of the jobs due by then: a rate
            // of thousands per second that one connection can keep.
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                thread::sleep(Duration::from_millis(10));
                let due = (started.elapsed().as_secs_f64() * rate) as u64;
                if due > sent {
                    c.execute(&stmt, &[&payloads((due - sent) as usize)]).unwrap();
                    sent = due;
                }
            }
        })
    };
    let workers: Vec<_> = (0..8)
        .map(|w| {
            let (dsn, stop, done) = (dsn.to_string(), Arc::clone(&stop), Arc::clone(&done));
            thread::spawn(move || {
                let mut c = connect(&dsn);
                let claim = c.prepare(System::Jobs.claim()).unwrap();
                let finish = c.prepare(System::Jobs.finish()).unwrap();
                let worker = format!("held-{w}");
                // (seconds into the run, claim duration in ms) of every claim
                let mut claims = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let rows = c.query(&claim, &[&worker, &10i32]).unwrap();
                    claims.push((started.elapsed().as_secs_f64(), at.elapsed().as_secs_f64() * 1000.0));
                    if rows.is_empty() {
                        thread::sleep(Duration::from_millis(5));
                    }
                    for row in rows {
                        let (id, token): (i64, Option<String>) = (row.get(0), row.get(1));
                        c.execute(&finish, &[&id, &token]).unwrap();
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
                claims
            })
        })
        .collect();
    let (hold_from, hold_to) = (secs * 3 / 10, secs * 7 / 10);
    let mut holder: Option<Client> = None;
    let mut monitor = connect(dsn);
    let (mut last, mut during) = (0u64, Vec::new());
    let mut t = 0;
    while t < secs {
        let step = 30.min(secs - t);
        // Open or close the held transaction on time within this window.
        for _ in 0..step {
            thread::sleep(Duration::from_secs(1));
            let now = started.elapsed().as_secs();
            if holder.is_none() && (hold_from..hold_to).contains(&now) {
                let mut c = connect(dsn);
                c.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM jobs.job").unwrap();
                holder = Some(c);
            }
            if now >= hold_to {
                if let Some(mut c) = holder.take() {
                    c.batch_execute("COMMIT").unwrap();
                }
            }
        }
        t += step;
        let total = done.load(Ordering::Relaxed);
        let per_sec = (total - last) as f64 / step as f64;
        last = total;
        let row = monitor
            .query_one(
                "SELECT pg_size_pretty(pg_total_relation_size('jobs.job')),
                        pg_size_pretty(pg_total_relation_size('jobs.job_attempt'))",
                &[],
            )
            .unwrap();
        let (job, run): (String, String) = (row.get(0), row.get(1));
        let held = t > hold_from && t <= hold_to;
        println!("| {t} s | {per_sec:.0} | {job} | {run} |{}", if held { " held |" } else { " |" });
        if held {
            during.push(per_sec);
        }
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    let claims: Vec<(f64, f64)> = workers.into_iter().flat_map(|w| w.join().unwrap()).collect();
    let window = |from: f64, to: f64| {
        let mut ms: Vec<f64> = claims.iter().filter(|(at, _)| (from..to).contains(at)).map(|c| c.1).collect();
        ms.sort_by(f64::total_cmp);
        percentile(&ms, 0.99)
    };
    // Before: after a warm-up of 10 s, up to the hold.
    let mean = during.iter().sum::<f64>() / during.len().max(1) as f64;
    Held {
        completed: mean / rate,
        p99_before: window(10.0, hold_from as f64),
        p99_held: window(hold_from as f64, hold_to as f64),
    }
}

fn main() {
    let dsn = std::env::args().nth(1).expect("usage: bench DSN");
    let jobs: usize = std::env::var("BENCH_JOBS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let secs: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    connect(&dsn).batch_execute(FLOOR_SCHEMA).unwrap();

    // BENCH_ONLY=drain,latency,... runs a part (enqueue, drain, batch,
    // latency, held); all by default.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let part = |name: &str| only.is_empty() || only.split(',').any(|p| p.trim() == name);

    let runs = std::env::var("BENCH_RUNS").unwrap_or_else(|_| "3".into());
    if part("enqueue") {
        println!("Enqueue for {secs} s a run, median of {runs} runs (jobs and plain SQL in turn):");
        println!();
        println!("| workload | jobs jobs/s | plain SQL jobs/s | ratio |");
        println!("|---|---|---|---|");
        let row = |name: &str, (ours, floor): (f64, f64)| {
            println!("| {name} | {ours:.0} | {floor:.0} | {:.0} % |", 100.0 * ours / floor);
        };
        row(
            "enqueue, 1 per transaction, 8 connections",
            paired(|system| enqueue_single(&dsn, system, 8, secs), |&r| r),
        );
        row("enqueue_batch of 1,000, 1 connection", paired(|system| enqueue_batched(&dsn, system, 1000, secs), |&r| r));
        println!();
    }
    // The steady load of the held-snapshot run is half of this drain rate.
    let mut reference_drain = None;
    // Drains count completed jobs at the end: none may be pruned meanwhile.
    set_retention(&dsn, "1d");
    // BENCH_WORKERS=8,32 and BENCH_MAX_JOBS=100 choose the drain runs.
    let list = |var: &str, default: &[i32]| -> Vec<i32> {
        std::env::var(var)
            .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
            .unwrap_or_else(|_| default.to_vec())
    };
    let (worker_counts, claim_sizes) = (list("BENCH_WORKERS", &[8]), list("BENCH_MAX_JOBS", &[1, 10, 100]));
    let mut drains = Vec::new();
    if part("drain") {
        for &conns in &worker_counts {
            for &max_jobs in &claim_sizes {
                let (ours, floor) =
                    paired(|system| drain(&dsn, system, jobs, conns as usize, max_jobs, false), |d| d.rate);
                if (conns, max_jobs) == (8, 10) {
                    reference_drain = Some(ours.rate);
                }
                drains.push((format!("{conns} workers, claim {max_jobs}, complete each"), ours, floor));
            }
        }
    }
    if part("batch") {
        for &max_jobs in &claim_sizes {
            let (ours, floor) = paired(|system| drain(&dsn, system, jobs, 8, max_jobs, true), |d| d.rate);
            drains.push((format!("8 workers, claim {max_jobs}, one complete_batch (floor: one UPDATE)"), ours, floor));
        }
    }
    if !drains.is_empty() {
        println!(
            "Drains of {jobs} jobs, median of {runs} runs, jobs and plain SQL in turn (the run of median rate; server \
             CPU and WAL from the same run):"
        );
        println!();
        println!(
            "| drain | jobs jobs/s | plain SQL jobs/s | ratio | jobs CPU µs/job | plain SQL CPU µs/job | jobs WAL B/job | plain SQL WAL B/job | WAL ratio |"
        );
        println!("|---|---|---|---|---|---|---|---|---|");
        for (name, ours, floor) in &drains {
            println!(
                "| {name} | {:.0} | {:.0} | {:.0} % | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× |",
                ours.rate,
                floor.rate,
                100.0 * ours.rate / floor.rate,
                ours.cpu_us,
                floor.cpu_us,
                ours.wal,
                floor.wal,
                ours.wal / floor.wal
            );
        }
        println!();
    }
    if part("latency") {
        let (p50, p99, max) = latency(&dsn, 4, 1000, 100.0);
        println!(
            "Enqueue-to-claim latency, 4 idle workers on LISTEN jobs, 1,000 jobs at 100/s: \
             p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms"
        );
        println!();
    }
    if part("held") {
        let held_secs: u64 = std::env::var("BENCH_HELD_SECONDS").ok().and_then(|v| v.parse().ok()).unwrap_or(300);
        let given: Option<f64> = std::env::var("BENCH_HELD_RATE").ok().and_then(|v| v.parse().ok());
        let (rate, why) = match (given, reference_drain) {
            (Some(rate), _) => (rate, ""),
            (None, Some(drain)) => ((drain / 2.0).round(), " (half the drain rate of 8 workers, claim 10)"),
            (None, None) => (500.0, ""),
        };
        // Pruning runs during the steady load: without a held snapshot the
        // tables level off.
        set_retention(&dsn, "60s");
        println!(
            "Steady load, {rate:.0} jobs/s offered{why}, 8 workers claiming 10, for {held_secs} s; a REPEATABLE READ \
             transaction that read jobs.job sits idle from 30 % to 70 % of the run:"
        );
        println!();
        println!("| at | completed jobs/s | jobs.job | jobs.job_attempt | |");
        println!("|---|---|---|---|---|");
        let held = held_snapshot(&dsn, rate, held_secs);
        println!();
        println!(
            "During the hold: completions {:.0} % of the offered rate; claim p99 {:.1} ms before the hold, {:.1} ms \
             during it ({:.1}×)",
            held.completed * 100.0,
            held.p99_before,
            held.p99_held,
            held.p99_held / held.p99_before
        );
    }
}
