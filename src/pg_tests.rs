//! In-database tests of the SQL API: every transition and every error of the
//! contract, each in a transaction that `cargo pgrx test` rolls back.

#[pgrx::pg_schema]
mod tests {
    use pgrx::prelude::*;

    fn run(sql: &str) {
        Spi::run(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    fn one<T: FromDatum + IntoDatum>(sql: &str) -> T {
        Spi::get_one::<T>(sql)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .unwrap_or_else(|| panic!("{sql}: returned NULL"))
    }

    fn check(sql: &str) {
        assert!(one::<bool>(sql), "expected true: {sql}");
    }

    /// Runs `sql` in a subtransaction and returns "SQLSTATE: message" of the
    /// error it raised; panics if it raised none.
    fn error_of(sql: &str) -> String {
        // Created once per transaction, by whichever role runs first.
        if one::<bool>("SELECT to_regprocedure('pg_temp.error_of(text)') IS NULL") {
            run("CREATE FUNCTION pg_temp.error_of(statement text) RETURNS text
             LANGUAGE plpgsql AS $$
             BEGIN
                 EXECUTE statement;
                 RETURN NULL;
             EXCEPTION WHEN OTHERS THEN
                 RETURN SQLSTATE || ': ' || SQLERRM;
             END $$");
        }
        Spi::get_one_with_args::<String>("SELECT pg_temp.error_of($1)", &[sql.into()])
            .unwrap()
            .unwrap_or_else(|| panic!("expected an error from: {sql}"))
    }

    fn assert_error(sql: &str, sqlstate: &str, message: &str) {
        let got = error_of(sql);
        assert_eq!(got, format!("{sqlstate}: {message}"), "{sql}");
    }

    /// Enqueues one job in `queue` and claims it; returns (id, lease_token).
    fn claimed(queue: &str, max_attempts: i32) -> (i64, String) {
        run(&format!("SELECT jobs.enqueue('t', queue => '{queue}', max_attempts => {max_attempts})"));
        let id = one::<i64>(&format!("SELECT id FROM jobs.claim('w1', '{queue}')"));
        let token = one::<String>(&format!("SELECT lease_token::text FROM jobs.job WHERE id = {id}"));
        (id, token)
    }

    #[pg_test]
    fn enqueue_uses_contract_defaults() {
        run("SELECT jobs.enqueue('email')");
        check(
            "SELECT state = 'queued' AND queue = 'default' AND payload = '{}' AND priority = 0
                    AND attempts = 0 AND max_attempts = 3 AND run_at <= now()
                    AND lease_token IS NULL AND finished_at IS NULL
             FROM jobs.job WHERE job_type = 'email'",
        );
    }

    #[pg_test]
    fn enqueue_accepts_named_arguments_and_settings() {
        run("SET LOCAL jobs.default_max_attempts = 7");
        let id = one::<i64>(
            "SELECT id FROM jobs.enqueue('email', queue => 'mail', priority => -5,
                                         payload => '{\"to\": \"a@b\"}')",
        );
        check(&format!(
            "SELECT queue = 'mail' AND priority = -5 AND max_attempts = 7 AND payload->>'to' = 'a@b'
             FROM jobs.job WHERE id = {id}"
        ));
    }

    #[pg_test]
    fn enqueue_with_future_run_at_is_not_claimable() {
        run("SELECT jobs.enqueue('later', run_at => now() + interval '1 hour')");
        check("SELECT count(*) = 0 FROM jobs.claim('w1')");
    }

    #[pg_test]
    fn enqueue_with_idempotency_key_returns_existing_job_unchanged() {
        let first = one::<i64>("SELECT id FROM jobs.enqueue('t', '{\"n\": 1}', idempotency_key => 'k1')");
        let second = one::<i64>("SELECT id FROM jobs.enqueue('t', '{\"n\": 2}', idempotency_key => 'k1')");
        assert_eq!(first, second);
        check("SELECT count(*) = 1 AND min(payload->>'n') = '1' FROM jobs.job");
    }

    #[pg_test]
    fn enqueue_round_trips_hostile_text_as_data() {
        let id = one::<i64>(
            "SELECT id FROM jobs.enqueue(E'x''); DROP TABLE jobs.job; --', jsonb_build_object('s', E'\\u00e9\\u2603 '' \" ;'),
                                         queue => E'q''\"; \\u65e5\\u672c', idempotency_key => E'\\\\'';')",
        );
        check(&format!(
            "SELECT job_type = E'x''); DROP TABLE jobs.job; --' AND payload->>'s' = E'\\u00e9\\u2603 '' \" ;'
                    AND queue = E'q''\"; \\u65e5\\u672c' FROM jobs.job WHERE id = {id}"
        ));
    }

    #[pg_test]
    fn enqueue_round_trips_large_payloads_and_long_keys() {
        let id = one::<i64>(
            "SELECT id FROM jobs.enqueue('t', jsonb_build_object('blob', repeat('x', 4000000),
                                                              'deep', (SELECT jsonb_agg(g) FROM generate_series(1, 10000) g)),
                                         idempotency_key => repeat('é', 255))",
        );
        check(&format!(
            "SELECT length(payload->>'blob') = 4000000 AND jsonb_array_length(payload->'deep') = 10000
                    AND idempotency_key = repeat('é', 255)
             FROM jobs.job WHERE id = {id}"
        ));
        check(&format!("SELECT id = {id} FROM jobs.enqueue('t', '{{}}', idempotency_key => repeat('é', 255))"));
    }

    #[pg_test]
    fn enqueue_accepts_names_of_exactly_128_characters() {
        run("SELECT jobs.enqueue(repeat('t', 128), queue => repeat('q', 128))");
        check("SELECT count(*) = 1 FROM jobs.job");
    }

    #[pg_test]
    fn enqueue_rejects_bad_input() {
        assert_error("SELECT jobs.enqueue('')", "22023", "job_type must not be empty");
        assert_error("SELECT jobs.enqueue(NULL)", "22023", "job_type must not be null");
        assert_error("SELECT jobs.enqueue('t', queue => '')", "22023", "queue must not be empty");
        assert_error("SELECT jobs.enqueue('t', queue => NULL)", "22023", "queue must not be null");
        assert_error(
            "SELECT jobs.enqueue('t', queue => repeat('q', 129))",
            "22023",
            &format!("queue \"{}...\" is longer than 128 characters", "q".repeat(64)),
        );
        assert_error(
            "SELECT jobs.enqueue(repeat('é', 129))",
            "22023",
            &format!("job_type \"{}...\" is longer than 128 characters", "é".repeat(64)),
        );
        assert_error("SELECT jobs.enqueue('t', max_attempts => 0)", "22023", "max_attempts must be at least 1, not 0");
        assert_error("SELECT jobs.enqueue('t', payload => NULL)", "22023", "payload must not be null");
        assert_error("SELECT jobs.enqueue('t', priority => NULL)", "22023", "priority must not be null");
        assert_error("SELECT jobs.enqueue('t', idempotency_key => '')", "22023", "idempotency_key must not be empty");
        assert_error(
            "SELECT jobs.enqueue('t', run_at => '-infinity')",
            "22023",
            "run_at must be a finite timestamp, not -infinity",
        );
        assert_error(
            "SELECT jobs.enqueue('t', idempotency_key => repeat('k', 100000))",
            "22023",
            &format!("idempotency_key \"{}...\" is longer than 255 characters", "k".repeat(64)),
        );
        check("SELECT count(*) = 0 FROM jobs.job");
    }

    #[pg_test]
    fn enqueue_batch_inserts_one_job_per_payload_in_order() {
        let ids = one::<Vec<i64>>(
            "SELECT array_agg(id) FROM jobs.enqueue_batch('t', ARRAY['{\"n\":1}', '{\"n\":2}', '{\"n\":3}']::jsonb[],
                                                          queue => 'b', priority => 2)",
        );
        assert_eq!(ids.len(), 3);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids ascend: {ids:?}");
        check(
            "SELECT array_agg(payload->>'n' ORDER BY id) = ARRAY['1','2','3']
                    AND bool_and(queue = 'b' AND priority = 2 AND state = 'queued')
             FROM jobs.job",
        );
        check("SELECT count(*) = 0 FROM jobs.enqueue_batch('t', ARRAY[]::jsonb[])");
    }

    #[pg_test]
    fn enqueue_batch_rejects_bad_input() {
        assert_error(
            "SELECT jobs.enqueue_batch('t', ARRAY['{}', NULL]::jsonb[])",
            "22023",
            "payloads must not contain null (element 2 is null)",
        );
        assert_error("SELECT jobs.enqueue_batch('t', NULL)", "22023", "payloads must not be null");
        assert_error("SELECT jobs.enqueue_batch('', ARRAY['{}']::jsonb[])", "22023", "job_type must not be empty");
        assert_error(
            "SELECT jobs.enqueue_batch('t', ARRAY['{}']::jsonb[], max_attempts => -1)",
            "22023",
            "max_attempts must be at least 1, not -1",
        );
        check("SELECT count(*) = 0 FROM jobs.job");
    }

    #[pg_test]
    fn claim_orders_by_priority_then_run_at_then_id() {
        run("SELECT jobs.enqueue('t', '{\"n\":\"late\"}', run_at => now() - interval '1 minute')");
        run("SELECT jobs.enqueue('t', '{\"n\":\"early\"}', run_at => now() - interval '2 minutes')");
        run("SELECT jobs.enqueue('t', '{\"n\":\"urgent\"}', priority => -1)");
        run("SELECT jobs.enqueue('t', '{\"n\":\"tie-1\"}', run_at => now() - interval '3 minutes', priority => 5)");
        run("SELECT jobs.enqueue('t', '{\"n\":\"tie-2\"}', run_at => now() - interval '3 minutes', priority => 5)");
        check(
            "SELECT array_agg(payload->>'n') = ARRAY['urgent', 'early', 'late', 'tie-1', 'tie-2']
             FROM jobs.claim('w1', max_jobs => 10)",
        );
    }

    #[pg_test]
    fn claim_starts_an_attempt_with_a_fresh_lease() {
        run("SELECT jobs.enqueue('t')");
        check(
            "SELECT state = 'running' AND attempts = 1 AND worker_id = 'w1' AND lease_token IS NOT NULL
                    AND lease_until = now() + interval '5 minutes' AND started_at = now()
             FROM jobs.claim('w1')",
        );
        run("SET LOCAL jobs.default_lease = '30s'");
        run("SELECT jobs.enqueue('t')");
        check("SELECT lease_until = now() + interval '30 seconds' FROM jobs.claim('w1')");
        run("SELECT jobs.enqueue('t')");
        check("SELECT lease_until = now() + interval '2 hours' FROM jobs.claim('w1', lease => '2 hours')");
    }

    #[pg_test]
    fn claims_give_each_job_its_own_random_version_4_token() {
        run("SELECT count(*) FROM jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[1000]), queue => 'tokens')");
        // Each token is an RFC 9562 version 4 UUID: 122 random bits.
        check(
            "SELECT count(*) = 1000 AND count(DISTINCT lease_token) = 1000
                    AND bool_and(lease_token::text ~ '^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$')
             FROM jobs.claim('w1', 'tokens', max_jobs => 1000)",
        );
    }

    #[pg_test]
    fn claim_takes_only_its_queue_its_types_and_at_most_max_jobs() {
        run("SELECT jobs.enqueue_batch('a', array_fill('{}'::jsonb, ARRAY[5]), queue => 'q1')");
        run("SELECT jobs.enqueue('b', queue => 'q1')");
        run("SELECT jobs.enqueue('a', queue => 'q2')");
        check("SELECT count(*) = 3 FROM jobs.claim('w1', 'q1', max_jobs => 3, job_types => ARRAY['a'])");
        check("SELECT count(*) = 2 FROM jobs.claim('w1', 'q1', max_jobs => 10, job_types => ARRAY['a'])");
        check("SELECT count(*) = 1 AND min(job_type) = 'b' FROM jobs.claim('w1', 'q1', max_jobs => 10)");
        check("SELECT count(*) = 0 FROM jobs.claim('w1', 'q1', max_jobs => 10)");
        check("SELECT count(*) = 1 FROM jobs.job WHERE queue = 'q2' AND state = 'queued'");
    }

    #[pg_test]
    fn claim_rejects_bad_input() {
        // A claim that let bad input through would take this job.
        run("SELECT jobs.enqueue('t')");
        assert_error("SELECT jobs.claim('w1', max_jobs => 0)", "22023", "max_jobs must be at least 1, not 0");
        assert_error("SELECT jobs.claim('w1', max_jobs => NULL)", "22023", "max_jobs must be at least 1, not null");
        assert_error(
            "SELECT jobs.claim('w1', max_jobs => NULL, lease => NULL)",
            "22023",
            "max_jobs must be at least 1, not null",
        );
        check("SELECT count(*) = 0 FROM jobs.job WHERE state = 'running'");
        assert_error("SELECT jobs.claim('w1', lease => '0')", "22023", "lease must be positive, not \"00:00:00\"");
        assert_error("SELECT jobs.claim('w1', lease => '-1 s')", "22023", "lease must be positive, not \"-00:00:01\"");
        assert_error(
            "SELECT jobs.claim('w1', lease => '1000 years')",
            "22023",
            "lease \"1000 years\" is longer than 100 years",
        );
        assert_error("SELECT jobs.claim(NULL)", "22023", "worker_id must not be null");
        assert_error("SELECT jobs.claim('w1', '')", "22023", "queue must not be empty");
    }

    #[pg_test]
    fn extend_lease_moves_lease_until_for_the_current_token_only() {
        let (id, token) = claimed("q", 3);
        check(&format!("SELECT jobs.extend_lease({id}, '{token}', interval '1 hour') = now() + interval '1 hour'"));
        check(&format!("SELECT lease_until = now() + interval '1 hour' FROM jobs.job WHERE id = {id}"));
        check(&format!("SELECT jobs.extend_lease({id}, '{token}') = now() + interval '5 minutes'"));
        assert_error(
            &format!("SELECT jobs.extend_lease({id}, gen_random_uuid())"),
            "55000",
            &format!("lease token does not match the current lease of job {id}"),
        );
        assert_error("SELECT jobs.extend_lease(-1, gen_random_uuid())", "P0002", "job -1 does not exist");
        assert_error(&format!("SELECT jobs.extend_lease({id}, NULL)"), "22023", "lease_token must not be null");
        assert_error(
            &format!("SELECT jobs.extend_lease({id}, '{token}', interval '0')"),
            "22023",
            "lease must be positive, not \"00:00:00\"",
        );
        run(&format!("SELECT jobs.complete({id}, '{token}')"));
        assert_error(
            &format!("SELECT jobs.extend_lease({id}, '{token}')"),
            "55000",
            &format!("job {id} is completed, not running"),
        );
    }

    #[pg_test]
    fn complete_finishes_once_and_records_the_attempt() {
        let (id, token) = claimed("q", 3);
        check(&format!(
            "SELECT state = 'completed' AND result = '{{\"ok\": true}}' AND finished_at = now()
                    AND lease_token IS NULL AND lease_until IS NULL AND worker_id = 'w1'
             FROM jobs.complete({id}, '{token}', '{{\"ok\": true}}')"
        ));
        check(&format!(
            "SELECT count(*) = 1 AND bool_and(outcome = 'completed' AND attempt = 1 AND worker_id = 'w1'
                                              AND started_at = now() AND finished_at = now() AND error IS NULL)
             FROM jobs.job_run WHERE job_id = {id}"
        ));
        // The completed job is its attempt's row: the completion wrote no other.
        check(&format!("SELECT count(*) = 0 FROM jobs.job_attempt WHERE job_id = {id}"));
        assert_error(
            &format!("SELECT jobs.complete({id}, '{token}')"),
            "55000",
            &format!("job {id} is completed, not running"),
        );
        check(&format!("SELECT count(*) = 1 FROM jobs.job_run WHERE job_id = {id}"));
        // The history is written by the functions only, even by its owner.
        assert_error(
            &format!("DELETE FROM jobs.job_run WHERE job_id = {id}"),
            "0A000",
            "jobs.job_run cannot be written: the functions that end attempts write it and pruning deletes it with its jobs",
        );
    }

    #[pg_test]
    fn complete_rejects_stale_or_missing_leases() {
        let (id, _token) = claimed("q", 3);
        assert_error(
            &format!("SELECT jobs.complete({id}, gen_random_uuid())"),
            "55000",
            &format!("lease token does not match the current lease of job {id}"),
        );
        assert_error("SELECT jobs.complete(987654, gen_random_uuid())", "P0002", "job 987654 does not exist");
        assert_error("SELECT jobs.complete(NULL, gen_random_uuid())", "22023", "job_id must not be null");
        assert_error(&format!("SELECT jobs.complete({id}, NULL)"), "22023", "lease_token must not be null");
        check(&format!("SELECT state = 'running' FROM jobs.job WHERE id = {id}"));
        check("SELECT count(*) = 0 FROM jobs.job_run");
    }

    #[pg_test]
    fn fail_with_attempts_left_queues_the_job_again() {
        let (id, token) = claimed("q", 3);
        check(&format!(
            "SELECT state = 'queued' AND run_at = now() + interval '90 seconds' AND last_error = 'boom'
                    AND lease_token IS NULL AND finished_at IS NULL AND attempts = 1
             FROM jobs.fail({id}, '{token}', 'boom', retry_in => interval '90 seconds')"
        ));
        check(&format!(
            "SELECT count(*) = 1 AND bool_and(outcome = 'failed' AND error = 'boom' AND attempt = 1)
             FROM jobs.job_run WHERE job_id = {id}"
        ));
        assert_error(
            &format!("SELECT jobs.fail({id}, '{token}', 'again')"),
            "55000",
            &format!("job {id} is queued, not running"),
        );
    }

    #[pg_test]
    fn fail_without_retry_in_backs_off_exponentially_with_jitter() {
        let (id, token) = claimed("q", 5);
        // Attempt 1: nominal 10 s, jitter takes off up to half.
        check(&format!(
            "SELECT run_at BETWEEN now() + interval '5 seconds' AND now() + interval '10 seconds'
             FROM jobs.fail({id}, '{token}', 'e1')"
        ));
        run(&format!("UPDATE jobs.job SET run_at = now() WHERE id = {id}"));
        let token = one::<String>("SELECT lease_token::text FROM jobs.claim('w1', 'q')");
        check(&format!(
            "SELECT run_at BETWEEN now() + interval '10 seconds' AND now() + interval '20 seconds'
             FROM jobs.fail({id}, '{token}', 'e2')"
        ));
        run("SET LOCAL jobs.backoff_base = '1h'");
        run("SET LOCAL jobs.backoff_max = '2h'");
        run(&format!("UPDATE jobs.job SET run_at = now() WHERE id = {id}"));
        let token = one::<String>("SELECT lease_token::text FROM jobs.claim('w1', 'q')");
        check(&format!(
            "SELECT run_at BETWEEN now() + interval '1 hour' AND now() + interval '2 hours'
             FROM jobs.fail({id}, '{token}', 'e3')"
        ));
    }

    #[pg_test]
    fn fail_on_last_attempt_or_not_retryable_fails_for_good() {
        let (id, token) = claimed("q", 1);
        check(&format!(
            "SELECT state = 'failed' AND finished_at = now() AND last_error = 'last'
             FROM jobs.fail({id}, '{token}', 'last')"
        ));
        let (id, token) = claimed("q", 3);
        check(&format!(
            "SELECT state = 'failed' AND attempts = 1
             FROM jobs.fail({id}, '{token}', 'fatal', retryable => false)"
        ));
        check(&format!(
            "SELECT count(*) = 1 AND bool_and(outcome = 'failed' AND error = 'fatal') FROM jobs.job_run WHERE job_id = {id}"
        ));
    }

    #[pg_test]
    fn fail_rejects_bad_input() {
        let (id, token) = claimed("q", 3);
        assert_error(&format!("SELECT jobs.fail({id}, '{token}', NULL)"), "22023", "error must not be null");
        assert_error(
            &format!("SELECT jobs.fail({id}, '{token}', 'e', retryable => NULL)"),
            "22023",
            "retryable must not be null",
        );
        assert_error(
            &format!("SELECT jobs.fail({id}, '{token}', 'e', retry_in => '-1 minute')"),
            "22023",
            "retry_in must not be negative, not \"-00:01:00\"",
        );
        assert_error(
            &format!("SELECT jobs.fail({id}, gen_random_uuid(), 'e')"),
            "55000",
            &format!("lease token does not match the current lease of job {id}"),
        );
        assert_error("SELECT jobs.fail(424242, gen_random_uuid(), 'e')", "P0002", "job 424242 does not exist");
        check(&format!("SELECT state = 'running' AND last_error IS NULL FROM jobs.job WHERE id = {id}"));
    }

    #[pg_test]
    fn cancel_queued_job_writes_no_history() {
        let id = one::<i64>("SELECT id FROM jobs.enqueue('t')");
        check(&format!("SELECT state = 'canceled' AND finished_at = now() FROM jobs.cancel({id})"));
        check("SELECT count(*) = 0 FROM jobs.job_run");
        assert_error(
            &format!("SELECT jobs.cancel({id})"),
            "55000",
            &format!("job {id} is canceled, not queued or running"),
        );
    }

    #[pg_test]
    fn cancel_running_job_revokes_its_lease() {
        let (id, token) = claimed("q", 3);
        check(&format!(
            "SELECT state = 'canceled' AND lease_token IS NULL AND lease_until IS NULL FROM jobs.cancel({id})"
        ));
        check(&format!(
            "SELECT count(*) = 1 AND bool_and(outcome = 'canceled' AND attempt = 1) FROM jobs.job_run WHERE job_id = {id}"
        ));
        assert_error(
            &format!("SELECT jobs.complete({id}, '{token}')"),
            "55000",
            &format!("job {id} is canceled, not running"),
        );
        assert_error(
            &format!("SELECT jobs.extend_lease({id}, '{token}')"),
            "55000",
            &format!("job {id} is canceled, not running"),
        );
    }

    #[pg_test]
    fn cancel_rejects_finished_and_unknown_jobs() {
        let (id, token) = claimed("q", 3);
        run(&format!("SELECT jobs.complete({id}, '{token}')"));
        assert_error(
            &format!("SELECT jobs.cancel({id})"),
            "55000",
            &format!("job {id} is completed, not queued or running"),
        );
        assert_error("SELECT jobs.cancel(31337)", "P0002", "job 31337 does not exist");
        assert_error("SELECT jobs.cancel(NULL)", "22023", "job_id must not be null");
    }

    #[pg_test]
    fn retry_now_requeues_failed_and_canceled_jobs_with_attempts_reset() {
        let (id, token) = claimed("q", 1);
        run(&format!("SELECT jobs.fail({id}, '{token}', 'boom')"));
        check(&format!(
            "SELECT state = 'queued' AND attempts = 0 AND run_at = now() AND finished_at IS NULL
             FROM jobs.retry_now({id})"
        ));
        let token = one::<String>("SELECT lease_token::text FROM jobs.claim('w1', 'q')");
        run(&format!("SELECT jobs.complete({id}, '{token}')"));
        check(&format!(
            "SELECT array_agg(outcome ORDER BY id) = ARRAY['failed', 'completed'] FROM jobs.job_run WHERE job_id = {id}"
        ));

        let id = one::<i64>("SELECT id FROM jobs.enqueue('t')");
        run(&format!("SELECT jobs.cancel({id})"));
        check(&format!("SELECT state = 'queued' FROM jobs.retry_now({id})"));
    }

    #[pg_test]
    fn retry_now_makes_a_scheduled_job_due() {
        let id = one::<i64>("SELECT id FROM jobs.enqueue('t', run_at => now() + interval '1 day')");
        check(&format!("SELECT state = 'queued' AND run_at = now() FROM jobs.retry_now({id})"));
        check(&format!("SELECT array_agg(id) = ARRAY[{id}::bigint] FROM jobs.claim('w1')"));
    }

    #[pg_test]
    fn retry_now_rejects_running_completed_and_unknown_jobs() {
        let (id, token) = claimed("q", 3);
        assert_error(
            &format!("SELECT jobs.retry_now({id})"),
            "55000",
            &format!("job {id} is running, not failed, canceled or queued"),
        );
        run(&format!("SELECT jobs.complete({id}, '{token}')"));
        assert_error(
            &format!("SELECT jobs.retry_now({id})"),
            "55000",
            &format!("job {id} is completed, not failed, canceled or queued"),
        );
        assert_error("SELECT jobs.retry_now(99999)", "P0002", "job 99999 does not exist");
    }

    #[pg_test]
    fn stats_counts_each_state_per_queue() {
        let (id, token) = claimed("a", 3);
        run(&format!("SELECT jobs.complete({id}, '{token}')"));
        run("SELECT jobs.enqueue('t', queue => 'a', run_at => now() - interval '1 minute')");
        run("SELECT jobs.enqueue('t', queue => 'a', run_at => now() + interval '1 minute')");
        let (id, _) = claimed("b", 3);
        run(&format!("SELECT jobs.cancel({id})"));
        let (id, token) = claimed("b", 1);
        run(&format!("SELECT jobs.fail({id}, '{token}', 'x')"));
        run("SELECT jobs.enqueue('t', queue => 'b')");
        check(
            "SELECT count(*) = 1 FROM jobs.stats() WHERE queue = 'a'
                 AND (queued, running, completed, failed, canceled) = (2, 0, 1, 0, 0)
                 AND oldest_queued_age = interval '1 minute'",
        );
        check(
            "SELECT count(*) = 1 FROM jobs.stats() WHERE queue = 'b'
                 AND (queued, running, completed, failed, canceled) = (1, 0, 0, 1, 1)
                 AND oldest_queued_age >= interval '0'",
        );
        check("SELECT count(*) = 2 FROM jobs.stats()");
        check("SELECT count(*) = 1 FROM jobs.stats('b')");
        check(
            "SELECT (queued, running, completed, failed, canceled) = (0, 0, 0, 0, 0)
                      AND oldest_queued_age IS NULL
               FROM jobs.stats('empty')",
        );
    }

    /// Index scans of this transaction on `index` so far.
    fn index_scans(index: &str) -> i64 {
        one::<i64>(&format!("SELECT pg_stat_get_xact_numscans('jobs.{index}'::regclass)"))
    }

    #[pg_test]
    fn finishing_finds_the_job_by_primary_key_among_many_running() {
        // Statistics taken while nothing runs make running jobs look rare:
        // a lease index whose predicate is `state = 'running'` would then be
        // preferred to the primary key, and each call would scan every
        // running job.
        run("SELECT count(*) FROM jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[2000]), queue => 'plan')");
        run("ANALYZE jobs.job");
        // (Numbered: tests run concurrently, so the ids need not be consecutive.)
        run("CREATE TEMP TABLE held AS
             SELECT row_number() OVER (ORDER BY id) AS n, id, lease_token
             FROM jobs.claim('w1', 'plan', max_jobs => 500)");
        let (lease_scans, pkey_scans) = (index_scans("job_lease_idx"), index_scans("job_pkey"));
        run("SELECT count(jobs.extend_lease(id, lease_token)) FROM held");
        run("SELECT count(jobs.complete(id, lease_token)) FROM held WHERE n % 2 = 0");
        run("SELECT count(jobs.fail(id, lease_token, 'e')) FROM held WHERE n % 2 = 1");
        assert_eq!(index_scans("job_lease_idx"), lease_scans);
        assert!(index_scans("job_pkey") >= pkey_scans + 1000);
        check("SELECT count(*) = 250 FROM jobs.job WHERE queue = 'plan' AND state = 'completed'");
    }

    #[pg_test]
    fn workers_keep_to_the_indexes_when_the_queue_grows_after_their_plans() {
        // A session keeps the plans of claim (from its first call) and of
        // the finishing calls (generic from their sixth): made while the
        // table was nearly empty they must still be index scans, or every
        // call would read the whole table once jobs pile up.
        run("ANALYZE jobs.job");
        run("SELECT count(*) FROM jobs.claim('w1', 'grow')");
        run("CREATE TEMP TABLE held (id bigint, lease_token uuid)");
        for _ in 0..8 {
            run("SELECT jobs.enqueue('t', queue => 'grow')");
            run("INSERT INTO held SELECT id, lease_token FROM jobs.claim('w1', 'grow')");
            run("SELECT jobs.extend_lease(id, lease_token) FROM held");
            run("SELECT jobs.complete(id, lease_token) FROM held");
            run("TRUNCATE held");
        }
        run("SELECT count(*) FROM jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[5000]), queue => 'grow')");
        let table_scans = one::<i64>("SELECT pg_stat_get_xact_numscans('jobs.job'::regclass)");
        let claim_scans = index_scans("job_claim_idx");
        for _ in 0..10 {
            run("INSERT INTO held SELECT id, lease_token FROM jobs.claim('w1', 'grow', max_jobs => 10)");
        }
        run("SELECT count(jobs.extend_lease(id, lease_token)) FROM held");
        run("SELECT count(jobs.complete(id, lease_token)) FROM held WHERE id % 3 = 0");
        run("SELECT count(jobs.fail(id, lease_token, 'e')) FROM held WHERE id % 3 = 1");
        run("SELECT count(*) FROM jobs.complete_batch(
                 ARRAY(SELECT id FROM held WHERE id % 3 = 2 ORDER BY id),
                 ARRAY(SELECT lease_token FROM held WHERE id % 3 = 2 ORDER BY id))");
        assert_eq!(one::<i64>("SELECT pg_stat_get_xact_numscans('jobs.job'::regclass)"), table_scans);
        assert_eq!(index_scans("job_claim_idx"), claim_scans + 10);
        check("SELECT count(*) = 0 FROM jobs.job WHERE queue = 'grow' AND state = 'running'");
    }

    #[pg_test]
    fn constraints_refuse_an_impossible_state() {
        let id = one::<i64>("SELECT id FROM jobs.enqueue('t')");
        let err = error_of(&format!("UPDATE jobs.job SET state = 'completed' WHERE id = {id}"));
        assert!(err.starts_with("23514:"), "{err}");
        let err = error_of(&format!("UPDATE jobs.job SET state = 'running' WHERE id = {id}"));
        assert!(err.starts_with("23514:"), "{err}");
        for change in [
            "lease_token = gen_random_uuid()",
            "finished_at = now()",
            "attempts = max_attempts + 1",
            "queue = ''",
            "worker_id = 'w', started_at = now(), attempts = 1, state = 'running', lease_token = gen_random_uuid()",
        ] {
            let err = error_of(&format!("UPDATE jobs.job SET {change} WHERE id = {id}"));
            assert!(err.starts_with("23514:") && err.contains("job_valid"), "{change}: {err}");
        }
        // The same with the lease's end too is a valid running job.
        run(&format!(
            "UPDATE jobs.job SET worker_id = 'w', started_at = now(), attempts = 1, state = 'running',
                                 lease_token = gen_random_uuid(), lease_until = now() WHERE id = {id}"
        ));
    }

    #[pg_test]
    fn public_has_no_access_until_granted() {
        run("CREATE ROLE jobs_test_producer");
        run("SET LOCAL ROLE jobs_test_producer");
        assert_error("SELECT jobs.enqueue('t')", "42501", "permission denied for schema jobs");
        run("RESET ROLE");
        run("GRANT USAGE ON SCHEMA jobs TO jobs_test_producer");
        run("SET LOCAL ROLE jobs_test_producer");
        assert_error("SELECT jobs.enqueue('t')", "42501", "permission denied for function enqueue");
        assert_error("SELECT count(*) FROM jobs.job", "42501", "permission denied for table job");
        run("RESET ROLE");
        run("GRANT EXECUTE ON FUNCTION jobs.enqueue TO jobs_test_producer");
        run("SET LOCAL ROLE jobs_test_producer");
        run("SELECT jobs.enqueue('t')");
        assert_error("SELECT jobs.claim('w')", "42501", "permission denied for function claim");
        assert_error("DELETE FROM jobs.job", "42501", "permission denied for table job");
        run("RESET ROLE");
        check("SELECT count(*) = 1 FROM jobs.job");
    }

    #[pg_test]
    fn callers_search_path_cannot_hijack_the_api() {
        run("CREATE FUNCTION public.always_equal(text, text) RETURNS boolean LANGUAGE sql AS 'SELECT true'");
        run("CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = text, FUNCTION = public.always_equal)");
        run("CREATE FUNCTION public.now() RETURNS timestamptz LANGUAGE sql AS $$SELECT '2000-01-01'::timestamptz$$");
        run(
            "CREATE FUNCTION public.gen_random_uuid() RETURNS uuid LANGUAGE sql AS $$SELECT '00000000-0000-0000-0000-000000000000'::uuid$$",
        );
        run("SET LOCAL search_path = public, pg_catalog");
        run("SELECT jobs.enqueue('t', queue => 'other')");
        run("SELECT jobs.enqueue('t', queue => 'mine')");
        check(
            "SELECT count(*) = 1 AND bool_and(queue OPERATOR(pg_catalog.=) 'mine')
                    AND bool_and(lease_token <> '00000000-0000-0000-0000-000000000000')
                    AND bool_and(started_at > '2001-01-01')
             FROM jobs.claim('w', 'mine', max_jobs => 10)",
        );
    }

    #[pg_test]
    fn next_run_is_the_cron_engine() {
        check("SELECT jobs.next_run('*/15 * * * *', 'UTC', '2026-01-01 10:07:00+00') = '2026-01-01 10:15:00+00'");
        check(
            "SELECT jobs.next_run('30 2 * * *', 'America/New_York', '2026-03-07 12:00:00+00') = '2026-03-08 07:00:00+00'",
        );
        check("SELECT jobs.next_run('@hourly') > now()");
        check("SELECT jobs.next_run('0 0 1 1 *', after => '2026-06-01 00:00:00+00') = '2027-01-01 00:00:00+00'");
        assert_error("SELECT jobs.next_run('0 0 30 2 *')", "22023", "cron expression \"0 0 30 2 *\" never fires");
        assert_error(
            "SELECT jobs.next_run('* * * * *', 'Nowhere/Town')",
            "22023",
            "time zone \"Nowhere/Town\" not recognized",
        );
        assert_error("SELECT jobs.next_run(NULL)", "22023", "cron must not be null");
        assert_error("SELECT jobs.next_run('* * * * *', NULL)", "22023", "timezone must not be null");
        assert_error(
            "SELECT jobs.next_run('* * * * *', 'UTC', 'infinity')",
            "22023",
            "after must be a finite timestamp, not infinity",
        );
        check("SELECT jobs.next_run('* * * * *', 'UTC', '294276-12-31 23:59:59+00') IS NULL");
        check("SELECT jobs.next_run('* * * * *', 'UTC', '4999-12-31 23:59:59+00') = '5000-01-01 00:00:00+00'");
        check("SELECT jobs.next_run('* * * * *', 'UTC', '0001-01-01 00:00:00+00') = '0001-01-01 00:01:00+00'");
        assert_error(
            "SELECT jobs.next_run('* * * * *', 'UTC', '0002-01-01 00:00:00+00 BC')",
            "22023",
            "after must not be before the year 1, not 0002-01-01 00:00:00+00 BC",
        );
        let err = error_of("SELECT jobs.next_run('61 * * * *')");
        assert!(err.starts_with("22023: invalid cron expression \"61 * * * *\": "), "{err}");
    }

    #[pg_test]
    fn schedule_creates_and_replaces_by_name() {
        check(
            "SELECT name = 'nightly' AND cron = '0 3 * * *' AND timezone = 'Europe/Paris' AND enabled
                    AND next_run_at = jobs.next_run('0 3 * * *', 'Europe/Paris', now()) AND queue = 'default'
             FROM jobs.schedule('nightly', '0 3 * * *', 'report', timezone => 'Europe/Paris')",
        );
        let id = one::<i64>("SELECT id FROM jobs.schedule s WHERE s.name = 'nightly'");
        check(&format!(
            "SELECT id = {id} AND cron = '*/5 * * * * *' AND queue = 'q' AND priority = 3 AND max_attempts = 2
                    AND payload = '{{\"a\": 1}}'
             FROM jobs.schedule('nightly', '*/5 * * * * *', 'report', '{{\"a\": 1}}', queue => 'q',
                                priority => 3, max_attempts => 2)"
        ));
        check("SELECT count(*) = 1 FROM jobs.schedule");
        check("SELECT NOT enabled AND next_run_at IS NULL FROM jobs.schedule('off', '@daily', 't', enabled => false)");
    }

    #[pg_test]
    fn schedule_rejects_bad_input_and_changes_nothing() {
        assert_error(
            "SELECT jobs.schedule('s', '0 0 30 2 *', 't')",
            "22023",
            "cron expression \"0 0 30 2 *\" never fires",
        );
        assert_error(
            "SELECT jobs.schedule('s', '* * * * *', 't', timezone => 'Mars/Base')",
            "22023",
            "time zone \"Mars/Base\" not recognized",
        );
        assert_error("SELECT jobs.schedule('', '* * * * *', 't')", "22023", "name must not be empty");
        assert_error("SELECT jobs.schedule('s', NULL, 't')", "22023", "cron must not be null");
        assert_error("SELECT jobs.schedule('s', '* * * * *', '')", "22023", "job_type must not be empty");
        assert_error(
            "SELECT jobs.schedule('s', '* * * * *', 't', max_attempts => 0)",
            "22023",
            "max_attempts must be at least 1, not 0",
        );
        assert_error(
            "SELECT jobs.schedule('s', '* * * * *', 't', enabled => NULL)",
            "22023",
            "enabled must not be null",
        );
        check("SELECT count(*) = 0 FROM jobs.schedule");
    }

    #[pg_test]
    fn unschedule_pause_and_resume() {
        run("SELECT jobs.schedule('s', '*/10 * * * *', 't')");
        check("SELECT NOT enabled AND next_run_at IS NULL FROM jobs.pause_schedule('s')");
        check(
            "SELECT enabled AND next_run_at = jobs.next_run('*/10 * * * *', 'UTC', now()) FROM jobs.resume_schedule('s')",
        );
        check("SELECT jobs.unschedule('s')");
        check("SELECT NOT jobs.unschedule('s')");
        assert_error("SELECT jobs.pause_schedule('s')", "P0002", "schedule \"s\" does not exist");
        assert_error("SELECT jobs.resume_schedule('nope')", "P0002", "schedule \"nope\" does not exist");
        assert_error("SELECT jobs.unschedule(NULL)", "22023", "name must not be null");
    }

    fn tick_counts() -> String {
        one::<String>("SELECT string_agg(task || '=' || count, ' ' ORDER BY task) FROM jobs.tick()")
    }

    #[pg_test]
    fn tick_reports_every_duty_even_when_idle() {
        assert_eq!(
            tick_counts(),
            "due_jobs_notified=0 jobs_pruned=0 leases_recovered=0 schedules_fired=0 schedules_skipped=0"
        );
    }

    #[pg_test]
    fn tick_fires_a_due_schedule_once_and_advances_it() {
        run("SELECT jobs.schedule('s', '*/10 * * * *', 'report', '{\"k\": 1}', queue => 'cron', priority => 4)");
        run("UPDATE jobs.schedule SET next_run_at = date_trunc('minute', now()) - interval '1 hour'");
        assert!(tick_counts().contains("schedules_fired=1"));
        check(
            "SELECT count(*) = 1 AND bool_and(j.schedule_id = s.id AND j.scheduled_for = s.last_run_at
                                              AND j.job_type = 'report' AND j.queue = 'cron' AND j.priority = 4
                                              AND j.payload = '{\"k\": 1}' AND j.state = 'queued')
             FROM jobs.job j, jobs.schedule s",
        );
        // Missed occurrences collapse into one; the schedule continues from now.
        check("SELECT next_run_at = jobs.next_run(cron, timezone, now()) AND last_run_at < now() FROM jobs.schedule");
        assert!(tick_counts().contains("schedules_fired=0"));
        check("SELECT count(*) = 1 FROM jobs.job");
    }

    #[pg_test]
    fn an_occurrence_can_never_produce_two_jobs() {
        run("SELECT jobs.schedule('s', '@hourly', 't')");
        run("UPDATE jobs.schedule SET next_run_at = date_trunc('hour', now())");
        run("SELECT jobs.tick()");
        // As if a second firer had not seen the advance: the same occurrence again.
        run("UPDATE jobs.schedule SET next_run_at = date_trunc('hour', now())");
        assert!(tick_counts().contains("schedules_fired=0"));
        check("SELECT count(*) = 1 FROM jobs.job");
    }

    #[pg_test]
    fn a_schedule_that_cannot_enqueue_does_not_stop_the_others() {
        run("CREATE FUNCTION pg_temp.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN IF NEW.job_type = 'explode' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$");
        run("CREATE TRIGGER refuse BEFORE INSERT ON jobs.job FOR EACH ROW EXECUTE FUNCTION pg_temp.refuse()");
        run("SELECT jobs.schedule('a-bad', '@hourly', 'explode')");
        run("SELECT jobs.schedule('b-good', '@hourly', 'fine')");
        run("UPDATE jobs.schedule SET next_run_at = date_trunc('hour', now())");
        assert!(tick_counts().contains("schedules_fired=1"));
        check("SELECT array_agg(job_type) = ARRAY['fine'] FROM jobs.job");
        check("SELECT bool_and(next_run_at > now() AND enabled) FROM jobs.schedule");
    }

    #[pg_test]
    fn tick_recovers_expired_leases() {
        let (id, token) = claimed("q", 2);
        run(&format!("UPDATE jobs.job SET lease_until = now() - interval '1 second' WHERE id = {id}"));
        assert!(tick_counts().contains("leases_recovered=1"));
        check(&format!(
            "SELECT state = 'queued' AND attempts = 1 AND run_at = now() AND lease_token IS NULL
                    AND last_error = 'lease expired'
             FROM jobs.job WHERE id = {id}"
        ));
        check(&format!(
            "SELECT array_agg(outcome) = ARRAY['lease_expired'] AND bool_and(attempt = 1 AND worker_id = 'w1')
             FROM jobs.job_run WHERE job_id = {id}"
        ));
        assert_error(
            &format!("SELECT jobs.complete({id}, '{token}')"),
            "55000",
            &format!("job {id} is queued, not running"),
        );
        // Second and last attempt expires too: failed for good.
        run("SELECT jobs.claim('w2', 'q')");
        run(&format!("UPDATE jobs.job SET lease_until = now() - interval '1 second' WHERE id = {id}"));
        run("SELECT jobs.tick()");
        check(&format!("SELECT state = 'failed' AND finished_at = now() FROM jobs.job WHERE id = {id}"));
        check(&format!("SELECT count(*) = 2 FROM jobs.job_run WHERE job_id = {id} AND outcome = 'lease_expired'"));
    }

    #[pg_test]
    fn tick_leaves_live_leases_alone() {
        let (id, _) = claimed("q", 3);
        assert!(tick_counts().contains("leases_recovered=0"));
        check(&format!("SELECT state = 'running' FROM jobs.job WHERE id = {id}"));
    }

    #[pg_test]
    fn tick_prunes_finished_jobs_past_retention_with_their_history() {
        let (old, token) = claimed("q", 3);
        run(&format!("SELECT jobs.complete({old}, '{token}')"));
        let (recent, token) = claimed("q", 3);
        run(&format!("SELECT jobs.complete({recent}, '{token}')"));
        let queued = one::<i64>("SELECT id FROM jobs.enqueue('t', queue => 'q', run_at => now() - interval '30 days')");
        run(&format!("UPDATE jobs.job SET finished_at = now() - interval '8 days' WHERE id = {old}"));
        // The pass sweeps from the cursor: put it on the job's page, wherever
        // the tests before this one left the table's end.
        run(&format!(
            "UPDATE jobs.maintenance_cursor SET next_page = (SELECT (ctid::text::point)[0]::bigint FROM jobs.job WHERE id = {old})"
        ));
        assert!(tick_counts().contains("jobs_pruned=1"));
        check(&format!("SELECT array_agg(id ORDER BY id) = ARRAY[{recent}, {queued}]::bigint[] FROM jobs.job"));
        check(&format!("SELECT count(*) = 0 FROM jobs.job_run WHERE job_id = {old}"));
        check(&format!("SELECT count(*) = 1 FROM jobs.job_run WHERE job_id = {recent}"));
    }

    #[pg_test]
    fn a_pass_from_past_the_tables_end_sends_the_next_to_the_first_page() {
        let (id, token) = claimed("q", 3);
        run(&format!("SELECT jobs.complete({id}, '{token}')"));
        run(&format!("UPDATE jobs.job SET finished_at = now() - interval '8 days' WHERE id = {id}"));
        // A cursor past the table's end: this pass sweeps nothing and sends
        // the next one to the first page.
        run("UPDATE jobs.maintenance_cursor
             SET next_page = pg_relation_size('jobs.job') / current_setting('block_size')::int + 5");
        assert!(tick_counts().contains("jobs_pruned=0"));
        check("SELECT next_page = 0 FROM jobs.maintenance_cursor WHERE duty = 'prune'");
        check(&format!("SELECT count(*) = 1 FROM jobs.job WHERE id = {id}"));
    }

    #[pg_test]
    fn pruning_sweeps_the_table_a_few_pages_at_a_time() {
        // 600 finished jobs on several pages, finished 8 days ago, and one
        // queued job among them that must stay.
        run("SELECT count(*) FROM jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[300]), queue => 'sweep')");
        let queued =
            one::<i64>("SELECT id FROM jobs.enqueue('t', queue => 'sweep', run_at => now() + interval '1 day')");
        run("SELECT count(*) FROM jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[300]), queue => 'sweep')");
        run("SELECT count(*) FROM (SELECT array_agg(id) AS ids, array_agg(lease_token) AS tokens
                                   FROM jobs.claim('w', 'sweep', max_jobs => 1000)) c,
                                  jobs.complete_batch(c.ids, c.tokens)");
        run(
            "UPDATE jobs.job SET finished_at = now() - interval '8 days' WHERE queue = 'sweep' AND state = 'completed'",
        );
        let pages = one::<i64>("SELECT count(DISTINCT (ctid::text::point)[0]) FROM jobs.job WHERE queue = 'sweep'");
        assert!(pages >= 3, "the jobs fill {pages} pages");

        // One page per call: the sweep moves on page by page and ends at 0.
        let table_pages = one::<i64>("SELECT pg_relation_size('jobs.job') / current_setting('block_size')::int");
        let (mut next, mut pruned, mut calls) = (0_i64, 0_i64, 0_i64);
        loop {
            let (n, page) = Spi::get_two::<i64, i64>(&format!(
                "SELECT pruned, next_page FROM jobs._prune(interval '7 days', 1000, {next}, 1)"
            ))
            .unwrap();
            pruned += n.unwrap();
            next = page.unwrap();
            calls += 1;
            if next == 0 {
                break;
            }
            assert!(calls <= table_pages, "the sweep ends after {table_pages} pages");
        }
        assert_eq!(pruned, 600);
        assert!(calls >= pages, "{calls} calls for {pages} pages");
        check(&format!("SELECT array_agg(id) = ARRAY[{queued}]::bigint[] FROM jobs.job WHERE queue = 'sweep'"));
    }

    #[pg_test]
    fn pruning_deletes_a_batch_at_most_and_goes_on_where_it_stopped() {
        run("SELECT count(*) FROM jobs.enqueue_batch('t', array_fill('{}'::jsonb, ARRAY[25]), queue => 'sweep')");
        run("SELECT count(*) FROM (SELECT array_agg(id) AS ids, array_agg(lease_token) AS tokens
                                   FROM jobs.claim('w', 'sweep', max_jobs => 100)) c,
                                  jobs.complete_batch(c.ids, c.tokens)");
        run("UPDATE jobs.job SET finished_at = now() - interval '8 days' WHERE queue = 'sweep'");
        let mut next = 0_i64;
        for left in [15, 5, 0] {
            let (n, page) = Spi::get_two::<i64, i64>(&format!(
                "SELECT pruned, next_page FROM jobs._prune(interval '7 days', 10, {next}, 1000)"
            ))
            .unwrap();
            assert_eq!(n, Some(if left > 0 { 10 } else { 5 }));
            next = page.unwrap();
            check(&format!("SELECT count(*) = {left} FROM jobs.job WHERE queue = 'sweep'"));
        }
        assert_eq!(next, 0, "the last call reached the table's end");
    }

    /// After a column was dropped, the row type keeps a place for it that
    /// the statements' rows do not have: claim and complete_batch return
    /// their rows in the row type's layout all the same.
    #[pg_test]
    fn claim_and_complete_batch_return_whole_rows_after_a_column_was_dropped() {
        // A column in the middle: the later ones move up a place in the
        // statements' rows.
        run("ALTER TABLE jobs.job DROP COLUMN idempotency_key");
        run("SELECT jobs.enqueue('t', '{\"n\": 1}', queue => 'dropped', priority => 2)");
        run("SELECT jobs.enqueue('t', '{\"n\": 2}', queue => 'dropped', priority => 1)");
        run("CREATE TEMP TABLE taken AS SELECT * FROM jobs.claim('w1', 'dropped', max_jobs => 2) WITH ORDINALITY");
        check(
            "SELECT array_agg(payload->>'n' ORDER BY priority) = '{2,1}' AND bool_and(state = 'running'
                    AND queue = 'dropped' AND job_type = 't' AND attempts = 1 AND worker_id = 'w1'
                    AND lease_token IS NOT NULL AND started_at = now() AND finished_at IS NULL)
             FROM taken",
        );
        check("SELECT array_agg(priority ORDER BY ordinality) = '{1,2}' FROM taken");
        check(
            "SELECT array_agg(c.id ORDER BY c.id) = (SELECT array_agg(id ORDER BY id) FROM taken)
                    AND bool_and(c.state = 'completed' AND c.payload ? 'n' AND c.lease_token IS NULL
                                 AND c.finished_at = now())
             FROM jobs.complete_batch((SELECT array_agg(id) FROM taken), (SELECT array_agg(lease_token) FROM taken)) c",
        );
    }

    #[pg_test]
    fn complete_batch_completes_all_or_nothing() {
        let (a, ta) = claimed("q", 3);
        let (b, tb) = claimed("q", 3);
        check(&format!(
            "SELECT array_agg(id ORDER BY id) = ARRAY[{a}, {b}]::bigint[] AND bool_and(state = 'completed' AND finished_at = now())
             FROM jobs.complete_batch(ARRAY[{b}, {a}]::bigint[], ARRAY['{tb}', '{ta}']::uuid[])"
        ));
        check(&format!(
            "SELECT count(*) = 2 AND bool_and(outcome = 'completed') FROM jobs.job_run WHERE job_id IN ({a}, {b})"
        ));
        check("SELECT count(*) = 0 FROM jobs.complete_batch('{}', '{}')");

        let (c, tc) = claimed("q", 3);
        let (d, _) = claimed("q", 3);
        assert_error(
            &format!("SELECT jobs.complete_batch(ARRAY[{c}, {d}]::bigint[], ARRAY['{tc}', gen_random_uuid()]::uuid[])"),
            "55000",
            &format!("lease token does not match the current lease of job {d}"),
        );
        assert_error(
            &format!("SELECT jobs.complete_batch(ARRAY[{c}, {a}]::bigint[], ARRAY['{tc}', '{ta}']::uuid[])"),
            "55000",
            &format!("job {a} is completed, not running"),
        );
        assert_error(
            &format!("SELECT jobs.complete_batch(ARRAY[{c}, -5]::bigint[], ARRAY['{tc}', gen_random_uuid()]::uuid[])"),
            "P0002",
            "job -5 does not exist",
        );
        check(&format!("SELECT state = 'running' FROM jobs.job WHERE id = {c}"));
        assert_error(
            &format!("SELECT jobs.complete_batch(ARRAY[{c}]::bigint[], ARRAY['{tc}', '{tc}']::uuid[])"),
            "22023",
            "job_ids and lease_tokens must have the same length, not 1 and 2",
        );
        assert_error(
            &format!("SELECT jobs.complete_batch(ARRAY[{c}, {c}]::bigint[], ARRAY['{tc}', '{tc}']::uuid[])"),
            "22023",
            "job_ids must not repeat",
        );
        assert_error(
            &format!("SELECT jobs.complete_batch(ARRAY[{c}, NULL]::bigint[], ARRAY['{tc}', '{tc}']::uuid[])"),
            "22023",
            "job_ids and lease_tokens must not contain null",
        );
        assert_error("SELECT jobs.complete_batch(NULL, '{}')", "22023", "job_ids must not be null");
        check(&format!("SELECT state = 'running' FROM jobs.job WHERE id = {c}"));
        check(&format!("SELECT count(*) = 0 FROM jobs.job_run WHERE job_id IN ({c}, {d})"));
    }
}
