-- Workers, part one: jobs.claim and jobs.extend_lease.
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

SELECT count(*) FROM jobs.enqueue_batch('work', ARRAY['{"n": 1}', '{"n": 2}', '{"n": 3}']::jsonb[], queue => 'claims');
SELECT count(*) FROM jobs.enqueue('urgent', queue => 'claims', priority => -1);
SELECT count(*) FROM jobs.enqueue('later', queue => 'claims', run_at => now() + interval '1 hour');

-- Lowest priority first, then run_at, then id; each claim is a new attempt
-- under a fresh lease token, until now() + lease.
SELECT job_type, payload, state, attempts, worker_id,
       lease_until = now() + interval '30 seconds' AS leased_30s, lease_token IS NOT NULL AS has_token,
       started_at = now() AS started_now
FROM jobs.claim('worker-1', 'claims', max_jobs => 2, lease => '30 seconds');

-- No lease given: jobs.default_lease (300 s).
SELECT job_type, payload, lease_until - now() AS lease FROM jobs.claim('worker-2', 'claims');

-- Only some job types.
SELECT count(*) FROM jobs.claim('worker-3', 'claims', 10, job_types => ARRAY['other']);
SELECT job_type, payload FROM jobs.claim('worker-3', 'claims', 10, job_types => ARRAY['work']);

-- Nothing else is due: the job for later waits for its run_at.
SELECT count(*) FROM jobs.claim('worker-4', 'claims', 10);
SELECT state, attempts FROM jobs.job WHERE job_type = 'later';

-- A worker still busy extends its lease: now() + lease.
SELECT id AS job_id, lease_token FROM jobs.job WHERE worker_id = 'worker-2' \gset
SELECT jobs.extend_lease(:job_id, :'lease_token', '1 hour') = now() + interval '1 hour' AS extended;
SELECT jobs.extend_lease(:job_id, :'lease_token') = now() + interval '300 seconds' AS extended_by_default;
SELECT jobs.extend_lease(:job_id, :'lease_token', '0 seconds');

-- Only the current token works.
SELECT jobs.extend_lease(:job_id, '00000000-0000-0000-0000-000000000000');
SELECT jobs.extend_lease(-1, :'lease_token');

-- Bad claims.
SELECT jobs.claim(NULL);
SELECT jobs.claim('w', max_jobs => 0);
SELECT jobs.claim('w', lease => '-1 second');
SELECT jobs.claim('w', queue => '');

ROLLBACK;
