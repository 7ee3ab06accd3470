-- Tables, the state enum and the constraints that make the job state machine
-- impossible to break, whatever code writes to these tables.

-- queued:    waiting; claimable once run_at <= now(). Entered by enqueue, a
--            retryable fail, lease recovery (background worker) and retry_now.
-- running:   held by one worker under lease_token until lease_until. Entered
--            only by claim; left by complete, fail, cancel or lease recovery.
-- completed: terminal; entered only by complete with the current lease token.
-- failed:    terminal; fail with no attempts left (or not retryable), or a
--            lease that expired on the last attempt. Left only by retry_now.
-- canceled:  terminal; entered by cancel. Left only by retry_now.
CREATE TYPE jobs.job_state AS ENUM ('queued', 'running', 'completed', 'failed', 'canceled');

CREATE TABLE jobs.schedule (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name         text NOT NULL UNIQUE,
    cron         text NOT NULL,
    timezone     text NOT NULL DEFAULT 'UTC',
    job_type     text NOT NULL,
    payload      jsonb NOT NULL DEFAULT '{}',
    queue        text NOT NULL DEFAULT 'default',
    priority     int NOT NULL DEFAULT 0,
    -- NULL: jobs.default_max_attempts when the schedule fires
    max_attempts int,
    enabled      boolean NOT NULL DEFAULT true,
    next_run_at  timestamptz,
    last_run_at  timestamptz,
    created_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at   timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- false: an occurrence that comes while the schedule's previous job is
    -- still queued or running is skipped (next_run_at advances, no job)
    overlap      boolean NOT NULL DEFAULT true,
    -- occurrences skipped because of overlap false
    skipped_runs bigint NOT NULL DEFAULT 0,
    CONSTRAINT schedule_name_valid CHECK (pg_catalog.length(name) BETWEEN 1 AND 128),
    CONSTRAINT schedule_job_type_valid CHECK (pg_catalog.length(job_type) BETWEEN 1 AND 128),
    CONSTRAINT schedule_queue_valid CHECK (pg_catalog.length(queue) BETWEEN 1 AND 128),
    CONSTRAINT schedule_max_attempts_valid CHECK (max_attempts >= 1),
    CONSTRAINT schedule_enabled_has_next_run CHECK (NOT enabled OR next_run_at IS NOT NULL)
);

CREATE TABLE jobs.job (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    queue           text NOT NULL,
    job_type        text NOT NULL,
    payload         jsonb NOT NULL,
    state           jobs.job_state NOT NULL DEFAULT 'queued',
    priority        int NOT NULL DEFAULT 0,
    run_at          timestamptz NOT NULL DEFAULT pg_catalog.now(),
    attempts        int NOT NULL DEFAULT 0,
    max_attempts    int NOT NULL,
    lease_token     uuid,
    lease_until     timestamptz,
    worker_id       text,
    last_error      text,
    result          jsonb,
    idempotency_key text,
    -- No foreign key: unscheduling must not rewrite a schedule's history of
    -- jobs, and schedule ids are never reused.
    schedule_id     bigint,
    -- the cron occurrence a scheduled job was enqueued for
    scheduled_for   timestamptz,
    created_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    updated_at      timestamptz NOT NULL DEFAULT pg_catalog.now(),
    -- when the current (or last) attempt was claimed (its jobs.job_run row's)
    started_at      timestamptz,
    finished_at     timestamptz
    -- The state machine's invariants: one CHECK constraint, added by
    -- sql/invariants.sql once the function it calls exists.
);

-- The claim path: due queued jobs of one queue in claim order.
CREATE INDEX job_claim_idx ON jobs.job (queue, priority, run_at, id) WHERE state = 'queued';
-- Lease recovery: running jobs by expiry. Exactly the running jobs (see
-- sql/invariants.sql), but the predicate must not be `state = 'running'`:
-- complete, fail and extend_lease say `state = 'running'` beside `id = $1`,
-- and the planner, seeing few running jobs in the statistics, would scan every
-- running job through this index for each call instead of using the primary key.
CREATE INDEX job_lease_idx ON jobs.job (lease_until) WHERE lease_until IS NOT NULL;
-- No index of finished jobs: pruning sweeps the table's pages (jobs._prune).
-- Idempotent enqueue: ON CONFLICT on this index makes it race-free.
CREATE UNIQUE INDEX job_idempotency_key_idx ON jobs.job (idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- A schedule occurrence can never produce two jobs.
CREATE UNIQUE INDEX job_schedule_occurrence_idx ON jobs.job (schedule_id, scheduled_for)
    WHERE schedule_id IS NOT NULL;

-- The attempt history, jobs.job_run, is one row per finished attempt, written
-- in the transaction that finished it. An attempt that completed its job is
-- the job's last: its row is the completed job itself (the view below reads
-- it from jobs.job), so a completion writes no second row and no second index
-- entry. Every other ending (failed, lease expired, canceled while running)
-- is a row of jobs.job_attempt.
-- No foreign key to jobs.job: it would cost a lookup and a row lock on every
-- finish; pruning deletes a job's history with the job.
CREATE TABLE jobs.job_attempt (
    job_id      bigint NOT NULL,
    id          bigint GENERATED ALWAYS AS IDENTITY,
    attempt     int NOT NULL,
    worker_id   text,
    outcome     text NOT NULL,
    started_at  timestamptz NOT NULL,
    finished_at timestamptz NOT NULL,
    error       text,
    -- job_id first: the history of one job is one index range.
    PRIMARY KEY (job_id, id),
    -- 'completed': rows written before 0.3.0 whose job was gone by the update
    CONSTRAINT job_attempt_outcome_valid
        CHECK (outcome IN ('completed', 'failed', 'lease_expired', 'canceled'))
);

-- Where each sweeping duty goes on: pruning sweeps jobs.job's pages a slice
-- per pass (jobs._prune), from where the last pass, in any session, ended.
CREATE TABLE jobs.maintenance_cursor (
    duty      text PRIMARY KEY,
    next_page bigint NOT NULL
);
INSERT INTO jobs.maintenance_cursor (duty, next_page) VALUES ('prune', 0);

-- id orders a job's attempts as they ended; a completed attempt, always the
-- last, has none (NULL sorts after every id ascending, before them descending).
CREATE VIEW jobs.job_run AS
SELECT a.job_id, a.id, a.attempt, a.worker_id, a.outcome, a.started_at, a.finished_at, a.error
FROM jobs.job_attempt a
UNION ALL
SELECT j.id, NULL::bigint, j.attempts, j.worker_id, 'completed'::text, j.started_at, j.finished_at, NULL::text
FROM jobs.job j
WHERE j.state = 'completed';

-- Nobody writes the history by hand: the functions that end attempts write
-- it and pruning deletes it with its jobs. The triggers make a write to the
-- view a privileged statement like a write to a table (a role without the
-- privilege is refused with 42501, as for every table here), and refuse it.
CREATE FUNCTION jobs._job_run_read_only() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION 'jobs.job_run cannot be written: the functions that end attempts write it and pruning deletes it with its jobs'
        USING ERRCODE = 'feature_not_supported',
              HINT = 'The rows of attempts that did not complete are in jobs.job_attempt.';
END
$$;
CREATE TRIGGER job_run_read_only INSTEAD OF INSERT OR UPDATE OR DELETE ON jobs.job_run
    FOR EACH ROW EXECUTE FUNCTION jobs._job_run_read_only();

-- The tables hold the users' data, not the extension's: pg_dump and
-- pg_dumpall leave an extension's tables out of a dump unless they are
-- marked, and a restore would bring back an empty queue. Every row is kept
-- (no filter: a finished job is history someone may need), and the identity
-- sequences too, so restored ids continue past the old ones.
SELECT pg_catalog.pg_extension_config_dump('jobs.job', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_attempt', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_attempt_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule_id_seq', '');
