//! A SQL-level fuzzer over every function of the contract: random NULLs,
//! empty and huge strings, extreme numbers, infinite timestamps, enormous
//! intervals, deep and large jsonb, bad zones and cron expressions. Each call
//! must succeed or raise one of the contract's SQLSTATEs (never XX000), and
//! the server must neither crash nor panic. JOBS_FUZZ_CALLS sets the number
//! of calls (default 3000).

mod common;

use common::{Rng, connect, fresh_name};
use postgres::types::ToSql;
use std::collections::BTreeMap;

/// What the fuzzer has seen of the database, to aim some calls at real rows.
struct Pool {
    queue: String,
    jobs: Vec<(i64, Option<String>)>,
    schedules: Vec<String>,
}

type Arg = Box<dyn ToSql + Sync>;

fn text(rng: &mut Rng, pool: &Pool) -> Option<String> {
    match rng.below(10) {
        0 => None,
        1 => Some(String::new()),
        2 => Some(pool.queue.clone()),
        3 => Some("x".repeat(128)),
        4 => Some("é".repeat(129)),
        5 => Some("x".repeat(rng.below(5_000))),
        6 => Some("'; DROP TABLE jobs.job; --".to_string()),
        7 => Some("\u{1}\u{7f}".to_string()),
        8 => Some("日本語 \"quoted\" \\ back".to_string()),
        _ => Some(format!("t{}", rng.below(5))),
    }
}

fn int(rng: &mut Rng) -> Option<i32> {
    *rng.pick(&[None, Some(0), Some(1), Some(-1), Some(3), Some(i32::MAX), Some(i32::MIN), Some(100)])
}

fn job_id(rng: &mut Rng, pool: &Pool) -> Option<i64> {
    if !pool.jobs.is_empty() && rng.chance(2) {
        return Some(pool.jobs[rng.below(pool.jobs.len())].0);
    }
    *rng.pick(&[None, Some(-1), Some(0), Some(i64::MAX), Some(i64::MIN)])
}

fn token(rng: &mut Rng, pool: &Pool) -> Option<String> {
    if !pool.jobs.is_empty() && rng.chance(2) {
        return pool.jobs[rng.below(pool.jobs.len())].1.clone();
    }
    rng.pick(&[None, Some("00000000-0000-0000-0000-000000000000"), Some("5d6f1f2e-8d1c-4f37-9d6f-0b7e2f1c9a11")])
        .map(str::to_string)
}

fn interval(rng: &mut Rng) -> Option<String> {
    rng.pick(&[
        None,
        Some("0"),
        Some("-1 second"),
        Some("1 second"),
        Some("5 minutes"),
        Some("99 years"),
        Some("100 years 1 second"),
        Some("177999999 years"),
        Some("-177999999 years"),
        Some("1 month -30 days"),
        Some("1 microsecond"),
        Some("2147483647 days"),
        Some("-2147483648 days"),
        Some("2147483647 months"),
    ])
    .map(str::to_string)
}

fn timestamp(rng: &mut Rng) -> Option<String> {
    rng.pick(&[
        None,
        Some("infinity"),
        Some("-infinity"),
        Some("now"),
        Some("2026-03-08 02:30:00 America/New_York"),
        Some("294276-12-31 23:59:59+00"),
        Some("4713-01-01 00:00:00+00 BC"),
        Some("2000-02-29 00:00:00+00"),
    ])
    .map(str::to_string)
}

fn jsonb(rng: &mut Rng) -> Option<String> {
    match rng.below(8) {
        0 => None,
        1 => Some("{}".to_string()),
        2 => Some(format!("{}1{}", "[".repeat(500), "]".repeat(500))),
        3 => Some(format!("[{}]", vec!["1"; 20_000].join(","))),
        4 => Some(format!("{{\"s\": \"{}\"}}", "é".repeat(100_000))),
        5 => Some("null".to_string()),
        6 => Some("\"just a string\"".to_string()),
        _ => Some("{\"n\": 1e300, \"neg\": -0, \"u\": \"\\u0000\"}".replace("\\u0000", "\\u0001")),
    }
}

fn jsonb_array(rng: &mut Rng) -> Option<String> {
    rng.pick(&[None, Some("{}"), Some("{NULL}"), Some("{\"{}\",\"[1]\"}"), Some("{\"{}\",NULL}")]).map(str::to_string)
}

fn text_array(rng: &mut Rng) -> Option<Vec<Option<String>>> {
    rng.pick(&[None, Some(vec![]), Some(vec![Some("t1".to_string()), None]), Some(vec![Some("t0".to_string())])])
        .clone()
}

fn cron(rng: &mut Rng) -> Option<String> {
    rng.pick(&[
        None,
        Some(""),
        Some("* * * * *"),
        Some("*/5 * * * * *"),
        Some("0 0 30 2 *"),
        Some("61 * * * *"),
        Some("@hourly"),
        Some("@never"),
        Some("0 9 * jan-MAR mon-fri"),
        Some("* * * * * * * *"),
        Some("0 0 29 2 *"),
        Some("5#9 * * * *"),
        Some("L W # ? *"),
        Some("0 0 31 4 *"),
    ])
    .map(str::to_string)
}

fn zone(rng: &mut Rng) -> Option<String> {
    rng.pick(&[
        None,
        Some("UTC"),
        Some("america/new_york"),
        Some("Mars/Base"),
        Some(""),
        Some("Australia/Lord_Howe"),
        Some("+05:30"),
        Some("EST5EDT"),
    ])
    .map(str::to_string)
}

fn boolean(rng: &mut Rng) -> Option<bool> {
    *rng.pick(&[None, Some(true), Some(false)])
}

/// One random call: its SQL and arguments.
fn call(rng: &mut Rng, pool: &Pool) -> (&'static str, String, Vec<Arg>) {
    let b = |v: Arg| v;
    match rng.below(15) {
        0 => ("enqueue", "SELECT id, lease_token::text FROM jobs.enqueue($1, $2::text::jsonb, queue => $3, run_at => $4::text::timestamptz, priority => $5, max_attempts => $6, idempotency_key => $7)".into(),
              vec![b(Box::new(text(rng, pool))), b(Box::new(jsonb(rng))), b(Box::new(text(rng, pool))), b(Box::new(timestamp(rng))), b(Box::new(int(rng))), b(Box::new(int(rng))), b(Box::new(text(rng, pool)))]),
        1 => ("enqueue_batch", "SELECT id, lease_token::text FROM jobs.enqueue_batch($1, $2::text::jsonb[], $3, $4::text::timestamptz, $5, $6)".into(),
              vec![b(Box::new(text(rng, pool))), b(Box::new(jsonb_array(rng))), b(Box::new(text(rng, pool))), b(Box::new(timestamp(rng))), b(Box::new(int(rng))), b(Box::new(int(rng)))]),
        2 | 3 => ("claim", "SELECT id, lease_token::text FROM jobs.claim($1, $2, max_jobs => $3, lease => $4::text::interval, job_types => $5)".into(),
              vec![b(Box::new(text(rng, pool))), b(Box::new(if rng.chance(2) { Some(pool.queue.clone()) } else { text(rng, pool) })), b(Box::new(int(rng))), b(Box::new(interval(rng))), b(Box::new(text_array(rng)))]),
        4 => ("extend_lease", "SELECT jobs.extend_lease($1, $2::text::uuid, $3::text::interval)".into(),
              vec![b(Box::new(job_id(rng, pool))), b(Box::new(token(rng, pool))), b(Box::new(interval(rng)))]),
        5 => ("complete", "SELECT (jobs.complete($1, $2::text::uuid, $3::text::jsonb)).id".into(),
              vec![b(Box::new(job_id(rng, pool))), b(Box::new(token(rng, pool))), b(Box::new(jsonb(rng)))]),
        6 => ("fail", "SELECT (jobs.fail($1, $2::text::uuid, $3, retry_in => $4::text::interval, retryable => $5)).id".into(),
              vec![b(Box::new(job_id(rng, pool))), b(Box::new(token(rng, pool))), b(Box::new(text(rng, pool))), b(Box::new(interval(rng))), b(Box::new(boolean(rng)))]),
        7 => ("cancel", "SELECT (jobs.cancel($1)).id".into(), vec![b(Box::new(job_id(rng, pool)))]),
        8 => ("retry_now", "SELECT (jobs.retry_now($1)).id".into(), vec![b(Box::new(job_id(rng, pool)))]),
        9 => ("stats", "SELECT count(*) FROM jobs.stats($1)".into(), vec![b(Box::new(text(rng, pool)))]),
        10 => ("schedule", "SELECT (jobs.schedule($1, $2, $3, $4::text::jsonb, $5, $6, $7, $8, $9)).id".into(),
              vec![b(Box::new(if rng.chance(2) { Some(format!("fuzz-{}", rng.below(4))) } else { text(rng, pool) })), b(Box::new(cron(rng))), b(Box::new(text(rng, pool))), b(Box::new(jsonb(rng))), b(Box::new(zone(rng))), b(Box::new(text(rng, pool))), b(Box::new(int(rng))), b(Box::new(int(rng))), b(Box::new(boolean(rng)))]),
        11 => ("pause/resume/unschedule", format!("SELECT jobs.{}($1) IS NOT NULL", rng.pick(&["pause_schedule", "resume_schedule", "unschedule"])),
              vec![b(Box::new(if !pool.schedules.is_empty() && rng.chance(2) { Some(pool.schedules[0].clone()) } else { text(rng, pool) }))]),
        12 => ("next_run", "SELECT jobs.next_run($1, $2, $3::text::timestamptz)".into(),
              vec![b(Box::new(cron(rng))), b(Box::new(zone(rng))), b(Box::new(timestamp(rng)))]),
        13 if rng.chance(2) => ("tick", "SELECT count(*) FROM jobs.tick()".into(), vec![]),
        13 => {
            let n = rng.below(4);
            let ids: Vec<Option<i64>> = (0..n).map(|_| job_id(rng, pool)).collect();
            let tokens: Vec<Option<String>> = (0..n.max(rng.below(4))).map(|_| token(rng, pool)).collect();
            let (ids, tokens) = if rng.chance(8) { (None, Some(tokens)) } else { (Some(ids), Some(tokens)) };
            ("complete_batch", "SELECT count(*) FROM jobs.complete_batch($1, $2::text[]::uuid[])".into(),
             vec![b(Box::new(ids)), b(Box::new(tokens))])
        }
        _ => ("next_run defaults", "SELECT jobs.next_run($1)".into(), vec![b(Box::new(cron(rng)))]),
    }
}

const CONTRACT: &[&str] = &["22023", "P0002", "55000"];

#[test]
fn every_call_succeeds_or_raises_a_contract_sqlstate() {
    let calls: usize = std::env::var("JOBS_FUZZ_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(3_000);
    let seed: u64 = std::env::var("JOBS_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5EED);
    let mut rng = Rng(seed);
    let trace = std::env::var("JOBS_FUZZ_TRACE").is_ok();
    let mut client = connect();
    let mut pool = Pool { queue: fresh_name("fuzz"), jobs: Vec::new(), schedules: vec!["fuzz-0".to_string()] };
    let mut outcomes: BTreeMap<(&str, String), u32> = BTreeMap::new();
    let mut violations = Vec::new();

    for _ in 0..calls {
        let (function, sql, args) = call(&mut rng, &pool);
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.as_ref()).collect();
        if trace {
            eprintln!(
                "{sql} {:?}",
                params.iter().map(|p| format!("{p:?}").chars().take(80).collect::<String>()).collect::<Vec<_>>()
            );
        }
        match client.query(sql.as_str(), &params) {
            Ok(rows) => {
                *outcomes.entry((function, "ok".into())).or_default() += 1;
                if function == "claim" || function == "enqueue" || function == "enqueue_batch" {
                    for row in rows.iter().take(5) {
                        pool.jobs.push((row.get(0), row.get(1)));
                    }
                    if pool.jobs.len() > 200 {
                        pool.jobs.drain(..100);
                    }
                }
            }
            Err(e) => {
                let code = e.code().map(|c| c.code().to_string()).unwrap_or_else(|| format!("no sqlstate: {e}"));
                if !CONTRACT.contains(&code.as_str()) {
                    let message = e.as_db_error().map_or_else(|| e.to_string(), |d| d.message().to_string());
                    let shown: Vec<String> =
                        params.iter().map(|p| format!("{p:?}").chars().take(60).collect()).collect();
                    violations.push(format!("{function}: {code}: {message}; arguments {shown:?}"));
                }
                *outcomes.entry((function, code)).or_default() += 1;
            }
        }
    }
    let _ = client.execute("SELECT jobs.unschedule(name) FROM jobs.schedule WHERE name LIKE 'fuzz-%'", &[]);
    println!("fuzzed {calls} calls (seed {seed}):");
    for ((function, outcome), n) in &outcomes {
        println!("  {function:<24} {outcome:<6} {n}");
    }
    violations.sort();
    violations.dedup();
    assert!(violations.is_empty(), "errors outside the contract:\n{}", violations.join("\n"));

    // A Rust panic reaches the client as XX000 (checked above); a crash only
    // shows in the server log.
    let pgdata = common::pgdata();
    // Each database writes the log in its own encoding: read it as bytes.
    let log = std::fs::read(format!("{pgdata}/server.log")).expect("the server log");
    let log = String::from_utf8_lossy(&log);
    for sign in ["terminated by signal", "PANIC:"] {
        assert!(!log.contains(sign), "server log shows {sign:?}");
    }
}
