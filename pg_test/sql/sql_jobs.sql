-- SQL jobs: jobs.enqueue_sql and jobs.schedule_sql, what they store, and how
-- they refuse bad input. The executors never see these jobs: the file runs
-- in one transaction that is rolled back (tests/sql_jobs.rs runs commands).
\set VERBOSITY verbose
\set SHOW_CONTEXT never
\set ON_ERROR_ROLLBACK on
SET TimeZone = 'UTC';
SET IntervalStyle = 'postgres';
BEGIN;
ALTER SEQUENCE jobs.job_id_seq RESTART WITH 1000001;
CREATE ROLE regress_sql_member LOGIN;
CREATE ROLE regress_sql_other LOGIN;
CREATE ROLE regress_sql_caller LOGIN IN ROLE regress_sql_member;
GRANT USAGE ON SCHEMA jobs TO regress_sql_caller;
GRANT EXECUTE ON FUNCTION jobs.enqueue_sql, jobs.schedule_sql TO regress_sql_caller;

-- An ordinary job of queue 'sql' and type 'sql': the command, where and as
-- whom it runs, its timeout in seconds (jobs.sql_timeout when none is given).
SELECT id, queue, job_type, state, max_attempts, priority, payload
FROM jobs.enqueue_sql('VACUUM ANALYZE pg_class');
SELECT payload->'timeout' AS timeout, max_attempts, priority, run_at > now() AS later
FROM jobs.enqueue_sql('SELECT 1', run_at => now() + interval '1 hour', timeout => '90 seconds',
                      max_attempts => 3, priority => -5);
SET jobs.sql_timeout = '10min';
SELECT payload->'timeout' AS timeout FROM jobs.enqueue_sql('SELECT 2');
RESET jobs.sql_timeout;
-- An idempotency key returns the job that has it.
SELECT (SELECT id FROM jobs.enqueue_sql('SELECT 3', idempotency_key => 'k'))
     = (SELECT id FROM jobs.enqueue_sql('SELECT 4', idempotency_key => 'k')) AS same_job;

-- Schedules: overlap defaults to false; the row shows the command and the rest.
SELECT name, cron, timezone, job_type, queue, max_attempts, overlap, enabled, payload
FROM jobs.schedule_sql('nightly-cleanup', '0 3 * * *', 'DELETE FROM pg_temp.t', timezone => 'Europe/Paris',
                       timeout => '5 minutes');
SELECT name, overlap, enabled, next_run_at IS NULL AS paused, payload->>'command' AS command
FROM jobs.schedule_sql('nightly-cleanup', '0 4 * * *', 'SELECT 1', overlap => true, enabled => false);
SELECT name, enabled FROM jobs.resume_schedule('nightly-cleanup');
SELECT jobs.unschedule('nightly-cleanup');
-- jobs.schedule: overlap is its last parameter, true by default.
SELECT overlap FROM jobs.schedule('plain', '@hourly', 'report');

-- Whom the command may run as: the caller, or a role it may SET ROLE to.
SET ROLE regress_sql_caller;
SELECT payload->>'run_as' AS run_as FROM jobs.enqueue_sql('SELECT 1');
SELECT payload->>'run_as' AS run_as FROM jobs.enqueue_sql('SELECT 1', run_as => 'regress_sql_member');
SELECT jobs.enqueue_sql('SELECT 1', run_as => 'regress_sql_other');
SELECT jobs.enqueue_sql('SELECT 1', run_as => 'postgres');
SELECT jobs.enqueue_sql('SELECT 1', run_as => 'regress_no_such_role');
SELECT jobs.schedule_sql('as-other', '@hourly', 'SELECT 1', run_as => 'regress_sql_other');
RESET ROLE;
SELECT jobs.enqueue_sql('SELECT 1', database => 'regress_no_such_database');

-- Bad arguments: 22023, and nothing is created.
SELECT jobs.enqueue_sql(NULL);
SELECT jobs.enqueue_sql('');
SELECT jobs.enqueue_sql('SELECT 1', timeout => '0 seconds');
SELECT jobs.enqueue_sql('SELECT 1', timeout => '200 years');
SELECT jobs.enqueue_sql('SELECT 1', max_attempts => 0);
SELECT jobs.enqueue_sql('SELECT 1', max_attempts => NULL);
SELECT jobs.enqueue_sql('SELECT 1', priority => NULL);
SELECT jobs.enqueue_sql('SELECT 1', run_at => 'infinity');
SELECT jobs.enqueue_sql('SELECT 1', idempotency_key => '');
SELECT jobs.schedule_sql(NULL, '@hourly', 'SELECT 1');
SELECT jobs.schedule_sql('bad', NULL, 'SELECT 1');
SELECT jobs.schedule_sql('bad', '0 0 30 2 *', 'SELECT 1');
SELECT jobs.schedule_sql('bad', '@hourly', 'SELECT 1', timezone => 'Mars/Olympus');
SELECT jobs.schedule_sql('bad', '@hourly', NULL);
SELECT jobs.schedule_sql('bad', '@hourly', 'SELECT 1', overlap => NULL);
-- Queue 'sql' belongs to the executors.
SELECT jobs.enqueue('sql', queue => 'sql');
SELECT jobs.enqueue_batch('sql', ARRAY['{}'::jsonb], queue => 'sql');
SELECT jobs.schedule('bad', '@hourly', 'sql', queue => 'sql');
SELECT count(*) FROM jobs.claim('w', 'sql');
SELECT count(*) AS sql_jobs_created_here FROM jobs.job WHERE queue = 'sql' AND id > 1000000;
SELECT count(*) AS bad_schedules FROM jobs.schedule WHERE name = 'bad' OR name = 'as-other';
ROLLBACK;
