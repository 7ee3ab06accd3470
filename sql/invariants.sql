-- The job state machine's invariants, whatever code writes to jobs.job
-- (src/invariants.rs says why they are one function, and lists them):
-- queue and job type of 1 to 128 characters; 0 <= attempts <= max_attempts,
-- max_attempts >= 1; finished_at set exactly in the terminal states;
-- lease_token and lease_until set exactly while running; a running job is an
-- attempt (attempts >= 1, started_at and worker_id set).
CREATE FUNCTION jobs._job_row_valid(job jobs.job) RETURNS boolean
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'job_row_valid';

ALTER TABLE jobs.job ADD CONSTRAINT job_valid CHECK (jobs._job_row_valid(job.*));
