//! Black-box tests of the background worker on a cluster that preloads the
//! library: schedules, lease recovery, surviving terminations and crashes,
//! a crashed SQL executor, and jobs.tick() in a database the worker does not serve.
//! `pg_test/test.sh` starts the cluster and sets JOBS_TEST_DSN and JOBS_PGDATA.

mod common;

use common::{PATIENCE, connect, dsn, expired_at, fresh_name, job_state, wait_for};
use postgres::Client;
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

fn worker_pid(client: &mut Client) -> Option<i32> {
    client
        .query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs worker'", &[])
        .unwrap()
        .map(|row| row.get(0))
}

fn count_jobs(client: &mut Client, queue: &str) -> i64 {
    client.query_one("SELECT count(*) FROM jobs.job WHERE queue = $1", &[&queue]).unwrap().get(0)
}

/// Firings of the schedule that enqueues into `queue`: (occurrence, lateness
/// in ms), in occurrence order.
fn firings(client: &mut Client, queue: &str) -> Vec<(f64, f64)> {
    client
        .query(
            "SELECT extract(epoch FROM scheduled_for)::float8,
                    (extract(epoch FROM created_at - scheduled_for) * 1000)::float8
             FROM jobs.job WHERE queue = $1 ORDER BY scheduled_for",
            &[&queue],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

#[test]
fn worker_shows_in_pg_stat_activity() {
    let mut client = connect();
    let row = client
        .query_one("SELECT backend_type, datname FROM pg_stat_activity WHERE backend_type LIKE '%jobs%'", &[])
        .expect("exactly one jobs worker");
    assert_eq!(row.get::<_, String>(0), "jobs worker");
    assert_eq!(row.get::<_, String>(1), "postgres");
}

#[test]
fn every_second_schedule_fires_once_per_occurrence_and_obeys_pause_resume_unschedule() {
    let mut client = connect();
    let name = fresh_name("every-second");
    client.execute("SELECT jobs.schedule($1, '* * * * * *', 'beat', queue => $1)", &[&name]).unwrap();
    wait_for(PATIENCE, || (count_jobs(&mut client, &name) >= 5).then_some(())).expect("five firings");

    // How late each firing was depends on the machine: printed, not asserted.
    let fired = firings(&mut client, &name);
    println!("every-second schedule, lateness ms: {:?}", fired.iter().map(|f| f.1.round()).collect::<Vec<_>>());
    assert!(fired.windows(2).all(|w| w[1].0 > w[0].0), "no occurrence fired twice: {fired:?}");
    assert!(fired.iter().all(|f| f.0.fract() == 0.0), "occurrences are whole seconds: {fired:?}");
    assert!(fired.iter().all(|f| f.1 >= 0.0), "none fired before its time: {fired:?}");

    // Once pause_schedule has committed, no firing can follow: the scheduler
    // locks the schedule row and re-checks it.
    client.execute("SELECT jobs.pause_schedule($1)", &[&name]).unwrap();
    let paused_at = count_jobs(&mut client, &name);
    sleep(Duration::from_secs(2));
    assert_eq!(count_jobs(&mut client, &name), paused_at, "a paused schedule does not fire");

    client.execute("SELECT jobs.resume_schedule($1)", &[&name]).unwrap();
    assert!(
        wait_for(PATIENCE, || (count_jobs(&mut client, &name) > paused_at).then_some(())).is_some(),
        "a resumed schedule fires again"
    );

    assert!(client.query_one("SELECT jobs.unschedule($1)", &[&name]).unwrap().get::<_, bool>(0));
    let unscheduled_at = count_jobs(&mut client, &name);
    sleep(Duration::from_secs(2));
    assert_eq!(count_jobs(&mut client, &name), unscheduled_at, "an unscheduled schedule is gone");
    let left: i64 = client.query_one("SELECT count(*) FROM jobs.schedule WHERE name = $1", &[&name]).unwrap().get(0);
    assert_eq!(left, 0);
}

/// Claims the queue's job with `lease`; returns its lease_until (epoch s).
fn claim_with_lease(client: &mut Client, queue: &str, lease: &str) -> f64 {
    client
        .query_one(
            "SELECT extract(epoch FROM lease_until)::float8 FROM jobs.claim('w', $1, lease => $2::text::interval)",
            &[&queue, &lease],
        )
        .unwrap()
        .get(0)
}

#[test]
fn expired_lease_is_requeued_after_it_ends_then_fails_on_its_last_attempt() {
    let mut client = connect();
    let queue = fresh_name("lease");
    let id: i64 =
        client.query_one("SELECT id FROM jobs.enqueue('t', queue => $1, max_attempts => 2)", &[&queue]).unwrap().get(0);
    let lease_until = claim_with_lease(&mut client, &queue, "1 second");
    let started = Instant::now();
    let recovered = wait_for(PATIENCE, || (job_state(&mut client, id) == "queued").then(Instant::now))
        .expect("recovered after the lease's end");
    println!("lease of 1 s recovered after {:?}", recovered - started);
    let outcomes: Vec<String> =
        client.query_one("SELECT array_agg(outcome) FROM jobs.job_run WHERE job_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(outcomes, ["lease_expired"]);
    assert!(expired_at(&mut client, id) >= lease_until, "not recovered before its lease ended");

    claim_with_lease(&mut client, &queue, "1 second");
    assert!(
        wait_for(PATIENCE, || (job_state(&mut client, id) == "failed").then_some(())).is_some(),
        "the last attempt's expiry fails the job"
    );
}

#[test]
fn job_of_a_terminated_client_is_recovered_after_its_lease() {
    let mut admin = connect();
    let queue = fresh_name("terminated-client");
    let id: i64 = admin.query_one("SELECT id FROM jobs.enqueue('t', queue => $1)", &[&queue]).unwrap().get(0);

    let mut doomed = connect();
    let pid: i32 = doomed.query_one("SELECT pg_backend_pid()", &[]).unwrap().get(0);
    let lease_until = claim_with_lease(&mut doomed, &queue, "2 seconds");
    admin.execute("SELECT pg_terminate_backend($1)", &[&pid]).unwrap();
    assert!(doomed.execute("SELECT 1", &[]).is_err(), "the client is gone");

    assert!(
        wait_for(PATIENCE, || (job_state(&mut admin, id) == "queued").then_some(())).is_some(),
        "recovered once the lease ran out"
    );
    assert!(expired_at(&mut admin, id) >= lease_until, "the lease held while it lasted, client or no client");
}

#[test]
fn terminated_worker_comes_back_and_keeps_scheduling() {
    let mut client = connect();
    let first = worker_pid(&mut client).expect("a running worker");
    client.execute("SELECT pg_terminate_backend($1)", &[&first]).unwrap();
    let second = wait_for(PATIENCE, || worker_pid(&mut client).filter(|&pid| pid != first))
        .expect("the postmaster restarts the worker");
    println!("worker {first} terminated, {second} took over");

    let name = fresh_name("after-restart");
    client.execute("SELECT jobs.schedule($1, '* * * * * *', 'beat', queue => $1)", &[&name]).unwrap();
    let fired = wait_for(PATIENCE, || (count_jobs(&mut client, &name) >= 2).then_some(()));
    client.execute("SELECT jobs.unschedule($1)", &[&name]).unwrap();
    assert!(fired.is_some(), "the new worker fires schedules");
}

/// Drops the test's trigger however the test ends.
struct Trigger<'a>(&'a str);

impl Drop for Trigger<'_> {
    fn drop(&mut self) {
        let mut client = connect();
        client
            .batch_execute(&format!(
                "DROP TRIGGER IF EXISTS {0} ON jobs.job; DROP FUNCTION IF EXISTS public.{0}()",
                self.0
            ))
            .unwrap();
    }
}

#[test]
fn a_schedule_that_cannot_enqueue_does_not_stop_the_others() {
    let mut client = connect();
    let (bad, good) = (fresh_name("explodes"), fresh_name("fine"));
    let _trigger = Trigger("jobs_test_refuse");
    client
        .batch_execute(&format!(
            "CREATE FUNCTION public.jobs_test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.queue = '{bad}' THEN RAISE EXCEPTION 'refused by test trigger'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER jobs_test_refuse BEFORE INSERT ON jobs.job
             FOR EACH ROW EXECUTE FUNCTION public.jobs_test_refuse()"
        ))
        .unwrap();
    let first_due: f64 = client
        .query_one(
            "SELECT extract(epoch FROM next_run_at)::float8 FROM jobs.schedule($1, '* * * * * *', 'boom', queue => $1)",
            &[&bad],
        )
        .unwrap()
        .get(0);
    client.execute("SELECT jobs.schedule($1, '* * * * * *', 'fine', queue => $1)", &[&good]).unwrap();
    let good_fired = wait_for(PATIENCE, || (count_jobs(&mut client, &good) >= 3).then_some(()));
    let bad_jobs = count_jobs(&mut client, &bad);
    // Three occurrences of the good schedule have passed, so the bad one's
    // first is behind it: it advanced past it, still enabled.
    let still_advancing: bool = client
        .query_one(
            "SELECT enabled AND next_run_at > to_timestamp($2) FROM jobs.schedule WHERE name = $1",
            &[&bad, &first_due],
        )
        .unwrap()
        .get(0);
    for name in [&bad, &good] {
        client.execute("SELECT jobs.unschedule($1)", &[name]).unwrap();
    }
    assert!(good_fired.is_some(), "the good schedule kept firing");
    assert_eq!(bad_jobs, 0);
    assert!(still_advancing, "the failing schedule moves on instead of blocking");
}

#[test]
fn immediate_restart_loses_no_committed_job_and_schedules_resume() {
    let mut client = connect();
    let queue = fresh_name("crash");
    client
        .execute(
            "SELECT jobs.enqueue_batch('t', array_agg(jsonb_build_object('n', g)), queue => $1)
             FROM generate_series(1, 500) g",
            &[&queue],
        )
        .unwrap();
    let name = fresh_name("crash-schedule");
    client.execute("SELECT jobs.schedule($1, '* * * * * *', 'beat', queue => $1)", &[&name]).unwrap();
    assert!(wait_for(PATIENCE, || (count_jobs(&mut client, &name) > 0).then_some(())).is_some());
    drop(client);

    common::restart_immediately();
    let restarted = Instant::now();

    let mut client =
        wait_for(PATIENCE, || postgres::Client::connect(&dsn(), postgres::NoTls).ok()).expect("the server comes back");
    assert_eq!(count_jobs(&mut client, &queue), 500, "every committed job survived");
    let resumed = wait_for(PATIENCE, || {
        let n: i64 = client
            .query_one(
                "SELECT count(*) FROM jobs.job WHERE queue = $1 AND created_at > now() - make_interval(secs => $2)",
                &[&name, &restarted.elapsed().as_secs_f64()],
            )
            .unwrap()
            .get(0);
        (n > 0).then_some(())
    });
    client.execute("SELECT jobs.unschedule($1)", &[&name]).unwrap();
    assert!(resumed.is_some(), "the schedule fires again after the restart");
}

#[test]
fn a_crashed_executor_leaves_no_sql_job_running() {
    let mut client = connect();
    let id: i64 = client
        .query_one("SELECT id FROM jobs.enqueue_sql('SELECT pg_sleep(600)', max_attempts => 2)", &[])
        .unwrap()
        .get(0);
    let executor: i32 = wait_for(PATIENCE, || {
        client
            .query_opt(
                "SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs sql executor' AND query = 'SELECT pg_sleep(600)'",
                &[],
            )
            .unwrap()
            .map(|r| r.get(0))
    })
    .expect("the executor never ran the command");
    let killed_at: std::time::SystemTime = client.query_one("SELECT now()", &[]).unwrap().get(0);
    drop(client);
    // A backend killed by a signal: the postmaster resets every process,
    // the jobs worker included, and recovers.
    let killed = std::process::Command::new("kill").args(["-KILL", &executor.to_string()]).status().unwrap();
    assert!(killed.success());

    // The new worker ends the attempt at once rather than after the lease.
    // The history row is read, not the job's state: with an attempt left the
    // job is queued only until its backoff passes, then running again. A
    // connection made before the postmaster noticed the crash is terminated
    // with every other process: each poll reconnects after a failure.
    let mut polling: Option<postgres::Client> = None;
    let (outcome, error, finished_at) = wait_for(PATIENCE, || {
        if polling.as_ref().is_none_or(|c| c.is_closed()) {
            polling = postgres::Client::connect(&dsn(), postgres::NoTls).ok();
        }
        let found = polling.as_mut()?.query_opt(
            "SELECT outcome, error, finished_at FROM jobs.job_run WHERE job_id = $1 AND attempt = 1",
            &[&id],
        );
        let row = found.map_err(|_| polling = None).ok()??;
        Some((row.get::<_, String>(0), row.get::<_, Option<String>>(1), row.get::<_, std::time::SystemTime>(2)))
    })
    .expect("the attempt stayed open after its executor crashed");
    let mut client = polling.expect("the connection that read the history row");
    assert_eq!(outcome, "failed", "ended by the restarted worker, not by its lease");
    assert_eq!(error.as_deref(), Some("57P01: the jobs worker restarted while the command ran"));
    let took = finished_at.duration_since(killed_at).unwrap_or_default();
    assert!(took < Duration::from_secs(60), "ended {took:?} after the crash, not after the 60 s lease");
    let state: String = client.query_one("SELECT state::text FROM jobs.job WHERE id = $1", &[&id]).unwrap().get(0);
    assert!(state == "queued" || state == "running", "one attempt remains: {state}");
    client.query_one("SELECT jobs.cancel($1)", &[&id]).unwrap();
}

#[test]
fn tick_serves_a_database_the_worker_does_not() {
    let database = fresh_name("other").replace('-', "_");
    let mut config: postgres::Config = common::create_database(&database, "").parse().unwrap();

    let notices = Arc::new(Mutex::new(Vec::<String>::new()));
    let seen = Arc::clone(&notices);
    config.notice_callback(move |n| {
        seen.lock().unwrap().push(format!("{}: {} HINT: {}", n.severity(), n.message(), n.hint().unwrap_or("")))
    });
    let mut other = config.connect(postgres::NoTls).unwrap();
    other.batch_execute("CREATE EXTENSION jobs").unwrap();
    let warned = notices.lock().unwrap().clone();
    assert!(
        warned.iter().any(|n| n
            .starts_with(&format!("WARNING: the jobs background worker does not serve database \"{database}\""))
            && n.contains("jobs.tick()")),
        "{warned:?}"
    );

    other.execute("SELECT jobs.schedule('s', '* * * * * *', 'beat')", &[]).unwrap();
    let id: i64 = other.query_one("SELECT id FROM jobs.enqueue('t', max_attempts => 5)", &[]).unwrap().get(0);
    other.execute("SELECT jobs.claim('w', lease => '1 second', job_types => ARRAY['t'])", &[]).unwrap();
    sleep(Duration::from_millis(1_500));
    assert_eq!(count_jobs(&mut other, "default"), 1, "no worker serves this database");
    assert_eq!(job_state(&mut other, id), "running");

    let counts: Vec<(String, i64)> =
        other.query("SELECT task, count FROM jobs.tick()", &[]).unwrap().iter().map(|r| (r.get(0), r.get(1))).collect();
    assert!(counts.contains(&("schedules_fired".to_string(), 1)), "{counts:?}");
    assert!(counts.contains(&("leases_recovered".to_string(), 1)), "{counts:?}");
    assert_eq!(job_state(&mut other, id), "queued");
    drop(other);
    common::drop_database(&database);
}

fn tick_pruned(client: &mut Client) -> i64 {
    client.query_one("SELECT count FROM jobs.tick() WHERE task = 'jobs_pruned'", &[]).unwrap().get(0)
}

#[test]
fn a_tick_leaves_pruning_to_a_session_that_holds_the_cursor_without_waiting_for_it() {
    let database = fresh_name("sweep").replace('-', "_");
    let dsn = common::create_database(&database, "");
    let mut ticker = Client::connect(&dsn, postgres::NoTls).unwrap();
    ticker
        .batch_execute(
            "SET client_min_messages = error;
             CREATE EXTENSION jobs;
             SELECT jobs.enqueue('t');
             SELECT jobs.complete(id, lease_token) FROM jobs.claim('w');
             UPDATE jobs.job SET finished_at = now() - interval '8 days';
             -- waiting for the cursor's lock would fail the tick, not hang it
             SET lock_timeout = '5s'",
        )
        .unwrap();

    let mut holder = Client::connect(&dsn, postgres::NoTls).unwrap();
    let mut held = holder.transaction().unwrap();
    held.execute("SELECT FROM jobs.maintenance_cursor WHERE duty = 'prune' FOR UPDATE", &[]).unwrap();
    assert_eq!(tick_pruned(&mut ticker), 0, "the pass left pruning to the cursor's holder");
    held.rollback().unwrap();
    assert_eq!(tick_pruned(&mut ticker), 1, "the next pass pruned the job");
    drop((ticker, holder));
    common::drop_database(&database);
}

/// Restores the server's configuration however the test ends.
struct Setting(&'static str);

impl Drop for Setting {
    fn drop(&mut self) {
        let mut client = connect();
        client.batch_execute(&format!("ALTER SYSTEM RESET {}", self.0)).unwrap();
        client.batch_execute("SELECT pg_reload_conf()").unwrap();
    }
}

#[test]
fn reloaded_retention_prunes_finished_jobs_with_their_history() {
    let mut client = connect();
    let queue = fresh_name("prune");
    let id: i64 = client.query_one("SELECT id FROM jobs.enqueue('t', queue => $1)", &[&queue]).unwrap().get(0);
    let token: String =
        client.query_one("SELECT lease_token::text FROM jobs.claim('w', $1)", &[&queue]).unwrap().get(0);
    client.execute("SELECT jobs.complete($1, $2::text::uuid)", &[&id, &token]).unwrap();
    sleep(Duration::from_millis(1_500));
    assert_eq!(count_jobs(&mut client, &queue), 1, "kept for the default retention of 7 days");

    let _restore = Setting("jobs.retention");
    client.batch_execute("ALTER SYSTEM SET jobs.retention = '1s'").unwrap();
    client.batch_execute("SELECT pg_reload_conf()").unwrap();
    let pruned = wait_for(PATIENCE, || (count_jobs(&mut client, &queue) == 0).then_some(()));
    assert!(pruned.is_some(), "the worker reloaded jobs.retention on SIGHUP and pruned the job");
    let history: i64 = client.query_one("SELECT count(*) FROM jobs.job_run WHERE job_id = $1", &[&id]).unwrap().get(0);
    assert_eq!(history, 0, "its history went with it");
}
