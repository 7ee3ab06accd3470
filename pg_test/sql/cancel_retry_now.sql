-- Operators: jobs.cancel and jobs.retry_now.
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

-- Cancel a queued job.
SELECT id AS queued_id FROM jobs.enqueue('report', queue => 'ops') \gset
SELECT state, finished_at = now() AS finished_now FROM jobs.cancel(:queued_id);

-- Cancel a running job: its lease is revoked (the worker's complete fails)
-- and the attempt is recorded as canceled.
SELECT count(*) FROM jobs.enqueue('export', queue => 'ops');
SELECT id AS running_id, lease_token FROM jobs.claim('worker-1', 'ops') \gset
SELECT state, lease_token IS NULL AS lease_revoked FROM jobs.cancel(:running_id);
SELECT jobs.complete(:running_id, :'lease_token');
SELECT attempt, outcome FROM jobs.job_run WHERE job_id = :running_id;

-- Finished jobs cannot be canceled.
SELECT jobs.cancel(:running_id);
SELECT jobs.cancel(-1);

-- retry_now: a canceled (or failed) job is queued again now, attempts reset.
SELECT state, attempts, run_at = now() AS due_now, finished_at IS NULL AS unfinished
FROM jobs.retry_now(:running_id);

-- retry_now on a job waiting for later makes it due now.
SELECT id AS later_id FROM jobs.enqueue('digest', queue => 'ops', run_at => now() + interval '1 day') \gset
SELECT state, run_at = now() AS due_now FROM jobs.retry_now(:later_id);

-- A running job is not retried by hand: cancel it first.
SELECT id AS held_id FROM jobs.claim('worker-1', 'ops') \gset
SELECT jobs.retry_now(:held_id);
SELECT jobs.retry_now(-1);
SELECT jobs.retry_now(NULL);

ROLLBACK;
