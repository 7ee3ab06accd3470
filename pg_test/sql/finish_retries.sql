-- Workers, part two: jobs.complete, jobs.complete_batch, jobs.fail, retries
-- with backoff, and the history in jobs.job_run.
\set VERBOSITY verbose
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
SET TimeZone = 'UTC';
SET DateStyle = 'ISO';
SET IntervalStyle = 'postgres';
BEGIN;
-- Job ids (they appear in messages) start at 1000001 in every run: the
-- sequence is restarted inside the transaction, and rolled back with it.
ALTER SEQUENCE jobs.job_id_seq RESTART WITH 1000001;

-- complete: running -> completed, with the result; the lease is gone and the
-- attempt is in the history.
SELECT count(*) FROM jobs.enqueue('send_email', queue => 'finish');
SELECT id AS job_id, lease_token FROM jobs.claim('worker-1', 'finish') \gset
SELECT state, result, lease_token IS NULL AS lease_gone, finished_at = now() AS finished_now
FROM jobs.complete(:job_id, :'lease_token', '{"sent": true}');
SELECT attempt, worker_id, outcome, error, started_at = now() AS started_now FROM jobs.job_run WHERE job_id = :job_id;

-- Twice is an error: the token no longer holds the job, and nothing changes.
SELECT jobs.complete(:job_id, :'lease_token');
SELECT state, result FROM jobs.job WHERE id = :job_id;

-- fail with attempts left: back to queued after the backoff,
-- jobs.backoff_base × 2^(attempts − 1) with equal jitter: 5 to 10 s after the first attempt.
SELECT count(*) FROM jobs.enqueue('flaky', queue => 'finish', max_attempts => 3);
SELECT id AS job_id, lease_token FROM jobs.claim('worker-1', 'finish') \gset
SELECT state, attempts, last_error, run_at - now() BETWEEN interval '5 s' AND interval '10 s' AS backoff_5_to_10s,
       finished_at IS NULL AS unfinished
FROM jobs.fail(:job_id, :'lease_token', 'SMTP timeout');

-- An explicit retry_in replaces the backoff.
UPDATE jobs.job SET run_at = now() WHERE id = :job_id;
SELECT lease_token FROM jobs.claim('worker-1', 'finish') \gset
SELECT state, attempts, run_at - now() AS retry_in
FROM jobs.fail(:job_id, :'lease_token', 'rate limited', retry_in => '1 minute');

-- On the last attempt, fail is final.
UPDATE jobs.job SET run_at = now() WHERE id = :job_id;
SELECT lease_token FROM jobs.claim('worker-1', 'finish') \gset
SELECT state, attempts, max_attempts, last_error, finished_at = now() AS finished_now
FROM jobs.fail(:job_id, :'lease_token', 'still down');
SELECT attempt, outcome, error FROM jobs.job_run WHERE job_id = :job_id ORDER BY attempt;

-- retryable => false fails at once, attempts left or not.
SELECT count(*) FROM jobs.enqueue('bad_address', queue => 'finish', max_attempts => 5);
SELECT id AS job_id, lease_token FROM jobs.claim('worker-1', 'finish') \gset
SELECT state, attempts, last_error FROM jobs.fail(:job_id, :'lease_token', 'no such mailbox', retryable => false);

-- complete_batch: many jobs in one statement, all or nothing.
SELECT count(*) FROM jobs.enqueue_batch('thumb', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[], queue => 'batch');
SELECT array_agg(id ORDER BY id) AS ids, array_agg(lease_token ORDER BY id) AS tokens
FROM jobs.claim('worker-1', 'batch', max_jobs => 3) \gset
-- one stale token: nothing is completed
SELECT jobs.complete_batch(:'ids', (:'tokens'::uuid[])[1:2] || '00000000-0000-0000-0000-000000000000'::uuid);
SELECT state, count(*) FROM jobs.job WHERE queue = 'batch' GROUP BY state;
SELECT payload, state FROM jobs.complete_batch(:'ids', :'tokens') ORDER BY id;
SELECT jobs.complete_batch(ARRAY[1, 2], ARRAY[gen_random_uuid()]);

-- Bad input.
SELECT jobs.complete(NULL, gen_random_uuid());
SELECT jobs.fail(1, gen_random_uuid(), NULL);
SELECT jobs.fail(1, gen_random_uuid(), 'e', retry_in => '-1 minute');

ROLLBACK;
