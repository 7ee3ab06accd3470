//! The upgrade path: a database created at each earlier release, holding jobs
//! and schedules, is updated with `ALTER EXTENSION jobs UPDATE`; its data
//! must survive untouched and its schema must be exactly that of a fresh
//! install of the current version (pg_dump of both, compared).
//!
//! Releases covered: 0.1.0 and 0.2.0 → current. The install scripts of earlier releases
//! are kept in sql/ (jobs--<version>.sql) and installed by pg_test/cluster.sh.

mod common;

use common::{connect_to, contents, create_database, drop_database, dsn_for, fill_every_state, same_columns_as};
use std::process::Command;

const EARLIER_RELEASES: &[&str] = &["0.1.0", "0.2.0"];
const CURRENT: &str = env!("CARGO_PKG_VERSION");

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
                // names the dumped tables by oid: config_of compares them
                || line.starts_with("SELECT pg_catalog.binary_upgrade_create_empty_extension(")
                // a column added with a default to a table that had rows
                // keeps the default for the old rows outside them: storage,
                // not schema
                || line.starts_with("SELECT pg_catalog.binary_upgrade_set_missing_value(")
                || *line == "-- set missing value."
                // what the lines above leave behind
                || line.is_empty()
                || line.starts_with("\\restrict ")
                || line.starts_with("\\unrestrict "))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The relations pg_dump keeps the rows of (pg_extension_config_dump), by
/// name, with their filters.
fn config_of(database: &str) -> Vec<(String, String)> {
    connect_to(&dsn_for(database))
        .query(
            "SELECT c.relation::regclass::text, c.condition
             FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(relation, condition)
             WHERE e.extname = 'jobs' ORDER BY 1",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
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
    fill_every_state(&mut db, "1 hour");
    // The earlier schema's invariants still hold with this library (which
    // keeps the function that schema's CHECK calls until the update).
    let refused = db.batch_execute("UPDATE jobs.job SET state = 'running' WHERE state = 'queued'");
    assert_eq!(refused.unwrap_err().code(), Some(&postgres::error::SqlState::CHECK_VIOLATION), "{release}");
    let before = contents(&mut db);

    db.batch_execute("ALTER EXTENSION jobs UPDATE").unwrap();
    let version: String =
        db.query_one("SELECT extversion FROM pg_extension WHERE extname = 'jobs'", &[]).unwrap().get(0);
    assert_eq!(version, CURRENT, "updated from {release}");
    assert_eq!(
        same_columns_as(&before, &contents(&mut db)),
        serde_json::from_str::<serde_json::Value>(&before).unwrap(),
        "data changed by the update from {release}"
    );

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
    // Calls written for the earlier release keep working: jobs.schedule
    // gained a parameter (overlap) and is still one function.
    let overloads: i64 = db
        .query_one(
            "SELECT count(*) FROM pg_proc WHERE pronamespace = 'jobs'::regnamespace AND proname = 'schedule'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(overloads, 1, "updated from {release}");
    let overlap: bool = db
        .query_one(
            "SELECT overlap FROM jobs.schedule('old-call', '@hourly', 't', '{}', 'UTC', 'u', 0, NULL, true)",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(overlap);
    // SQL jobs arrived with the update; this database is not the worker's,
    // so they are refused as they would be in a fresh install here.
    let err = db.query_one("SELECT jobs.enqueue_sql('SELECT 1')", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");
    drop(db);

    connect_to(&create_database(&fresh, "")).batch_execute("CREATE EXTENSION jobs").unwrap();
    let (updated, installed) = (schema_of(&old), schema_of(&fresh));
    assert!(installed.contains("CREATE TABLE jobs.job"), "pg_dump lists the extension's objects");
    if updated != installed {
        panic!("the schema updated from {release} differs from a fresh {CURRENT}:\n{}", diff(&updated, &installed));
    }
    assert_eq!(config_of(&old), config_of(&fresh), "pg_dump keeps the same tables after the update from {release}");
    assert_eq!(config_of(&fresh).len(), 6, "the three tables and their identity sequences are dumped");
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
