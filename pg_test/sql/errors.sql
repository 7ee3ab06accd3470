-- Errors: each SQLSTATE of the contract, with its message. Every function
-- checks its arguments itself (none is STRICT), and an error changes nothing.
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

-- 22023 invalid_parameter_value: a required argument is NULL ...
SELECT jobs.enqueue(NULL);
SELECT jobs.enqueue('t', NULL);
SELECT jobs.claim('w', NULL);
SELECT jobs.extend_lease(1, NULL);
SELECT jobs.cancel(NULL);
SELECT jobs.schedule('s', NULL, 'noop');
-- ... a name is empty or longer than 128 characters ...
SELECT jobs.enqueue(repeat('t', 129));
SELECT jobs.schedule(repeat('s', 129), '* * * * *', 'noop');
-- ... or a value is out of range.
SELECT jobs.enqueue('t', priority => NULL);
SELECT jobs.enqueue('t', max_attempts => -1);
SELECT jobs.enqueue('t', idempotency_key => '');
SELECT jobs.claim('w', max_jobs => -5);
SELECT jobs.claim('w', lease => '200 years');
SELECT jobs.next_run('0 0 31 4 *');
SELECT jobs.next_run('* * * * *', 'Nowhere/City');
SELECT jobs.next_run('* * * * *', 'UTC', '-infinity');

-- P0002 no_data_found: no such job or schedule.
SELECT jobs.complete(-1, gen_random_uuid());
SELECT jobs.fail(-1, gen_random_uuid(), 'e');
SELECT jobs.cancel(-1);
SELECT jobs.resume_schedule('missing');

-- 55000 object_not_in_prerequisite_state: the wrong state, or a token that is
-- not the job's current lease.
SELECT id AS job_id FROM jobs.enqueue('t', queue => 'errors') \gset
SELECT jobs.complete(:job_id, gen_random_uuid());
SELECT count(*) FROM jobs.claim('w', 'errors');
SELECT jobs.retry_now(:job_id);
SELECT jobs.complete(:job_id, gen_random_uuid());
SELECT count(*) FROM jobs.cancel(:job_id);
SELECT jobs.cancel(:job_id);

-- 42501 insufficient_privilege: PUBLIC may use nothing until granted.
CREATE ROLE jobs_regress_nobody;
SET LOCAL ROLE jobs_regress_nobody;
SELECT jobs.enqueue('t');
SELECT * FROM jobs.queue_stats;
RESET ROLE;
GRANT USAGE ON SCHEMA jobs TO jobs_regress_nobody;
GRANT EXECUTE ON FUNCTION jobs.enqueue TO jobs_regress_nobody;
GRANT SELECT ON jobs.queue_stats TO jobs_regress_nobody;
SET LOCAL ROLE jobs_regress_nobody;
SELECT job_type FROM jobs.enqueue('granted', queue => 'errors');
SELECT queue, queued, canceled FROM jobs.queue_stats WHERE queue = 'errors';
SELECT jobs.claim('w', 'errors');
SELECT count(*) FROM jobs.job;
RESET ROLE;

ROLLBACK;
