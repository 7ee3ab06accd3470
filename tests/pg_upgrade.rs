//! Major-version upgrades: a cluster of an older major (JOBS_UPGRADE_FROM_BIN)
//! with `jobs` preloaded and data in every table, upgraded with pg_upgrade
//! to the test's major (JOBS_PGBIN): `--check` passes, every row is kept,
//! `ALTER EXTENSION jobs UPDATE` brings an older extension version up, and
//! the background worker serves the upgraded cluster (a schedule fires, an
//! expired lease is recovered). pg_test/test.sh runs it for each older major
//! once every major's tree has `jobs` installed.

mod common;

use common::{
    Cluster, PATIENCE, as_postgres, contents, fill_every_state, firings_and_repeats, major_of, pg_bin, same_columns_as,
    wait_for, wait_for_state,
};

#[test]
fn pg_upgrade_keeps_every_row_and_the_worker_serves_the_upgraded_cluster() {
    let old_bin = std::env::var("JOBS_UPGRADE_FROM_BIN")
        .expect("JOBS_UPGRADE_FROM_BIN must name the bin directory of the major to upgrade from");
    let new_bin = pg_bin();

    // The data lives in `app`, which the old worker does not serve: nothing
    // moves between the comparisons.
    let old = Cluster::start_with(&old_bin, "upgrade-old", 11, "jobs.database_name = 'postgres'");
    let (from, to) = (old.major(), major_of(&new_bin));
    old.connect("postgres").batch_execute("CREATE DATABASE app").unwrap();
    let mut app = old.connect("app");
    // An older version of the extension, brought up after the upgrade.
    app.batch_execute("CREATE EXTENSION jobs VERSION '0.2.0'").unwrap();
    fill_every_state(&mut app, "2 seconds");
    app.batch_execute("SELECT jobs.schedule('every-second', '* * * * * *', 'beat', queue => 'beat')").unwrap();
    let before = contents(&mut app);
    let running: i64 = app.query_one("SELECT id FROM jobs.job WHERE state = 'running'", &[]).unwrap().get(0);
    drop(app);
    old.pg_ctl(&["stop", "-m", "fast"]);

    // The new cluster as pg_upgrade wants it: initdb'd with the same
    // settings (PostgreSQL 18 turns data checksums on by default; the
    // older clusters have them off).
    let checksums: &[&str] = if to >= 18 { &["--no-data-checksums"] } else { &[] };
    let new = Cluster::init(&new_bin, "upgrade-new", 12, "jobs.database_name = 'postgres'", checksums);
    let args = |check: bool| {
        let mut args = vec![
            "-b".to_string(),
            old_bin.clone(),
            "-B".to_string(),
            new_bin.clone(),
            "-d".to_string(),
            old.data.clone(),
            "-D".to_string(),
            new.data.clone(),
            "-p".to_string(),
            old.port.to_string(),
            "-P".to_string(),
            new.port.to_string(),
        ];
        if check {
            args.push("--check".into());
        }
        args
    };
    let upgrade = format!("{new_bin}/pg_upgrade");
    let check = as_postgres(&upgrade, &args(true).iter().map(String::as_str).collect::<Vec<_>>());
    assert!(String::from_utf8_lossy(&check.stdout).contains("Clusters are compatible"), "pg_upgrade --check");
    let library_path = format!("LD_LIBRARY_PATH={new_bin}/../lib");
    let out = std::process::Command::new("sudo")
        .args(["-u", "postgres", "env", &library_path, &upgrade])
        .args(args(false))
        .current_dir("/tmp")
        .output()
        .unwrap();
    if !out.status.success() {
        // pg_upgrade names its logs; they go with the data directory.
        let logs = as_postgres("/bin/sh", &["-c", &format!("tail -n 30 {}/pg_upgrade_output.d/*/log/*.log", new.data)]);
        panic!(
            "pg_upgrade {from} -> {to}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&logs.stdout)
        );
    }

    new.pg_ctl(&["start"]);
    let mut app = new.connect("app");
    assert_eq!(contents(&mut app), before, "pg_upgrade {from} -> {to} kept every row");
    app.batch_execute("ALTER EXTENSION jobs UPDATE").unwrap();
    let version: String =
        app.query_one("SELECT extversion FROM pg_extension WHERE extname = 'jobs'", &[]).unwrap().get(0);
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        same_columns_as(&before, &contents(&mut app)),
        serde_json::from_str::<serde_json::Value>(&before).unwrap(),
        "ALTER EXTENSION jobs UPDATE kept every row (and only added columns)"
    );
    drop(app);

    // Now the worker serves `app`.
    new.append_conf("jobs.database_name = 'app'\n");
    new.pg_ctl(&["restart", "-m", "fast"]);
    let mut app = new.connect("app");
    wait_for_state(&mut app, running, "queued", "the upgraded cluster's worker recovers the expired lease");
    wait_for(PATIENCE, || (firings_and_repeats(&mut app, "beat").0 >= 2).then_some(()))
        .expect("the upgraded cluster's worker fires the schedule");
    assert_eq!(firings_and_repeats(&mut app, "beat").1, 0, "no occurrence fired twice");
    let rows: i64 = app
        .query_one(
            "SELECT (SELECT count(*) FROM jobs.job) + (SELECT count(*) FROM jobs.job_run)
                    + (SELECT count(*) FROM jobs.schedule)",
            &[],
        )
        .unwrap()
        .get(0);
    println!(
        "pg_upgrade {from} -> {to}: --check passed, every row kept (compared as JSON), extension 0.2.0 -> {}, \
         the worker recovered the expired lease and fired the schedule ({rows} rows now)",
        env!("CARGO_PKG_VERSION")
    );
}
