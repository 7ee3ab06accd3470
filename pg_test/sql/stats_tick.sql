-- Operators: jobs.stats(), the views jobs.queue_stats and
-- jobs.recent_failures, and jobs.tick(), one pass of the background worker's
-- duties in the caller's transaction.
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

SELECT count(*) FROM jobs.enqueue_batch('noop', array_fill('{}'::jsonb, ARRAY[4]), queue => 'stats_a');
SELECT count(*) FROM jobs.enqueue('noop', queue => 'stats_b', run_at => now() + interval '1 hour');
SELECT id AS job_id, lease_token FROM jobs.claim('worker-1', 'stats_a') \gset
SELECT count(*) FROM jobs.complete(:job_id, :'lease_token');
SELECT id AS job_id, lease_token FROM jobs.claim('worker-1', 'stats_a') \gset
SELECT count(*) FROM jobs.fail(:job_id, :'lease_token', 'disk full', retryable => false);
SELECT count(*) FROM jobs.claim('worker-1', 'stats_a');

-- One row per queue; a queue asked for by name has a row even when empty.
-- oldest_queued_age: how long the oldest due job has waited (none is due in stats_b).
SELECT queue, queued, running, completed, failed, canceled, oldest_queued_age
FROM jobs.stats() WHERE queue LIKE 'stats_%';
SELECT * FROM jobs.stats('stats_b');
SELECT * FROM jobs.stats('empty');
SELECT * FROM jobs.queue_stats WHERE queue LIKE 'stats_%';

-- jobs.tick(): every duty, zero counts included.
SELECT task, count FROM jobs.tick() ORDER BY task;

-- A lease that has expired: the job is queued again, attempt kept, and the
-- history says lease_expired.
SELECT id AS job_id FROM jobs.job WHERE queue = 'stats_a' AND state = 'running' \gset
UPDATE jobs.job SET lease_until = now() - interval '1 second' WHERE id = :job_id;
SELECT task, count FROM jobs.tick() ORDER BY task;
SELECT state, attempts, last_error, lease_token IS NULL AS lease_gone FROM jobs.job WHERE id = :job_id;

-- A due schedule fires once, for its occurrence.
SELECT count(*) FROM jobs.schedule('every_minute', '* * * * *', 'ping', queue => 'stats_b');
UPDATE jobs.schedule SET next_run_at = date_trunc('minute', now()) WHERE name = 'every_minute';
SELECT task, count FROM jobs.tick() ORDER BY task;
SELECT job_type, queue, scheduled_for = date_trunc('minute', now()) AS for_the_occurrence
FROM jobs.job WHERE schedule_id IS NOT NULL AND queue = 'stats_b';
SELECT next_run_at > now() AS advanced, last_run_at = date_trunc('minute', now()) AS last_run_recorded
FROM jobs.schedule WHERE name = 'every_minute';

-- Finished longer than jobs.retention (7 days) ago: pruned with its history.
UPDATE jobs.job SET finished_at = now() - interval '8 days' WHERE queue = 'stats_a' AND state = 'completed';
SELECT task, count FROM jobs.tick() ORDER BY task;
SELECT state, count(*) FROM jobs.job WHERE queue = 'stats_a' GROUP BY state ORDER BY state;

-- Failed attempts, latest first, with each job's history.
SELECT job_type, queue, state, attempts, outcome, error,
       jsonb_path_query_array(history, '$[*].outcome') AS outcomes
FROM jobs.recent_failures WHERE queue LIKE 'stats_%';

ROLLBACK;
