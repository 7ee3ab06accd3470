//! Privileges over real logins: PUBLIC gets nothing, a producer role can only
//! enqueue, a worker role can only claim, extend, complete and fail, and
//! neither reaches the tables or hijacks the functions through its
//! search_path.

mod common;

use common::{change_privileges, dsn, fresh_name};
use postgres::error::SqlState;
use postgres::{Client, NoTls};

/// Login roles for one test, dropped however the test ends.
struct Roles(Vec<String>);

impl Roles {
    fn create(names: &[&str]) -> Roles {
        let roles: Vec<String> = names.iter().map(|n| fresh_name(n).replace('-', "_")).collect();
        for role in &roles {
            change_privileges(&format!("CREATE ROLE {role} LOGIN"));
        }
        Roles(roles)
    }

    fn login(&self, i: usize) -> Client {
        let mut config: postgres::Config = dsn().parse().unwrap();
        config.user(&self.0[i]);
        config.connect(NoTls).unwrap()
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        for role in &self.0 {
            change_privileges(&format!("DROP OWNED BY {role} CASCADE; DROP ROLE {role}"));
        }
    }
}

fn denied(client: &mut Client, sql: &str) {
    let err = client.batch_execute(sql).expect_err(sql);
    assert_eq!(err.code(), Some(&SqlState::INSUFFICIENT_PRIVILEGE), "{sql}: {err}");
}

const EVERY_CALL: &[&str] = &[
    "SELECT jobs.enqueue('t')",
    "SELECT jobs.enqueue_batch('t', ARRAY['{}']::jsonb[])",
    "SELECT jobs.enqueue_sql('SELECT 1')",
    "SELECT jobs.schedule_sql('s', '@daily', 'SELECT 1')",
    "SELECT jobs.claim('w')",
    "SELECT jobs.extend_lease(1, gen_random_uuid())",
    "SELECT jobs.complete(1, gen_random_uuid())",
    "SELECT jobs.complete_batch('{}', '{}')",
    "SELECT jobs.fail(1, gen_random_uuid(), 'e')",
    "SELECT jobs.cancel(1)",
    "SELECT jobs.retry_now(1)",
    "SELECT jobs.stats()",
    "SELECT jobs.schedule('s', '@daily', 't')",
    "SELECT jobs.unschedule('s')",
    "SELECT jobs.pause_schedule('s')",
    "SELECT jobs.resume_schedule('s')",
    "SELECT jobs.next_run('@daily')",
    "SELECT jobs.tick()",
    "SELECT FROM jobs.job",
    "SELECT FROM jobs.job_run",
    "SELECT FROM jobs.schedule",
];

#[test]
fn public_can_do_nothing_even_with_usage_on_the_schema() {
    let roles = Roles::create(&["nobody"]);
    let mut nobody = roles.login(0);
    for sql in EVERY_CALL {
        denied(&mut nobody, sql);
    }
    change_privileges(&format!("GRANT USAGE ON SCHEMA jobs TO {}", roles.0[0]));
    for sql in EVERY_CALL {
        denied(&mut nobody, sql);
    }
}

#[test]
fn a_producer_can_only_enqueue_and_a_worker_can_only_work() {
    let roles = Roles::create(&["producer", "worker"]);
    let (producer_role, worker_role) = (&roles.0[0], &roles.0[1]);
    change_privileges(&format!(
        "GRANT USAGE ON SCHEMA jobs TO {producer_role}, {worker_role};
         GRANT EXECUTE ON FUNCTION jobs.enqueue, jobs.enqueue_batch TO {producer_role};
         GRANT EXECUTE ON FUNCTION jobs.claim, jobs.extend_lease, jobs.complete, jobs.complete_batch, jobs.fail
             TO {worker_role};"
    ));
    let queue = fresh_name("grants");
    let (mut producer, mut worker) = (roles.login(0), roles.login(1));

    producer.execute("SELECT jobs.enqueue('t', queue => $1)", &[&queue]).unwrap();
    producer.execute("SELECT jobs.enqueue_batch('t', ARRAY['{}', '{}']::jsonb[], queue => $1)", &[&queue]).unwrap();
    for sql in EVERY_CALL.iter().filter(|sql| !sql.contains("jobs.enqueue(") && !sql.contains("jobs.enqueue_batch")) {
        denied(&mut producer, sql);
    }

    let rows = worker.query("SELECT id, lease_token::text FROM jobs.claim('w', $1, max_jobs => 3)", &[&queue]).unwrap();
    assert_eq!(rows.len(), 3);
    let ids: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    worker.execute("SELECT jobs.extend_lease($1, $2::text::uuid)", &[&ids[0].0, &ids[0].1]).unwrap();
    worker.execute("SELECT jobs.complete($1, $2::text::uuid)", &[&ids[0].0, &ids[0].1]).unwrap();
    worker.execute("SELECT jobs.fail($1, $2::text::uuid, 'no')", &[&ids[1].0, &ids[1].1]).unwrap();
    worker
        .execute("SELECT jobs.complete_batch(ARRAY[$1::bigint], ARRAY[$2::text::uuid])", &[&ids[2].0, &ids[2].1])
        .unwrap();
    let work = ["jobs.claim", "jobs.extend_lease", "jobs.complete", "jobs.fail"];
    for sql in EVERY_CALL.iter().filter(|sql| !work.iter().any(|w| sql.contains(w))) {
        denied(&mut worker, sql);
    }
    // Not behind the functions' back either.
    denied(&mut worker, "UPDATE jobs.job SET state = 'completed'");
    denied(&mut worker, "DELETE FROM jobs.job_run");
    denied(&mut worker, "INSERT INTO jobs.job (queue, job_type, payload, max_attempts) VALUES ('q', 't', '{}', 1)");
    denied(&mut producer, "TRUNCATE jobs.job");
}

#[test]
fn a_roles_search_path_cannot_hijack_the_functions() {
    let roles = Roles::create(&["sneaky"]);
    let role = &roles.0[0];
    change_privileges(&format!(
        "CREATE SCHEMA AUTHORIZATION {role};
         GRANT USAGE ON SCHEMA jobs TO {role};
         GRANT EXECUTE ON FUNCTION jobs.enqueue, jobs.claim, jobs.complete, jobs.complete_batch TO {role};"
    ));
    let mut sneaky = roles.login(0);
    sneaky
        .batch_execute(&format!(
            "CREATE FUNCTION {role}.always(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true';
             CREATE OPERATOR {role}.= (LEFTARG = text, RIGHTARG = text, FUNCTION = {role}.always);
             CREATE FUNCTION {role}.always(bigint, bigint) RETURNS boolean LANGUAGE sql AS 'SELECT true';
             CREATE OPERATOR {role}.= (LEFTARG = bigint, RIGHTARG = bigint, FUNCTION = {role}.always);
             CREATE FUNCTION {role}.always(uuid, uuid) RETURNS boolean LANGUAGE sql AS 'SELECT true';
             CREATE OPERATOR {role}.= (LEFTARG = uuid, RIGHTARG = uuid, FUNCTION = {role}.always);
             CREATE FUNCTION {role}.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT 'infinity'::timestamptz$$;
             CREATE FUNCTION {role}.gen_random_uuid() RETURNS uuid LANGUAGE sql
                 AS $$SELECT '00000000-0000-0000-0000-000000000000'::uuid$$;
             SET search_path = {role}, pg_catalog;"
        ))
        .unwrap();
    let (mine, other) = (fresh_name("mine"), fresh_name("other"));
    sneaky.execute("SELECT jobs.enqueue('t', queue => $1)", &[&other]).unwrap();
    sneaky.execute("SELECT jobs.enqueue('t', queue => $1)", &[&mine]).unwrap();
    let rows = sneaky
        .query(
            "SELECT queue::text OPERATOR(pg_catalog.||) '', lease_token::text, run_at < 'infinity'::timestamptz
             FROM jobs.claim('w', $1, max_jobs => 10)",
            &[&mine],
        )
        .unwrap();
    assert_eq!(rows.len(), 1, "only the job of the queue asked for");
    assert_eq!(rows[0].get::<_, String>(0), mine);
    assert_ne!(rows[0].get::<_, String>(1), "00000000-0000-0000-0000-000000000000");
    assert!(rows[0].get::<_, bool>(2), "run_at came from the real now()");

    // complete keeps its statement's plan for the session: this first call
    // plans it under this search_path, where `=` is true for any ids and
    // tokens.
    let (id, token): (i64, String) = {
        let row = sneaky.query_one("SELECT id, lease_token::text FROM jobs.claim('w', $1)", &[&other]).unwrap();
        (row.get(0), row.get(1))
    };
    let err = sneaky
        .query_one("SELECT (jobs.complete($1, gen_random_uuid())).id", &[&id])
        .expect_err("a token that is not the job's");
    assert_eq!(err.code(), Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");
    let err = sneaky
        .query_one("SELECT (jobs.complete($1, $2::text::uuid)).id", &[&(id + 1_000_000), &token])
        .expect_err("an id that is not the job's");
    assert_eq!(err.code(), Some(&SqlState::NO_DATA_FOUND), "{err}");
    let done = sneaky
        .query_one(
            "SELECT (c).id, (c).state::text, (c).finished_at < 'infinity'::timestamptz
             FROM (SELECT jobs.complete($1, $2::text::uuid) c) s",
            &[&id, &token],
        )
        .unwrap();
    assert_eq!(done.get::<_, i64>(0), id);
    assert_eq!(done.get::<_, String>(1), "completed");
    assert!(done.get::<_, bool>(2), "finished_at came from the real now()");
    // complete_batch, likewise, where `=` and `unnest` of this path would
    // pair every id with every token.
    let pairs: Vec<(i64, String)> = (0..2)
        .map(|_| {
            sneaky.execute("SELECT jobs.enqueue('t', queue => $1)", &[&other]).unwrap();
            let row = sneaky.query_one("SELECT id, lease_token::text FROM jobs.claim('w', $1)", &[&other]).unwrap();
            (row.get(0), row.get(1))
        })
        .collect();
    let ids: Vec<i64> = pairs.iter().map(|p| p.0).collect();
    let tokens: Vec<String> = pairs.iter().map(|p| p.1.clone()).collect();
    let swapped: Vec<String> = vec![tokens[1].clone(), tokens[0].clone()];
    let err = sneaky
        .query("SELECT id FROM jobs.complete_batch($1, $2::text[]::uuid[])", &[&ids, &swapped])
        .expect_err("each token is the other job's");
    assert_eq!(err.code(), Some(&SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE), "{err}");
    let done = sneaky
        .query(
            "SELECT id, state::text, finished_at < 'infinity'::timestamptz
             FROM jobs.complete_batch($1, $2::text[]::uuid[])",
            &[&ids, &tokens],
        )
        .unwrap();
    assert_eq!(done.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(), ids);
    assert!(done.iter().all(|r| r.get::<_, String>(1) == "completed" && r.get::<_, bool>(2)));
}
