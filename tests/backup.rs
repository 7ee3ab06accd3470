//! Backups: a database with jobs in every state, their history and
//! schedules, dumped with PostgreSQL's own tools (pg_dump plain and custom,
//! pg_dumpall, --data-only, --section) and restored into fresh clusters,
//! keeps every row; restored ids continue past the old ones; on a restored
//! database that a background worker serves, the schedules fire once per
//! occurrence and the running jobs are recovered when their leases end.

mod common;

use common::{
    Cluster, PATIENCE, contents, expired_at, fill_every_state, firings_and_repeats, wait_for, wait_for_state,
};
use postgres::Client;

/// The largest id of each table: restored sequences must continue past them.
fn max_ids(db: &mut Client) -> (i64, i64, i64) {
    let row = db
        .query_one(
            "SELECT (SELECT max(id) FROM jobs.job), (SELECT max(id) FROM jobs.job_attempt),
                    (SELECT max(id) FROM jobs.schedule)",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// New rows in each table get ids above `old`.
fn assert_ids_continue(db: &mut Client, old: (i64, i64, i64), how: &str) {
    db.batch_execute(
        "SELECT jobs.enqueue('after-restore', queue => 'new');
         SELECT jobs.fail(id, lease_token, 'after restore', retryable => false) FROM jobs.claim('w', 'new');
         SELECT jobs.schedule('after-restore', '@daily', 'x');",
    )
    .unwrap();
    let new = db
        .query_one(
            "SELECT (SELECT id FROM jobs.job WHERE queue = 'new'),
                    (SELECT r.id FROM jobs.job_attempt r JOIN jobs.job j ON j.id = r.job_id WHERE j.queue = 'new'),
                    (SELECT id FROM jobs.schedule WHERE name = 'after-restore')",
            &[],
        )
        .unwrap();
    let new: (i64, i64, i64) = (new.get(0), new.get(1), new.get(2));
    assert!(new.0 > old.0 && new.1 > old.1 && new.2 > old.2, "{how}: new ids {new:?} do not continue past {old:?}");
}

fn psql_file(cluster: &Cluster, database: &str, file: &str) {
    cluster.run("psql", &["-qX", "-v", "ON_ERROR_STOP=1", "-d", &cluster.dsn(database), "-f", file]);
}

fn create_database(cluster: &Cluster, name: &str) {
    cluster.connect("postgres").batch_execute(&format!("CREATE DATABASE {name}")).unwrap();
}

#[test]
fn dumps_and_restores_keep_every_job_history_and_schedule() {
    let work = std::env::temp_dir().join(common::fresh_name("jobs-backup"));
    std::fs::create_dir_all(&work).unwrap();
    let file = |name: &str| work.join(name).to_str().unwrap().to_string();

    // The data lives in `app`, which the source's worker does not serve, so
    // nothing moves while it is dumped and compared.
    let source = Cluster::start("backup-source", 1, "jobs.database_name = 'postgres'");
    create_database(&source, "app");
    let mut app = source.connect("app");
    app.batch_execute("CREATE EXTENSION jobs").unwrap();
    fill_every_state(&mut app, "2 seconds");
    app.batch_execute("SELECT jobs.schedule('every-second', '* * * * * *', 'beat', queue => 'beat')").unwrap();
    let lease_until: f64 = app
        .query_one("SELECT extract(epoch FROM lease_until)::float8 FROM jobs.job WHERE state = 'running'", &[])
        .unwrap()
        .get(0);
    let before = contents(&mut app);
    let ids = max_ids(&mut app);
    let counts: i64 = app
        .query_one(
            "SELECT (SELECT count(*) FROM jobs.job) * 10000 + (SELECT count(*) FROM jobs.job_run) * 100
                    + (SELECT count(*) FROM jobs.schedule)",
            &[],
        )
        .unwrap()
        .get(0);
    let src = source.dsn("app");
    source.run("pg_dump", &["-Fp", "-f", &file("plain.sql"), "-d", &src]);
    source.run("pg_dump", &["-Fc", "-f", &file("custom.dump"), "-d", &src]);
    source.run("pg_dump", &["--data-only", "-f", &file("data.sql"), "-d", &src]);
    for section in ["pre-data", "data", "post-data"] {
        source.run("pg_dump", &[&format!("--section={section}"), "-f", &file(&format!("{section}.sql")), "-d", &src]);
    }
    source.run("pg_dumpall", &["-f", &file("all.sql"), "-d", &source.dsn("postgres")]);
    let plain = std::fs::read_to_string(file("plain.sql")).unwrap();
    assert!(plain.contains("COPY jobs.job "), "the dump holds the jobs");
    drop(app);
    drop(source);

    // A fresh cluster whose worker serves `app`; the other databases are
    // not served, so their rows stay as restored.
    let target = Cluster::start("backup-target", 2, "jobs.database_name = 'app'");
    let compare = |database: &str, how: &str| {
        let mut db = target.connect(database);
        assert_eq!(contents(&mut db), before, "{how}: rows differ from the source's");
        assert_ids_continue(&mut db, ids, how);
    };
    create_database(&target, "plain");
    psql_file(&target, "plain", &file("plain.sql"));
    compare("plain", "pg_dump plain, psql");

    create_database(&target, "custom");
    target.run("pg_restore", &["--exit-on-error", "-d", &target.dsn("custom"), &file("custom.dump")]);
    compare("custom", "pg_dump custom, pg_restore");

    create_database(&target, "data_only");
    target.connect("data_only").batch_execute("CREATE EXTENSION jobs").unwrap();
    psql_file(&target, "data_only", &file("data.sql"));
    compare("data_only", "CREATE EXTENSION, then pg_dump --data-only");

    create_database(&target, "sections");
    for section in ["pre-data", "data", "post-data"] {
        psql_file(&target, "sections", &file(&format!("{section}.sql")));
    }
    compare("sections", "pg_dump --section pre-data, data, post-data");

    // The served database: the worker takes over what was restored.
    create_database(&target, "app");
    target.run("pg_restore", &["--exit-on-error", "-d", &target.dsn("app"), &file("custom.dump")]);
    let mut app = target.connect("app");
    let running: i64 = app.query_one("SELECT id FROM jobs.job WHERE worker_id = 'w2'", &[]).unwrap().get(0);
    wait_for_state(&mut app, running, "queued", "the restored running job is recovered once its lease ends");
    assert!(expired_at(&mut app, running) >= lease_until, "recovered before its lease ended");
    wait_for(PATIENCE, || (firings_and_repeats(&mut app, "beat").0 >= 3).then_some(()))
        .expect("the restored schedule fires");
    assert_eq!(firings_and_repeats(&mut app, "beat").1, 0, "the restored schedule fires once per occurrence");
    drop(app);
    drop(target);

    // pg_dumpall into a fresh cluster: the roles it creates exist already
    // there (postgres); every other statement must succeed.
    let whole = Cluster::start("backup-dumpall", 3, "jobs.database_name = 'postgres'");
    let out = std::process::Command::new(format!("{}/psql", whole.bin))
        .args(["-qX", "-d", &whole.dsn("postgres"), "-f", &file("all.sql")])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> =
        stderr.lines().filter(|l| l.contains("ERROR:") && !l.contains("role \"postgres\" already exists")).collect();
    assert!(errors.is_empty(), "pg_dumpall's script failed: {errors:?}");
    let mut app = whole.connect("app");
    assert_eq!(contents(&mut app), before, "pg_dumpall: rows differ from the source's");
    assert_ids_continue(&mut app, ids, "pg_dumpall");
    println!(
        "backup: {} jobs, {} attempts, {} schedules kept through pg_dump plain, custom, --data-only, --section and \
         pg_dumpall; the restored running job was recovered and the restored schedule fired once per occurrence",
        counts / 10000,
        counts / 100 % 100,
        counts % 100
    );
    std::fs::remove_dir_all(&work).ok();
}
