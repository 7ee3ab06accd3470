-- jobs 0.2.0 to 0.3.0: ALTER EXTENSION jobs UPDATE TO '0.3.0'.
-- Hand-written. tests/upgrade.rs checks that a database updated by this
-- script has exactly the schema of a fresh 0.3.0 (pg_dump of both, compared,
-- and the tables pg_dump keeps) and keeps its jobs and schedules.
\echo Use "ALTER EXTENSION jobs UPDATE TO '0.3.0'" to load this file. \quit

-- Dumps keep the jobs, their history and the schedules (sql/schema.sql says
-- why): before 0.3.0 a pg_dump held none of their rows.
SELECT pg_catalog.pg_extension_config_dump('jobs.job', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_run', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_run_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule_id_seq', '');
