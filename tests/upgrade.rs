//! The upgrade path: a database created at each earlier release, holding jobs
//! and schedules, is updated with `ALTER EXTENSION jobs UPDATE`; its data
//! must survive untouched and its schema must be exactly that of a fresh
//! install of the current version (pg_dump of both, compared).
//!
//! Releases covered: 0.1.0 → current. The install scripts of earlier releases
//! are kept in sql/ (jobs--<version>.sql) and installed by pg_test/cluster.sh.

mod common;

use common::{connect_to, create_database, drop_database, dsn_for};
use std::process::Command;

const EARLIER_RELEASES: &[&str] = &["0.1.0"];
const CURRENT: &str = env!("CARGO_PKG_VERSION");

/// Every row of the extension's tables, as JSON, in a stable order.
fn contents(db: &mut postgres::Client) -> String {
    db.query_one(
        "SELECT jsonb_build_object(
             'job', (SELECT jsonb_agg(to_jsonb(j) ORDER BY j.id) FROM jobs.job j),
             'job_run', (SELECT jsonb_agg(to_jsonb(r) ORDER BY r.job_id, r.id) FROM jobs.job_run r),
             'schedule', (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.id) FROM jobs.schedule s))::text",
        &[],
    )
    .unwrap()
    .get(0)
}

/// The schema of `database` as pg_dump prints it, the extension's own objects
/// included (--binary-upgrade lists them), without what differs between any
/// two databases: object and transaction ids, sequence positions, the random
/// keys of pg_dump's \restrict lines.
fn schema_of(database: &str) -> String {
    let pgbin = common::pg_bin();
    let out = Command::new(format!("{pgbin}/pg_dump"))
        .args(["--schema-only", "--binary-upgrade", "--no-comments", "-d", &dsn_for(database)])
        .output()
        .expect("run pg_dump");
    assert!(out.status.success(), "pg_dump {database}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|line| {
            !(line.contains("binary_upgrade_set_next")
                || line.contains("relfrozenxid")
                || (line.starts_with("WHERE oid = '") && line.ends_with("';"))
                || line.starts_with("-- For binary upgrade")
                // sequence positions are data; \restrict keys are random
                || line.starts_with("SELECT pg_catalog.setval(")
                || line.starts_with("\\restrict ")
                || line.starts_with("\\unrestrict "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn diff(a: &str, b: &str) -> String {
    let dir = std::env::temp_dir();
    let (pa, pb) = (dir.join("jobs-upgraded.sql"), dir.join("jobs-fresh.sql"));
    std::fs::write(&pa, a).unwrap();
    std::fs::write(&pb, b).unwrap();
    let out = Command::new("diff").arg("-u").arg(&pa).arg(&pb).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn upgrade_from(release: &str) {
    let tag = release.replace('.', "_");
    let (old, fresh) = (format!("jobs_upgrade_from_{tag}"), format!("jobs_upgrade_fresh_{tag}"));
    let mut db = connect_to(&create_database(&old, ""));
    db.batch_execute(&format!("CREATE EXTENSION jobs VERSION '{release}'")).unwrap();
    // Jobs in every state, with history, and schedules enabled and paused.
    db.batch_execute(
        "SELECT jobs.enqueue_batch('noop', array_fill('{}'::jsonb, ARRAY[6]), queue => 'u');
         SELECT jobs.enqueue('later', '{\"n\": 1}', queue => 'u', run_at => now() + interval '1 day');
         SELECT jobs.enqueue('charge', '{\"order\": 7}', queue => 'u', idempotency_key => 'charge-7');
         SELECT jobs.complete(id, lease_token, '{\"ok\": true}') FROM jobs.claim('w1', 'u');
         SELECT jobs.fail(id, lease_token, 'boom') FROM jobs.claim('w1', 'u');
         SELECT jobs.fail(id, lease_token, 'fatal', retryable => false) FROM jobs.claim('w1', 'u');
         SELECT jobs.cancel(id) FROM jobs.claim('w1', 'u');
         SELECT count(*) FROM jobs.claim('w2', 'u', lease => '1 hour');
         SELECT jobs.schedule('nightly', '0 3 * * *', 'report', timezone => 'Europe/Paris');
         SELECT jobs.schedule('paused', '*/5 * * * *', 'ping', enabled => false);",
    )
    .unwrap();
    let before = contents(&mut db);

    db.batch_execute("ALTER EXTENSION jobs UPDATE").unwrap();
    let version: String =
        db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'jobs'", &[]).unwrap().get(0);
    assert_eq!(version, CURRENT, "updated from {release}");
    assert_eq!(contents(&mut db), before, "data changed by the update from {release}");

    // The updated database works: the running job completes under its
    // token, the views answer, the invariants hold.
    let done: i64 = db
        .query_one("SELECT count(jobs.complete(id, lease_token)) FROM jobs.job WHERE state = 'running'", &[])
        .unwrap()
        .get(0);
    assert_eq!(done, 1);
    let failures: i64 = db.query_one("SELECT count(*) FROM jobs.recent_failures", &[]).unwrap().get(0);
    assert_eq!(failures, 2, "the two failed jobs");
    let queued: i64 = db.query_one("SELECT queued FROM jobs.queue_stats WHERE queue = 'u'", &[]).unwrap().get(0);
    assert_eq!(queued, 4);
    let refused = db.batch_execute("UPDATE jobs.job SET state = 'running' WHERE state = 'queued'");
    assert_eq!(refused.unwrap_err().code(), Some(&postgres::error::SqlState::CHECK_VIOLATION));
    drop(db);

    connect_to(&create_database(&fresh, "")).batch_execute("CREATE EXTENSION jobs").unwrap();
    let (updated, installed) = (schema_of(&old), schema_of(&fresh));
    assert!(installed.contains("CREATE TABLE jobs.job"), "pg_dump lists the extension's objects");
    if updated != installed {
        panic!("the schema updated from {release} differs from a fresh {CURRENT}:\n{}", diff(&updated, &installed));
    }
    println!("{release} -> {CURRENT}: data kept, schema identical to a fresh install");
    drop_database(&old);
    drop_database(&fresh);
}

#[test]
fn every_earlier_release_updates_to_the_current_schema() {
    for release in EARLIER_RELEASES {
        upgrade_from(release);
    }
}
