-- Schedules: jobs.schedule, unschedule, pause_schedule, resume_schedule, and
-- the cron engine itself, jobs.next_run.
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

-- next_run: the first firing strictly after `after`.
SELECT jobs.next_run('*/15 * * * *', 'UTC', '2026-01-01 10:07:00+00');
SELECT jobs.next_run('0 9 * * MON-FRI', 'America/New_York', '2026-03-06 15:00:00+00');   -- Friday 10:00 EST: next Monday
SELECT jobs.next_run('30 10 1 * *', 'UTC', '2026-01-31 12:00:00+00');                   -- 1st of the month
SELECT jobs.next_run('*/10 * * * * *', 'UTC', '2026-01-01 10:00:05+00');                -- 6 fields: seconds
SELECT jobs.next_run('@daily', 'Europe/Paris', '2026-06-01 12:00:00+00');
SELECT jobs.next_run('0 12 13 * FRI', 'UTC', '2026-02-01 00:00:00+00');                 -- the 13th OR a Friday (Vixie)
-- DST: 02:30 does not exist on 2026-03-29 in Paris (fires at 03:00 local,
-- the first instant after the gap); 02:30 happens twice on 2026-10-25 (fires once, the first time).
SELECT jobs.next_run('30 2 * * *', 'Europe/Paris', '2026-03-28 12:00:00+00');
SELECT jobs.next_run('30 2 * * *', 'Europe/Paris', '2026-10-24 12:00:00+00');
SELECT jobs.next_run('30 2 * * *', 'Europe/Paris', '2026-10-25 00:30:00+00');

-- Create a schedule: next_run_at is its next occurrence from now.
SELECT name, cron, timezone, job_type, payload, queue, enabled,
       next_run_at = jobs.next_run(cron, timezone, now()) AS next_run_at_computed, last_run_at
FROM jobs.schedule('nightly', '0 3 * * *', 'nightly_report', '{"full": true}',
                   timezone => 'Europe/Paris', queue => 'reports');

-- The same name replaces it.
SELECT name, cron, timezone, job_type, payload, priority
FROM jobs.schedule('nightly', '0 4 * * *', 'nightly_report', priority => 2);
SELECT count(*) FROM jobs.schedule WHERE name = 'nightly';

-- Pause: no next run; resume: the next occurrence from now (missed ones are skipped).
SELECT name, enabled, next_run_at FROM jobs.pause_schedule('nightly');
SELECT name, enabled, next_run_at = jobs.next_run(cron, timezone, now()) AS next_from_now
FROM jobs.resume_schedule('nightly');

-- Created paused.
SELECT name, enabled, next_run_at FROM jobs.schedule('someday', '0 0 1 1 *', 'noop', enabled => false);

-- Unschedule: true when it existed.
SELECT jobs.unschedule('someday');
SELECT jobs.unschedule('someday');

-- Overlap: by default every occurrence enqueues; with overlap => false an
-- occurrence that comes while the schedule's previous job is still queued or
-- running is skipped (next_run_at advances, no job). Occurrences are made due
-- here by moving next_run_at into the past; jobs.tick() fires them.
SELECT name, overlap FROM jobs.schedule('single', '0 * * * *', 'hourly', queue => 'single', overlap => false);
SELECT name, overlap FROM jobs.schedule('many', '0 * * * *', 'hourly', queue => 'many');
UPDATE jobs.schedule SET next_run_at = now() - interval '3 hours' WHERE name IN ('single', 'many');
SELECT task, count FROM jobs.tick() WHERE task = 'schedules_fired';
UPDATE jobs.schedule SET next_run_at = now() - interval '2 hours' WHERE name IN ('single', 'many');
SELECT task, count FROM jobs.tick() WHERE task = 'schedules_fired';   -- 'single' skips: its job is queued
SELECT name, next_run_at > now() AS advanced, last_run_at = now() - interval '3 hours' AS last_run_kept
FROM jobs.schedule WHERE name = 'single';
SELECT queue, count(*) AS jobs FROM jobs.job WHERE queue IN ('single', 'many') GROUP BY queue ORDER BY queue;
-- Once its job is finished, the next occurrence fires again.
SELECT (jobs.complete(c.id, c.lease_token)).state FROM jobs.claim('w', 'single') c;
UPDATE jobs.schedule SET next_run_at = now() - interval '1 hour' WHERE name = 'single';
SELECT task, count FROM jobs.tick() WHERE task = 'schedules_fired';
SELECT queue, state, count(*) AS jobs FROM jobs.job WHERE queue = 'single' GROUP BY queue, state ORDER BY state;
SELECT jobs.schedule('bad', '0 * * * *', 'noop', overlap => NULL);
SELECT jobs.unschedule('single'), jobs.unschedule('many');

-- The two pg_cron forms: the last day of the month, and every N seconds
-- from the previous firing.
SELECT jobs.next_run('0 12 $ * *', after => '2028-02-03 00:00:00+00') AS last_day_of_february;
SELECT jobs.next_run('30 23 L 4 *', 'Europe/Paris', '2026-01-01 00:00:00+00') AS last_day_of_april_in_paris;
SELECT jobs.next_run('10 seconds', after => '2026-01-01 10:00:03.5+00') AS ten_seconds_later;
SELECT name, cron, next_run_at - now() AS next_in FROM jobs.schedule('every-5-s', ' 5 Seconds ', 'beat');
SELECT jobs.unschedule('every-5-s');

-- Bad schedules change nothing.
SELECT jobs.schedule('bad', '61 * * * *', 'noop');
SELECT jobs.schedule('bad', '0 0 30 2 *', 'noop');
SELECT jobs.schedule('bad', '0 3 * * *', 'noop', timezone => 'Mars/Olympus_Mons');
SELECT jobs.schedule('', '0 3 * * *', 'noop');
SELECT jobs.pause_schedule('missing');
SELECT jobs.next_run('* * *');
SELECT jobs.next_run('0 0 1 1 * * 2030');
SELECT jobs.next_run('1,,2 * * * *');
SELECT jobs.next_run('0 0 ? * mon');
SELECT jobs.schedule('bad', '60 seconds', 'noop');
SELECT count(*) AS bad_schedules FROM jobs.schedule WHERE name IN ('bad', '');

ROLLBACK;
