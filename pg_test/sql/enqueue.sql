-- Producers: jobs.enqueue and jobs.enqueue_batch.
-- Every file of this suite runs in one transaction that it rolls back, and
-- prints no ids, tokens or timestamps: only what they must equal.
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
SELECT count(*) AS jobs_before FROM jobs.job \gset

-- The contract's defaults: queue 'default', payload '{}', priority 0, due now,
-- max_attempts from jobs.default_max_attempts (3).
SELECT job_type, payload, queue, state, priority, attempts, max_attempts,
       run_at = now() AS due_now, lease_token IS NULL AS unleased, finished_at IS NULL AS unfinished
FROM jobs.enqueue('send_email', '{"to": "ada@example.com"}');

-- Named arguments for everything; a job for later, urgent, with more attempts.
SELECT job_type, queue, state, priority, max_attempts, run_at - now() AS due_in
FROM jobs.enqueue('build_report', queue => 'reports', run_at => now() + interval '10 minutes',
                  priority => -10, max_attempts => 10);

-- NULL run_at and max_attempts mean now and the setting.
SET LOCAL jobs.default_max_attempts = 7;
SELECT run_at = now() AS due_now, max_attempts
FROM jobs.enqueue('cleanup', run_at => NULL, max_attempts => NULL);
RESET jobs.default_max_attempts;

-- An idempotency key: while a job with the key is in the table, enqueue
-- returns that job unchanged.
SELECT id AS charge_id FROM jobs.enqueue('charge', '{"order": 42}', idempotency_key => 'charge-42') \gset
SELECT id = :charge_id AS same_job, payload
FROM jobs.enqueue('charge', '{"order": 43}', idempotency_key => 'charge-42');
SELECT count(*) FROM jobs.job WHERE idempotency_key = 'charge-42';

-- A batch: one job per payload, in payload order, in one statement.
SELECT job_type, payload, queue, priority
FROM jobs.enqueue_batch('resize', ARRAY['{"img": 1}', '{"img": 2}', '{"img": 3}']::jsonb[],
                        queue => 'images', priority => 5);
SELECT array_agg(payload->>'img' ORDER BY id) AS in_id_order FROM jobs.job WHERE queue = 'images';
SELECT count(*) FROM jobs.enqueue_batch('resize', '{}'::jsonb[], queue => 'images');

-- Bad input changes nothing.
SELECT jobs.enqueue('');
SELECT jobs.enqueue('t', queue => repeat('q', 129));
SELECT jobs.enqueue('t', max_attempts => 0);
SELECT jobs.enqueue('t', run_at => 'infinity');
SELECT jobs.enqueue_batch('t', ARRAY['{}', NULL]::jsonb[]);
SELECT count(*) - :jobs_before AS jobs_added FROM jobs.job;

ROLLBACK;
