//! Black-box tests of SQL jobs on a cluster that preloads the library: the
//! executors run commands as psql runs a script, as the job's role, in the
//! job's database; timeouts, cancel, terminated executors, overlap, every
//! privilege escape a command or a caller could try, and bad input.
//! `pg_test/test.sh` starts the cluster and sets JOBS_TEST_DSN.

mod common;

use common::{
    PATIENCE, change_privileges, connect, connect_to, create_database, drop_database, dsn_for, wait_for, wait_for_state,
};
use postgres::Client;
use postgres::error::SqlState;
use std::time::Instant;

/// A name for this test's objects that no other run uses (an identifier).
fn fresh(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{test}_{}_{}", std::process::id(), nanos % 1_000_000_000)
}

fn enqueue_sql(db: &mut Client, command: &str) -> i64 {
    db.query_one("SELECT id FROM jobs.enqueue_sql($1)", &[&command]).unwrap().get(0)
}

fn last_error(db: &mut Client, id: i64) -> Option<String> {
    db.query_one("SELECT last_error FROM jobs.job WHERE id = $1", &[&id]).unwrap().get(0)
}

fn result(db: &mut Client, id: i64) -> serde_json::Value {
    db.query_one("SELECT result FROM jobs.job WHERE id = $1", &[&id]).unwrap().get(0)
}

fn ints(db: &mut Client, sql: &str) -> Vec<i32> {
    db.query(sql, &[]).unwrap().iter().map(|r| r.get(0)).collect()
}

/// The pid of the executor running job `id` once pg_stat_activity shows it
/// running `statement`.
fn executor_running(db: &mut Client, id: i64, statement: &str) -> i32 {
    let name = format!("jobs sql job {id}");
    wait_for(PATIENCE, || {
        db.query_opt(
            "SELECT pid FROM pg_stat_activity
             WHERE backend_type = 'jobs sql executor' AND application_name = $1 AND query = $2 AND state = 'active'",
            &[&name, &statement],
        )
        .unwrap()
        .map(|r| r.get::<_, i32>(0))
    })
    .unwrap_or_else(|| panic!("job {id} never showed running {statement:?}"))
}

fn wait_until_gone(db: &mut Client, pid: i32) {
    wait_for(PATIENCE, || {
        let n: i64 = db.query_one("SELECT count(*) FROM pg_stat_activity WHERE pid = $1", &[&pid]).unwrap().get(0);
        (n == 0).then_some(())
    })
    .unwrap_or_else(|| panic!("executor {pid} kept running"));
}

fn worker_pid(db: &mut Client) -> i32 {
    db.query_one("SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs worker'", &[]).unwrap().get(0)
}

fn jobs_of_sql_queue(db: &mut Client) -> i64 {
    db.query_one("SELECT count(*) FROM jobs.job WHERE queue = 'sql'", &[]).unwrap().get(0)
}

#[test]
fn statements_run_one_after_another_each_in_its_own_transaction() {
    let mut db = connect();
    let t = fresh("script");
    db.batch_execute(&format!(
        "CREATE TABLE {t} (x int);
         CREATE PROCEDURE {t}_p() LANGUAGE plpgsql AS $$
         BEGIN INSERT INTO {t} VALUES (10); COMMIT; INSERT INTO {t} VALUES (11); END $$;"
    ))
    .unwrap();
    // VACUUM and CREATE INDEX CONCURRENTLY refuse to run inside a
    // transaction block, the procedure commits, BEGIN … COMMIT groups two.
    let command = format!(
        "INSERT INTO {t} VALUES (1); VACUUM ANALYZE {t}; CALL {t}_p();
         BEGIN; INSERT INTO {t} VALUES (2); INSERT INTO {t} VALUES (3); COMMIT;
         CREATE INDEX CONCURRENTLY {t}_x ON {t} (x);
         -- a comment; with a semicolon
         SELECT 'a;b' AS \"semi;colon\", $q$;$q$ FROM {t}"
    );
    let id = enqueue_sql(&mut db, &command);
    wait_for_state(&mut db, id, "completed", "the script never completed");
    assert_eq!(result(&mut db, id), serde_json::json!({"status": "SELECT", "rows": 5}));
    assert_eq!(ints(&mut db, &format!("SELECT x FROM {t} ORDER BY x")), vec![1, 2, 3, 10, 11]);
    let valid: bool = db
        .query_one(&format!("SELECT indisvalid FROM pg_index WHERE indexrelid = '{t}_x'::regclass"), &[])
        .unwrap()
        .get(0);
    assert!(valid, "CREATE INDEX CONCURRENTLY left an invalid index");
    let runs: Vec<String> = db
        .query("SELECT outcome FROM jobs.job_run WHERE job_id = $1", &[&id])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(runs, ["completed"]);
}

#[test]
fn the_first_error_stops_the_command_and_fails_the_job_with_its_sqlstate() {
    let mut db = connect();
    let t = fresh("error");
    db.batch_execute(&format!("CREATE TABLE {t} (x int)")).unwrap();
    let id = enqueue_sql(
        &mut db,
        &format!(
            "INSERT INTO {t} VALUES (1); BEGIN; INSERT INTO {t} VALUES (2); SELECT 1/0; INSERT INTO {t} VALUES (3)"
        ),
    );
    wait_for_state(&mut db, id, "failed", "the failing command never failed its job");
    assert_eq!(last_error(&mut db, id).as_deref(), Some("22012: division by zero"));
    let history: (String, Option<String>) = db
        .query_one("SELECT outcome, error FROM jobs.job_run WHERE job_id = $1", &[&id])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(history, ("failed".to_string(), Some("22012: division by zero".to_string())));
    // The first statement committed; the open transaction rolled back; the
    // statement after the error never ran.
    assert_eq!(ints(&mut db, &format!("SELECT x FROM {t}")), vec![1]);
}

#[test]
fn a_failed_command_is_retried_after_a_backoff_while_attempts_remain() {
    let mut db = connect();
    let id: i64 = db.query_one("SELECT id FROM jobs.enqueue_sql('SELECT 1/0', max_attempts => 2)", &[]).unwrap().get(0);
    wait_for_state(&mut db, id, "failed", "the job never failed for good");
    let rows = db
        .query(
            "SELECT attempt, error, extract(epoch FROM started_at)::float8, extract(epoch FROM finished_at)::float8
             FROM jobs.job_run WHERE job_id = $1 ORDER BY attempt",
            &[&id],
        )
        .unwrap();
    assert_eq!(rows.len(), 2);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.get::<_, i32>(0), i as i32 + 1);
        assert_eq!(row.get::<_, String>(1), "22012: division by zero");
    }
    // jobs.backoff_base (10 s) less at most half of it as jitter.
    let waited = rows[1].get::<_, f64>(2) - rows[0].get::<_, f64>(3);
    assert!(waited >= 4.9, "the retry came {waited} s after the failure, before any backoff");
}

#[test]
fn a_command_that_outlives_its_timeout_fails_with_57014() {
    let mut db = connect();
    let id: i64 = db
        .query_one("SELECT id FROM jobs.enqueue_sql('SELECT pg_sleep(600)', timeout => '1 second')", &[])
        .unwrap()
        .get(0);
    wait_for_state(&mut db, id, "failed", "the command outlived its timeout");
    assert_eq!(last_error(&mut db, id).as_deref(), Some("57014: canceling statement due to statement timeout"));
    let timeout: f64 =
        db.query_one("SELECT (payload->>'timeout')::float8 FROM jobs.job WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(timeout, 1.0);
}

#[test]
fn cancel_stops_a_running_command_and_rolls_back_its_transaction() {
    let mut db = connect();
    let t = fresh("cancel");
    db.batch_execute(&format!("CREATE TABLE {t} (x int)")).unwrap();
    let id = enqueue_sql(
        &mut db,
        &format!("INSERT INTO {t} VALUES (1); BEGIN; INSERT INTO {t} VALUES (2); SELECT pg_sleep(600)"),
    );
    let pid = executor_running(&mut db, id, "SELECT pg_sleep(600)");
    let asked = Instant::now();
    let state: String = db.query_one("SELECT state::text FROM jobs.cancel($1)", &[&id]).unwrap().get(0);
    assert_eq!(state, "canceled");
    wait_until_gone(&mut db, pid);
    println!("cancel: the executor stopped {} ms after jobs.cancel", asked.elapsed().as_millis());
    assert_eq!(ints(&mut db, &format!("SELECT x FROM {t}")), vec![1]);
    let row = db.query_one("SELECT state::text, result FROM jobs.job WHERE id = $1", &[&id]).unwrap();
    assert_eq!(row.get::<_, String>(0), "canceled");
    assert_eq!(row.get::<_, Option<serde_json::Value>>(1), None);
    let outcome: String = db.query_one("SELECT outcome FROM jobs.job_run WHERE job_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(outcome, "canceled");
}

#[test]
fn a_terminated_executor_fails_its_attempt_and_the_worker_goes_on() {
    let mut db = connect();
    let worker = worker_pid(&mut db);
    let id: i64 =
        db.query_one("SELECT id FROM jobs.enqueue_sql('SELECT pg_sleep(600)', max_attempts => 3)", &[]).unwrap().get(0);
    let pid = executor_running(&mut db, id, "SELECT pg_sleep(600)");
    let terminated: bool = db.query_one("SELECT pg_terminate_backend($1)", &[&pid]).unwrap().get(0);
    assert!(terminated);
    wait_until_gone(&mut db, pid);
    // The attempt ends with the reason at once, not when the lease runs out.
    let (state, error) = wait_for(PATIENCE, || {
        let row = db.query_one("SELECT state::text, last_error FROM jobs.job WHERE id = $1", &[&id]).unwrap();
        let state: String = row.get(0);
        (state != "running").then(|| (state, row.get::<_, Option<String>>(1)))
    })
    .expect("the job stayed running after its executor was terminated");
    assert_eq!(state, "queued", "attempts remain: the job waits for its retry");
    let error = error.unwrap();
    assert!(error.starts_with("57P01: "), "{error}");
    assert_eq!(worker_pid(&mut db), worker, "the jobs worker itself must keep running");
    db.query_one("SELECT jobs.cancel($1)", &[&id]).unwrap();

    // Executors come back: the next SQL job runs.
    let next = enqueue_sql(&mut db, "SELECT 1");
    wait_for_state(&mut db, next, "completed", "no executor ran the next job");
    assert_eq!(result(&mut db, next), serde_json::json!({"status": "SELECT", "rows": 1}));
}

#[test]
fn commands_run_in_the_database_they_name() {
    let mut db = connect();
    let name = fresh("elsewhere");
    let other_dsn = create_database(&name, "");
    let id: i64 = db
        .query_one(
            "SELECT id FROM jobs.enqueue_sql(
                 'CREATE TABLE here AS SELECT current_database()::text AS db', database => $1)",
            &[&name],
        )
        .unwrap()
        .get(0);
    wait_for_state(&mut db, id, "completed", "the command never ran in the other database");
    let mut other = connect_to(&other_dsn);
    let ran_in: String = other.query_one("SELECT db FROM here", &[]).unwrap().get(0);
    assert_eq!(ran_in, name);
    drop(other);
    drop_database(&name);

    let before = jobs_of_sql_queue(&mut db);
    let err = db.query_one("SELECT jobs.enqueue_sql('SELECT 1', database => 'no_such_database')", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{err}");
    assert_eq!(jobs_of_sql_queue(&mut db), before);
}

#[test]
fn sql_jobs_are_refused_where_no_worker_would_run_them() {
    let mut db = connect();
    let name = fresh("unserved");
    let mut other = connect_to(&create_database(&name, ""));
    other.batch_execute("SET client_min_messages = error; CREATE EXTENSION jobs").unwrap();
    for call in ["SELECT jobs.enqueue_sql('SELECT 1')", "SELECT jobs.schedule_sql('s', '* * * * *', 'SELECT 1')"] {
        let err = other.query_one(call, &[]).unwrap_err();
        let db_err = err.as_db_error().unwrap();
        assert_eq!(db_err.code(), &SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE, "{call}: {err}");
        assert!(db_err.hint().unwrap().contains("jobs.database_name"), "{call}: {:?}", db_err.hint());
    }
    let created: i64 = other
        .query_one("SELECT (SELECT count(*) FROM jobs.job) + (SELECT count(*) FROM jobs.schedule)", &[])
        .unwrap()
        .get(0);
    assert_eq!(created, 0);
    drop(other);
    drop_database(&name);
    let _ = &mut db;
}

/// Roles for the privilege tests: `producer` may call enqueue_sql and
/// schedule_sql, `worker` claim, complete and fail; `member` is a role the
/// producer is a member of, `stranger` one it is not; `nologin` cannot log in.
struct Roles {
    producer: String,
    worker: String,
    member: String,
    stranger: String,
    nologin: String,
    table: String,
}

impl Roles {
    fn create() -> Roles {
        let p = fresh("r");
        let roles = Roles {
            producer: format!("{p}_producer"),
            worker: format!("{p}_worker"),
            member: format!("{p}_member"),
            stranger: format!("{p}_stranger"),
            nologin: format!("{p}_nologin"),
            table: format!("{p}_seen"),
        };
        let Roles { producer, worker, member, stranger, nologin, table } = &roles;
        change_privileges(&format!(
            "CREATE ROLE {producer} LOGIN; CREATE ROLE {worker} LOGIN; CREATE ROLE {member} LOGIN;
             CREATE ROLE {stranger} LOGIN; CREATE ROLE {nologin} NOLOGIN;
             GRANT {member} TO {producer}; GRANT {nologin} TO {producer};
             GRANT USAGE ON SCHEMA jobs TO {producer}, {worker};
             GRANT EXECUTE ON FUNCTION jobs.enqueue_sql, jobs.schedule_sql TO {producer};
             GRANT EXECUTE ON FUNCTION jobs.claim, jobs.complete, jobs.fail TO {worker};
             -- what a command saw of who it ran as
             CREATE TABLE {table} (job text, current_role_name text, session_role_name text);
             GRANT INSERT ON {table} TO {producer}, {member}, {nologin};"
        ));
        roles
    }

    fn login(&self, role: &str) -> Client {
        let dsn: Vec<String> = dsn_for("postgres")
            .split_whitespace()
            .map(|pair| if pair.starts_with("user=") { format!("user={role}") } else { pair.to_string() })
            .collect();
        connect_to(&dsn.join(" "))
    }

    fn drop(self) {
        let Roles { producer, worker, member, stranger, nologin, table } = self;
        change_privileges(&format!(
            "DROP TABLE {table}; DROP OWNED BY {producer}, {worker}, {member}, {stranger}, {nologin};
             DROP ROLE {producer}, {worker}, {member}, {stranger}, {nologin};"
        ));
    }
}

#[test]
fn a_caller_cannot_make_sql_run_as_a_role_it_may_not_become() {
    let mut db = connect();
    let roles = Roles::create();
    let mut producer = roles.login(&roles.producer);
    let before = jobs_of_sql_queue(&mut db);
    for (run_as, why) in [
        ("postgres", "a superuser, for a caller that is not one"),
        (roles.stranger.as_str(), "a role the caller is not a member of"),
        ("no_such_role_at_all", "a role that does not exist"),
    ] {
        for call in [
            "SELECT jobs.enqueue_sql('SELECT 1', run_as => $1)",
            "SELECT jobs.schedule_sql('never', '* * * * *', 'SELECT 1', run_as => $1)",
        ] {
            let err = producer.query_one(call, &[&run_as]).unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "run_as {why}: {err}");
        }
    }
    assert_eq!(jobs_of_sql_queue(&mut db), before, "a refused call created a job");
    let schedules: i64 = db.query_one("SELECT count(*) FROM jobs.schedule WHERE name = 'never'", &[]).unwrap().get(0);
    assert_eq!(schedules, 0);

    // A role it is a member of, and itself (the default), are fine.
    let table = &roles.table;
    let insert = format!("INSERT INTO {table} SELECT 'member', current_user, session_user");
    let id: i64 = producer
        .query_one("SELECT id FROM jobs.enqueue_sql($1, run_as => $2)", &[&insert, &roles.member])
        .unwrap()
        .get(0);
    wait_for_state(&mut db, id, "completed", "the job run as a member role never completed");
    let seen: (String, String) = db
        .query_one(&format!("SELECT current_role_name, session_role_name FROM {table} WHERE job = 'member'"), &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(seen, (roles.member.clone(), roles.member.clone()));

    // Without LOGIN: PostgreSQL 17 and later run the command as the role;
    // earlier majors refuse at once.
    let insert = format!("INSERT INTO {table} SELECT 'nologin', current_user, session_user");
    let major: i32 = db.query_one("SELECT current_setting('server_version_num')::int / 10000", &[]).unwrap().get(0);
    let created = producer.query_one("SELECT id FROM jobs.enqueue_sql($1, run_as => $2)", &[&insert, &roles.nologin]);
    if major >= 17 {
        let id: i64 = created.unwrap().get(0);
        wait_for_state(&mut db, id, "completed", "the job run as a role without LOGIN never completed");
        let seen: String =
            db.query_one(&format!("SELECT current_role_name FROM {table} WHERE job = 'nologin'"), &[]).unwrap().get(0);
        assert_eq!(seen, roles.nologin);
    } else {
        let err = created.unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    }
    drop(producer);
    roles.drop();
}

#[test]
fn a_command_cannot_leave_its_role() {
    let mut db = connect();
    let roles = Roles::create();
    let mut producer = roles.login(&roles.producer);
    let table = &roles.table;
    let escapes = [
        "RESET ROLE",
        "SET ROLE postgres",
        "SET SESSION AUTHORIZATION postgres",
        "SELECT set_config('role', 'postgres', false)",
        "RESET SESSION AUTHORIZATION",
    ];
    let mut ids = Vec::new();
    for (i, escape) in escapes.iter().enumerate() {
        let command = format!("{escape}; INSERT INTO {table} SELECT '{i}', current_user, session_user");
        let id: i64 = producer.query_one("SELECT id FROM jobs.enqueue_sql($1)", &[&command]).unwrap().get(0);
        ids.push(id);
    }
    for (i, id) in ids.iter().enumerate() {
        let done = wait_for(PATIENCE, || {
            let state = common::job_state(&mut db, *id);
            (state == "completed" || state == "failed").then_some(state)
        })
        .unwrap_or_else(|| panic!("{} never finished", escapes[i]));
        if done == "failed" {
            let error = last_error(&mut db, *id).unwrap();
            assert!(error.starts_with("42501: "), "{}: {error}", escapes[i]);
        }
    }
    // Whatever ran after an escape attempt ran as the producer and nobody else.
    let seen: Vec<(String, String)> = db
        .query(&format!("SELECT current_role_name, session_role_name FROM {table}"), &[])
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert!(!seen.is_empty(), "RESET ROLE and RESET SESSION AUTHORIZATION are allowed and change nothing");
    for who in &seen {
        assert_eq!(who, &(roles.producer.clone(), roles.producer.clone()));
    }
    drop(producer);
    roles.drop();
}

#[test]
fn workers_and_producers_cannot_touch_sql_jobs_behind_the_executors() {
    let mut db = connect();
    let roles = Roles::create();
    let mut producer = roles.login(&roles.producer);
    let mut worker = roles.login(&roles.worker);
    let id: i64 = producer
        .query_one("SELECT id FROM jobs.enqueue_sql('SELECT 1', run_at => now() + interval '1 hour')", &[])
        .unwrap()
        .get(0);
    let err = worker.query("SELECT * FROM jobs.claim('w', 'sql')", &[]).unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_PARAMETER_VALUE), "{err}");
    for call in ["SELECT jobs.complete($1, gen_random_uuid())", "SELECT jobs.fail($1, gen_random_uuid(), 'no')"] {
        let err = worker.query_one(call, &[&id]).unwrap_err();
        assert_eq!(err.code(), Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{call}: {err}");
    }
    for role in [&mut producer, &mut worker] {
        for read in ["SELECT payload FROM jobs.job", "SELECT payload FROM jobs.schedule"] {
            let err = role.query(read, &[]).unwrap_err();
            assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{read}: {err}");
        }
    }
    assert_eq!(common::job_state(&mut db, id), "queued");
    db.query_one("SELECT jobs.cancel($1)", &[&id]).unwrap();
    drop(producer);
    drop(worker);
    roles.drop();
}

#[test]
fn run_as_needs_connect_on_the_database() {
    let mut db = connect();
    let roles = Roles::create();
    let name = fresh("closed");
    create_database(&name, "");
    change_privileges(&format!("REVOKE CONNECT ON DATABASE {name} FROM PUBLIC"));
    let mut producer = roles.login(&roles.producer);
    let before = jobs_of_sql_queue(&mut db);
    let err = producer.query_one("SELECT jobs.enqueue_sql('SELECT 1', database => $1)", &[&name]).unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{err}");
    assert_eq!(jobs_of_sql_queue(&mut db), before);
    drop(producer);
    drop_database(&name);
    roles.drop();
}

/// Polls until `probe` on the schedule's row holds.
fn wait_for_schedule(db: &mut Client, name: &str, what: &str, probe: impl Fn(i64, i64) -> bool) -> (i64, i64) {
    wait_for(PATIENCE, || {
        let row = db
            .query_one(
                "SELECT s.skipped_runs,
                        (SELECT count(*) FROM jobs.job j WHERE j.schedule_id = s.id AND j.state IN ('queued', 'running'))
                 FROM jobs.schedule s WHERE s.name = $1",
                &[&name],
            )
            .unwrap();
        let seen = (row.get::<_, i64>(0), row.get::<_, i64>(1));
        probe(seen.0, seen.1).then_some(seen)
    })
    .unwrap_or_else(|| panic!("{what}"))
}

fn stop_schedule(db: &mut Client, name: &str) {
    let id: i64 = db.query_one("SELECT id FROM jobs.schedule WHERE name = $1", &[&name]).unwrap().get(0);
    db.query_one("SELECT jobs.unschedule($1)", &[&name]).unwrap();
    db.execute(
        "SELECT jobs.cancel(j.id) FROM jobs.job j WHERE j.schedule_id = $1 AND j.state IN ('queued', 'running')",
        &[&id],
    )
    .unwrap();
}

#[test]
fn sql_schedules_skip_occurrences_while_their_job_runs_unless_overlap() {
    let mut db = connect();
    let name = fresh("single");
    let row = db
        .query_one("SELECT overlap, payload FROM jobs.schedule_sql($1, '1 second', 'SELECT pg_sleep(600)')", &[&name])
        .unwrap();
    assert!(!row.get::<_, bool>(0), "schedule_sql's overlap defaults to false");
    let payload: serde_json::Value = row.get(1);
    assert_eq!(payload["command"], "SELECT pg_sleep(600)");
    // Never a second job while the first is unfinished; the skips are counted.
    let (skipped, unfinished) =
        wait_for_schedule(&mut db, &name, "no occurrence was skipped", |skipped, _| skipped >= 2);
    assert!(skipped >= 2);
    assert_eq!(unfinished, 1);
    let jobs: i64 = db
        .query_one(
            "SELECT count(*) FROM jobs.job WHERE schedule_id = (SELECT id FROM jobs.schedule WHERE name = $1)",
            &[&name],
        )
        .unwrap()
        .get(0);
    assert_eq!(jobs, 1);
    stop_schedule(&mut db, &name);

    let name = fresh("many");
    db.query_one("SELECT jobs.schedule_sql($1, '1 second', 'SELECT pg_sleep(600)', overlap => true)", &[&name])
        .unwrap();
    wait_for_schedule(&mut db, &name, "overlapping occurrences never ran side by side", |_, unfinished| {
        unfinished >= 2
    });
    stop_schedule(&mut db, &name);
}

#[test]
fn queue_schedules_skip_occurrences_while_their_job_is_unfinished_only_without_overlap() {
    let mut db = connect();
    let name = fresh("q_single");
    let overlap: bool = db
        .query_one("SELECT overlap FROM jobs.schedule($1, '1 second', 'tick', queue => $1, overlap => false)", &[&name])
        .unwrap()
        .get(0);
    assert!(!overlap);
    let (_, unfinished) = wait_for_schedule(&mut db, &name, "no occurrence was skipped", |skipped, _| skipped >= 2);
    assert_eq!(unfinished, 1, "nobody claims the queue: its one job stays queued");
    stop_schedule(&mut db, &name);

    let name = fresh("q_many");
    let overlap: bool = db
        .query_one("SELECT overlap FROM jobs.schedule($1, '1 second', 'tick', queue => $1)", &[&name])
        .unwrap()
        .get(0);
    assert!(overlap, "jobs.schedule's overlap defaults to true");
    let (skipped, _) =
        wait_for_schedule(&mut db, &name, "occurrences were not all enqueued", |_, unfinished| unfinished >= 3);
    assert_eq!(skipped, 0);
    stop_schedule(&mut db, &name);
}

#[test]
fn bad_arguments_are_refused_with_their_sqlstate_and_create_nothing() {
    let mut db = connect();
    let invalid = SqlState::INVALID_PARAMETER_VALUE;
    let cases: &[(&str, &SqlState)] = &[
        ("SELECT jobs.enqueue_sql(NULL)", &invalid),
        ("SELECT jobs.enqueue_sql('')", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', timeout => '0 seconds')", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', timeout => '-1 hour')", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', timeout => '1000 years')", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', max_attempts => 0)", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', max_attempts => NULL)", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', priority => NULL)", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', run_at => 'infinity')", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', idempotency_key => '')", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', idempotency_key => repeat('k', 256))", &invalid),
        ("SELECT jobs.enqueue_sql('SELECT 1', database => 'no_such_database')", &SqlState::INVALID_CATALOG_NAME),
        ("SELECT jobs.enqueue_sql('SELECT 1', run_as => 'no_such_role')", &SqlState::INSUFFICIENT_PRIVILEGE),
        ("SELECT jobs.schedule_sql(NULL, '* * * * *', 'SELECT 1')", &invalid),
        ("SELECT jobs.schedule_sql('', '* * * * *', 'SELECT 1')", &invalid),
        ("SELECT jobs.schedule_sql('bad', NULL, 'SELECT 1')", &invalid),
        ("SELECT jobs.schedule_sql('bad', '61 * * * *', 'SELECT 1')", &invalid),
        ("SELECT jobs.schedule_sql('bad', '0 0 30 2 *', 'SELECT 1')", &invalid),
        ("SELECT jobs.schedule_sql('bad', '* * * * *', 'SELECT 1', timezone => 'Mars/Olympus')", &invalid),
        ("SELECT jobs.schedule_sql('bad', '* * * * *', NULL)", &invalid),
        ("SELECT jobs.schedule_sql('bad', '* * * * *', 'SELECT 1', overlap => NULL)", &invalid),
        ("SELECT jobs.schedule_sql('bad', '* * * * *', 'SELECT 1', enabled => NULL)", &invalid),
        ("SELECT jobs.schedule_sql('bad', '* * * * *', 'SELECT 1', max_attempts => 0)", &invalid),
        ("SELECT jobs.schedule_sql('bad', '* * * * *', 'SELECT 1', timeout => '0 seconds')", &invalid),
        (
            "SELECT jobs.schedule_sql('bad', '* * * * *', 'SELECT 1', database => 'no_such_database')",
            &SqlState::INVALID_CATALOG_NAME,
        ),
        ("SELECT jobs.enqueue('x', queue => 'sql')", &invalid),
        ("SELECT jobs.enqueue_batch('x', ARRAY['{}'::jsonb], queue => 'sql')", &invalid),
        ("SELECT jobs.schedule('bad', '* * * * *', 'x', queue => 'sql')", &invalid),
        ("SELECT jobs.claim('w', 'sql')", &invalid),
    ];
    let count = "SELECT (SELECT count(*) FROM jobs.job WHERE queue = 'sql') + (SELECT count(*) FROM jobs.schedule WHERE name = 'bad')";
    let before: i64 = db.query_one(count, &[]).unwrap().get(0);
    for (call, code) in cases {
        let err = db.query(*call, &[]).unwrap_err();
        assert_eq!(err.code(), Some(*code), "{call}: {err}");
    }
    let after: i64 = db.query_one(count, &[]).unwrap().get(0);
    assert_eq!(after, before, "a refused call created something");
}

#[test]
fn odd_commands_run_or_fail_cleanly() {
    let mut db = connect();
    let worker = worker_pid(&mut db);
    let long = format!("SELECT length('{}')", "x".repeat(200_000));
    let commands = [
        ("-- only a comment", Some(("", 0))),
        (";;;", Some(("", 0))),
        ("/* a ; in a comment */ SELECT 'ü🦀' AS \"名前\"", Some(("SELECT", 1))),
        ("SELECT E'\\u2028\\u0301' || $$;$$", Some(("SELECT", 1))),
        (long.as_str(), Some(("SELECT", 1))),
        ("SELECT 'unterminated", None),
        ("SELEC 1", None),
        ("SELECT 1; SELECT 'a' ||", None),
    ];
    let mut ids = Vec::new();
    for (command, _) in &commands {
        ids.push(enqueue_sql(&mut db, command));
    }
    for ((command, expected), id) in commands.iter().zip(ids) {
        let label = &command[..command.len().min(40)];
        let state = wait_for(PATIENCE, || {
            let state = common::job_state(&mut db, id);
            (state == "completed" || state == "failed").then_some(state)
        })
        .unwrap_or_else(|| panic!("{label} never finished"));
        match expected {
            Some((status, rows)) => {
                assert_eq!(state, "completed", "{label}: {:?}", last_error(&mut db, id));
                assert_eq!(result(&mut db, id), serde_json::json!({"status": status, "rows": rows}), "{label}");
            }
            None => {
                assert_eq!(state, "failed", "{label}");
                let error = last_error(&mut db, id).unwrap();
                assert!(error.starts_with("42601: "), "{label}: {error}");
            }
        }
    }
    assert_eq!(worker_pid(&mut db), worker, "no command disturbed the jobs worker");
}

#[test]
fn a_malformed_payload_fails_its_job_without_running_anything() {
    let mut db = connect();
    let id: i64 = db
        .query_one(
            "SELECT id FROM jobs.enqueue_sql('SELECT 1', run_at => now() + interval '1 hour', max_attempts => 3)",
            &[],
        )
        .unwrap()
        .get(0);
    // Only the extension's owner can do this (the tables are not granted).
    db.execute("UPDATE jobs.job SET payload = '{\"command\": 42}', run_at = now() WHERE id = $1", &[&id]).unwrap();
    wait_for_state(&mut db, id, "failed", "the job with a malformed payload never failed");
    let error = last_error(&mut db, id).unwrap();
    assert!(error.starts_with(&format!("22023: the payload of SQL job {id} is malformed: ")), "{error}");
    let attempts: i32 = db.query_one("SELECT attempts FROM jobs.job WHERE id = $1", &[&id]).unwrap().get(0);
    assert_eq!(attempts, 1, "not retried: the payload will not get better");
}

#[test]
fn the_roles_own_settings_apply_to_its_commands() {
    let mut db = connect();
    let roles = Roles::create();
    let (member, table) = (&roles.member, &roles.table);
    change_privileges(&format!(
        "ALTER ROLE {member} SET search_path = custom_path, public;
         ALTER ROLE {member} SET statement_timeout = '2s';"
    ));
    let mut producer = roles.login(&roles.producer);
    let insert = format!(
        "INSERT INTO public.{table} SELECT 'settings', current_setting('search_path'), current_setting('statement_timeout')"
    );
    let recorded: i64 =
        producer.query_one("SELECT id FROM jobs.enqueue_sql($1, run_as => $2)", &[&insert, member]).unwrap().get(0);
    wait_for_state(&mut db, recorded, "completed", "the settings were never recorded");
    let seen: (String, String) = db
        .query_one(&format!("SELECT current_role_name, session_role_name FROM {table} WHERE job = 'settings'"), &[])
        .map(|r| (r.get(0), r.get(1)))
        .unwrap();
    assert_eq!(seen, ("custom_path, public".to_string(), "2s".to_string()));
    // The role's statement_timeout bounds each statement, well inside the job's own timeout.
    let slow: i64 = producer
        .query_one("SELECT id FROM jobs.enqueue_sql('SELECT pg_sleep(600)', run_as => $1)", &[member])
        .unwrap()
        .get(0);
    wait_for_state(&mut db, slow, "failed", "the role's statement_timeout did not apply");
    assert_eq!(last_error(&mut db, slow).as_deref(), Some("57014: canceling statement due to statement timeout"));
    drop(producer);
    roles.drop();
}
