-- jobs 0.2.0 to 0.3.0: ALTER EXTENSION jobs UPDATE TO '0.3.0'.
-- Hand-written. tests/upgrade.rs checks that a database updated by this
-- script has exactly the schema of a fresh 0.3.0 (pg_dump of both, compared,
-- and the tables pg_dump keeps) and keeps its jobs and schedules.
\echo Use "ALTER EXTENSION jobs UPDATE TO '0.3.0'" to load this file. \quit

-- The attempt history becomes a view (sql/schema.sql): a completed attempt is
-- read from its completed job, every other ending stays a row of the table,
-- now jobs.job_attempt. recent_failures is made again over the new names.
DROP VIEW jobs.recent_failures;
ALTER TABLE jobs.job_run RENAME TO job_attempt;
ALTER SEQUENCE jobs.job_run_id_seq RENAME TO job_attempt_id_seq;
ALTER INDEX jobs.job_run_pkey RENAME TO job_attempt_pkey;
ALTER TABLE jobs.job_attempt RENAME CONSTRAINT job_run_outcome_valid TO job_attempt_outcome_valid;
-- PostgreSQL 18 names each NOT NULL constraint after its table: they take
-- the new name, as a fresh install names them.
DO $$
DECLARE
    c record;
BEGIN
    FOR c IN SELECT con.conname FROM pg_catalog.pg_constraint con
             WHERE con.conrelid = 'jobs.job_attempt'::pg_catalog.regclass
               AND con.conname LIKE 'job\_run\_%\_not\_null'
    LOOP
        EXECUTE pg_catalog.format('ALTER TABLE jobs.job_attempt RENAME CONSTRAINT %I TO %I', c.conname,
                                  'job_attempt_' || pg_catalog.substr(c.conname, 9));
    END LOOP;
END
$$;
-- What these rows said, the completed jobs now say.
DELETE FROM jobs.job_attempt a
USING jobs.job j
WHERE a.job_id = j.id AND a.outcome = 'completed' AND j.state = 'completed' AND a.attempt = j.attempts;
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

-- Jobs whose latest failed attempt (an error from the worker, or a lease that
-- expired) is still in the history, latest first, with every attempt of the
-- job. Pruning bounds it to jobs.retention after the job finished. It reads
-- jobs.job_run in full: for people and dashboards, not for hot paths.
CREATE VIEW jobs.recent_failures AS
SELECT j.id AS job_id,
       j.queue,
       j.job_type,
       j.state,
       j.attempts,
       j.max_attempts,
       f.finished_at AS failed_at,
       f.outcome,
       f.error,
       (SELECT jsonb_agg(jsonb_build_object('attempt', r.attempt, 'outcome', r.outcome,
                                            'worker_id', r.worker_id, 'started_at', r.started_at,
                                            'finished_at', r.finished_at, 'error', r.error)
                         ORDER BY r.attempt, r.id)
        FROM jobs.job_run r
        WHERE r.job_id = j.id) AS history
FROM (SELECT DISTINCT ON (r.job_id) r.job_id, r.finished_at, r.outcome, r.error
      FROM jobs.job_attempt r
      WHERE r.outcome IN ('failed', 'lease_expired')
      ORDER BY r.job_id, r.finished_at DESC, r.id DESC) f
JOIN jobs.job j ON j.id = f.job_id
ORDER BY f.finished_at DESC, j.id DESC;

-- Dumps keep the jobs, their history and the schedules (sql/schema.sql says
-- why): before 0.3.0 a pg_dump held none of their rows.
SELECT pg_catalog.pg_extension_config_dump('jobs.job', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_attempt', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.job_attempt_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('jobs.schedule_id_seq', '');

-- Schedules may skip an occurrence while their previous job is still queued
-- or running: overlap false (jobs.schedule's new last parameter).
ALTER TABLE jobs.schedule ADD COLUMN overlap boolean NOT NULL DEFAULT true;

DROP FUNCTION jobs.schedule(text, text, text, jsonb, text, text, int, int, boolean);
CREATE FUNCTION jobs._save_schedule(name text, cron text, timezone text, job_type text, payload jsonb, queue text,
                                    priority int, max_attempts int, enabled boolean, overlap boolean)
RETURNS jobs.schedule
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    next_at timestamptz := jobs.next_run(_save_schedule.cron, _save_schedule.timezone, now());
    saved jobs.schedule;
BEGIN
    INSERT INTO jobs.schedule AS s (name, cron, timezone, job_type, payload, queue, priority,
                                    max_attempts, enabled, next_run_at, overlap)
    VALUES (_save_schedule.name, _save_schedule.cron, _save_schedule.timezone, _save_schedule.job_type,
            _save_schedule.payload, _save_schedule.queue, _save_schedule.priority, _save_schedule.max_attempts,
            _save_schedule.enabled, CASE WHEN _save_schedule.enabled THEN next_at END, _save_schedule.overlap)
    ON CONFLICT (name) DO UPDATE
    SET cron = EXCLUDED.cron, timezone = EXCLUDED.timezone, job_type = EXCLUDED.job_type,
        payload = EXCLUDED.payload, queue = EXCLUDED.queue, priority = EXCLUDED.priority,
        max_attempts = EXCLUDED.max_attempts, enabled = EXCLUDED.enabled,
        next_run_at = EXCLUDED.next_run_at, overlap = EXCLUDED.overlap, updated_at = now()
    RETURNING * INTO saved;
    PERFORM jobs._wake_worker();
    RETURN saved;
END
$$;
CREATE FUNCTION jobs.schedule(
    name text,
    cron text,
    job_type text,
    payload jsonb DEFAULT '{}',
    timezone text DEFAULT 'UTC',
    queue text DEFAULT 'default',
    priority int DEFAULT 0,
    max_attempts int DEFAULT NULL,
    enabled boolean DEFAULT true,
    overlap boolean DEFAULT true
) RETURNS jobs.schedule
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_name('name', schedule.name);
    PERFORM jobs._check_not_null('cron', schedule.cron);
    PERFORM jobs._check_not_null('timezone', schedule.timezone);
    PERFORM jobs._check_not_null('enabled', schedule.enabled);
    PERFORM jobs._check_not_null('overlap', schedule.overlap);
    PERFORM jobs._check_enqueue(schedule.job_type, schedule.queue, NULL, schedule.priority, schedule.max_attempts);
    PERFORM jobs._check_not_null('payload', schedule.payload);
    -- _save_schedule validates the expression and zone, even for a disabled schedule.
    RETURN jobs._save_schedule(schedule.name, schedule.cron, schedule.timezone, schedule.job_type,
                               schedule.payload, schedule.queue, schedule.priority, schedule.max_attempts,
                               schedule.enabled, schedule.overlap);
END
$$;
REVOKE ALL ON FUNCTION jobs.schedule(text, text, text, jsonb, text, text, int, int, boolean, boolean) FROM PUBLIC;





-- SQL jobs (sql/sql_jobs.sql, src/executor/): queue 'sql' is theirs alone.
ALTER TABLE jobs.schedule ADD COLUMN skipped_runs bigint NOT NULL DEFAULT 0;

-- With the worker running, it sends the notifications of producers' commits
-- (src/notify.rs): every function that announced with pg_notify calls this.
CREATE FUNCTION jobs._announce(queue anyelement) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'announce_wrapper';
CREATE OR REPLACE FUNCTION jobs._check_enqueue(job_type text, queue text, run_at timestamptz, priority int, max_attempts int) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_name('job_type', job_type);
    PERFORM jobs._check_name('queue', queue);
    IF queue = 'sql' THEN
        PERFORM jobs._invalid('queue "sql" is reserved for SQL jobs: use jobs.enqueue_sql or jobs.schedule_sql');
    END IF;
    PERFORM jobs._check_not_null('priority', priority);
    IF NOT isfinite(run_at) THEN
        PERFORM jobs._invalid(format('run_at must be a finite timestamp, not %s', run_at));
    END IF;
    IF max_attempts < 1 THEN
        PERFORM jobs._invalid(format('max_attempts must be at least 1, not %s', max_attempts));
    END IF;
END
$$;
-- Every call of jobs.enqueue but the common one (src/enqueue.rs takes valid
-- arguments without an idempotency key itself): refuses bad arguments with
-- the contract's errors, and runs the idempotent insert.
CREATE FUNCTION jobs._enqueue(
    job_type text,
    payload jsonb,
    queue text,
    run_at timestamptz,
    priority int,
    max_attempts int,
    idempotency_key text
) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    inserted jobs.job;
BEGIN
    IF NOT coalesce(jobs._is_name(_enqueue.job_type) AND jobs._is_name(_enqueue.queue) AND _enqueue.queue <> 'sql'
            AND _enqueue.priority IS NOT NULL AND _enqueue.payload IS NOT NULL
            AND coalesce(_enqueue.max_attempts >= 1, true) AND coalesce(isfinite(_enqueue.run_at), true)
            AND coalesce(_enqueue.idempotency_key <> '' AND length(_enqueue.idempotency_key) <= 255, true), false)
    THEN
        PERFORM jobs._check_enqueue(_enqueue.job_type, _enqueue.queue, _enqueue.run_at, _enqueue.priority,
                                    _enqueue.max_attempts);
        PERFORM jobs._check_not_null('payload', _enqueue.payload);
        -- Keys live in a btree, whose entries must stay under ~2.7 kB.
        IF _enqueue.idempotency_key = '' THEN
            PERFORM jobs._invalid('idempotency_key must not be empty');
        END IF;
        PERFORM jobs._invalid(format('idempotency_key %s is longer than 255 characters',
                                     jobs._quote(_enqueue.idempotency_key)));
    END IF;

    -- ON CONFLICT waits for a concurrent enqueuer of the same key to commit,
    -- then the SELECT (a new snapshot) sees its job. The loop only repeats
    -- when that job was deleted in between.
    FOR attempt IN 1..3 LOOP
        INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts, idempotency_key)
        VALUES (_enqueue.queue, _enqueue.job_type, _enqueue.payload, _enqueue.priority,
                coalesce(_enqueue.run_at, now()),
                coalesce(_enqueue.max_attempts, jobs._default_max_attempts()),
                _enqueue.idempotency_key)
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING * INTO inserted;
        IF FOUND THEN
            PERFORM jobs._queued('jobs.job', inserted.queue, inserted.priority, inserted.run_at, inserted.id);
            RETURN inserted;
        END IF;

        SELECT * INTO inserted FROM jobs.job j WHERE j.idempotency_key = _enqueue.idempotency_key;
        IF FOUND THEN
            RETURN inserted;
        END IF;
    END LOOP;
    RAISE EXCEPTION USING ERRCODE = 'serialization_failure',
        MESSAGE = format('could not enqueue with idempotency_key %s: its job keeps being deleted',
                         jobs._quote(_enqueue.idempotency_key));
END
$$;

-- Compiled (src/enqueue.rs): the common call inserts through a plan kept for
-- the session; every other goes to jobs._enqueue. Not STRICT: null arguments
-- get the contract's errors.
CREATE OR REPLACE FUNCTION jobs.enqueue(
    job_type text,
    payload jsonb DEFAULT '{}',
    queue text DEFAULT 'default',
    run_at timestamptz DEFAULT NULL,
    priority int DEFAULT 0,
    max_attempts int DEFAULT NULL,
    idempotency_key text DEFAULT NULL
) RETURNS jobs.job
LANGUAGE c VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'enqueue';
CREATE OR REPLACE FUNCTION jobs.enqueue_batch(
    job_type text,
    payloads jsonb[],
    queue text DEFAULT 'default',
    run_at timestamptz DEFAULT NULL,
    priority int DEFAULT 0,
    max_attempts int DEFAULT NULL
) RETURNS SETOF jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    due_at timestamptz := coalesce(enqueue_batch.run_at, now());
    attempts_allowed int := coalesce(enqueue_batch.max_attempts, jobs._default_max_attempts());
BEGIN
    PERFORM jobs._check_enqueue(enqueue_batch.job_type, enqueue_batch.queue, enqueue_batch.run_at,
                                enqueue_batch.priority, enqueue_batch.max_attempts);
    PERFORM jobs._check_not_null('payloads', enqueue_batch.payloads);
    IF array_position(enqueue_batch.payloads, NULL) IS NOT NULL THEN
        PERFORM jobs._invalid(format('payloads must not contain null (element %s is null)',
                                     array_position(enqueue_batch.payloads, NULL)));
    END IF;

    -- Ids follow the payloads' order, and so do the returned rows.
    RETURN QUERY
    WITH inserted AS (
        INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts)
        SELECT enqueue_batch.queue, enqueue_batch.job_type, p.payload,
               enqueue_batch.priority, due_at, attempts_allowed
        FROM unnest(enqueue_batch.payloads) WITH ORDINALITY AS p (payload, ord)
        ORDER BY p.ord
        RETURNING *
    )
    SELECT * FROM inserted ORDER BY id;

    -- Every job of the batch has this priority and run_at: a key with the
    -- least id is at or below them all.
    IF FOUND THEN
        PERFORM jobs._queued('jobs.job', enqueue_batch.queue, enqueue_batch.priority, due_at,
                             '-9223372036854775808'::bigint);
    END IF;
END
$$;
CREATE OR REPLACE FUNCTION jobs.fail(
    job_id bigint,
    lease_token uuid,
    error text,
    retry_in interval DEFAULT NULL,
    retryable boolean DEFAULT true
) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off  -- plans outlive the statistics they were made with: see src/claim.rs
AS $$
#variable_conflict use_column
DECLARE
    failed_job jobs.job;
BEGIN
    IF NOT coalesce(fail.job_id IS NOT NULL AND fail.lease_token IS NOT NULL AND fail.error IS NOT NULL
            AND fail.retryable IS NOT NULL
            AND coalesce(fail.retry_in >= interval '0' AND fail.retry_in <= interval '100 years', true), false)
    THEN
        PERFORM jobs._check_not_null('job_id', fail.job_id);
        PERFORM jobs._check_not_null('lease_token', fail.lease_token);
        PERFORM jobs._check_not_null('error', fail.error);
        PERFORM jobs._check_not_null('retryable', fail.retryable);
        IF fail.retry_in < interval '0' THEN
            PERFORM jobs._invalid(format('retry_in must not be negative, not %s', jobs._quote(fail.retry_in::text)));
        END IF;
        PERFORM jobs._invalid(format('retry_in %s is longer than 100 years', jobs._quote(fail.retry_in::text)));
    END IF;

    -- One statement for the job and its history row: each statement a
    -- function runs costs an executor start and a snapshot.
    WITH ended AS (
        UPDATE jobs.job j
        SET state = CASE WHEN fail.retryable AND j.attempts < j.max_attempts
                         THEN 'queued' ELSE 'failed' END::jobs.job_state,
            run_at = CASE WHEN fail.retryable AND j.attempts < j.max_attempts
                          THEN now() + coalesce(fail.retry_in, jobs._backoff(j.attempts))
                          ELSE j.run_at END,
            finished_at = CASE WHEN fail.retryable AND j.attempts < j.max_attempts
                               THEN NULL ELSE now() END,
            last_error = fail.error,
            lease_token = NULL,
            lease_until = NULL,
            updated_at = now()
        WHERE j.id = fail.job_id
          AND j.state = 'running'
          AND j.lease_token = fail.lease_token
        RETURNING j.*
    ), history AS (
        INSERT INTO jobs.job_attempt (job_id, attempt, worker_id, outcome, started_at, finished_at, error)
        SELECT e.id, e.attempts, e.worker_id, 'failed', e.started_at, e.updated_at, fail.error FROM ended e
    )
    SELECT * INTO failed_job FROM ended;
    IF NOT FOUND THEN
        PERFORM jobs._raise_not_held(fail.job_id);
    END IF;
    IF failed_job.state = 'queued' THEN
        PERFORM jobs._queued('jobs.job', failed_job.queue, failed_job.priority, failed_job.run_at, failed_job.id);
    END IF;
    RETURN failed_job;
END
$$;
CREATE OR REPLACE FUNCTION jobs._recover_leases(batch_size int) RETURNS bigint
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off  -- plans outlive the statistics they were made with: see src/claim.rs
AS $$
DECLARE
    recovered bigint;
BEGIN
    WITH moved AS (
        UPDATE jobs.job j
        SET state = CASE WHEN j.attempts < j.max_attempts THEN 'queued' ELSE 'failed' END::jobs.job_state,
            run_at = CASE WHEN j.attempts < j.max_attempts THEN now() ELSE j.run_at END,
            finished_at = CASE WHEN j.attempts < j.max_attempts THEN NULL ELSE now() END,
            last_error = 'lease expired',
            lease_token = NULL,
            lease_until = NULL,
            updated_at = now()
        WHERE j.id = ANY (ARRAY(
            SELECT e.id FROM jobs.job e
            WHERE e.state = 'running' AND e.lease_until < now()
            ORDER BY e.lease_until
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED))
        RETURNING j.id, j.attempts, j.worker_id, j.started_at, j.queue, j.state, j.priority, j.run_at
    ), history AS (
        INSERT INTO jobs.job_attempt (job_id, attempt, worker_id, outcome, started_at, finished_at, error)
        SELECT m.id, m.attempts, m.worker_id, 'lease_expired', m.started_at, now(), 'lease expired'
        FROM moved m
    )
    SELECT count(*), count(jobs._queued('jobs.job', m.queue, m.priority, m.run_at, m.id)) FILTER (WHERE m.state = 'queued')
    INTO recovered
    FROM moved m;
    RETURN recovered;
END
$$;
CREATE OR REPLACE FUNCTION jobs._notify_due(since timestamptz) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(jobs._announce(q.queue))
    FROM (SELECT DISTINCT j.queue FROM jobs.job j
          WHERE j.state = 'queued' AND j.run_at > since AND j.run_at <= now()
            AND j.run_at > j.updated_at) q
$$;
-- A claim's lease token (src/claim.rs): a random UUID, as unguessable as
-- gen_random_uuid's, cheaper to make.
CREATE FUNCTION jobs._lease_token() RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'lease_token';
-- Claims start where each queue's claimable work starts (src/position.rs).
CREATE FUNCTION jobs._claim_raise(ticket bigint, priority int, run_at timestamptz, id bigint) RETURNS boolean
VOLATILE PARALLEL UNSAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'claim_raise_wrapper';
CREATE FUNCTION jobs._claim_from_priority(relation regclass, queue text, ticket bigint) RETURNS int
LANGUAGE c STABLE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'claim_from_priority';
CREATE FUNCTION jobs._claim_from_run_at(relation regclass, queue text, ticket bigint) RETURNS timestamptz
LANGUAGE c STABLE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'claim_from_run_at';
CREATE FUNCTION jobs._claim_from_id(relation regclass, queue text, ticket bigint) RETURNS bigint
LANGUAGE c STABLE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'claim_from_id';

CREATE FUNCTION jobs._queued(relation regclass, queue text, priority int, run_at timestamptz, id bigint)
RETURNS void
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'queued';

CREATE FUNCTION jobs._lower_position(relation regclass, queue text, priority int, run_at timestamptz, id bigint)
RETURNS boolean
LANGUAGE c VOLATILE STRICT PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'lower_position';

-- The background worker, every few seconds: each queue's first queued row,
-- by a walk of job_claim_idx from one queue to the next, and a position
-- above it lowered to it.
CREATE FUNCTION jobs._lower_positions() RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off  -- plans outlive the statistics they were made with: see src/claim.rs
AS $$
    WITH RECURSIVE head AS (
        (SELECT j.queue, j.priority, j.run_at, j.id FROM jobs.job j
         WHERE j.state = 'queued'
         ORDER BY j.queue, j.priority, j.run_at, j.id LIMIT 1)
        UNION ALL
        SELECT n.queue, n.priority, n.run_at, n.id
        FROM head h
        CROSS JOIN LATERAL (
            SELECT j.queue, j.priority, j.run_at, j.id FROM jobs.job j
            WHERE j.state = 'queued' AND j.queue > h.queue
            ORDER BY j.queue, j.priority, j.run_at, j.id LIMIT 1) n
    )
    SELECT count(*) FILTER (WHERE jobs._lower_position('jobs.job', h.queue, h.priority, h.run_at, h.id))
    FROM head h
$$;

-- Why a claim's arguments are refused, in the order of the checks; called
-- only when jobs.claim found them invalid. Never returns.
CREATE FUNCTION jobs._refuse_claim(worker_id text, queue text, max_jobs int, lease interval) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._lease_or_default(lease);
    PERFORM jobs._check_not_null('worker_id', worker_id);
    PERFORM jobs._check_name('queue', queue);
    IF queue = 'sql' THEN
        -- SQL jobs run only in the extension's executors (sql/sql_jobs.sql).
        PERFORM jobs._invalid('queue "sql" is reserved for SQL jobs, which only the extension''s executors take');
    END IF;
    PERFORM jobs._invalid(format('max_jobs must be at least 1, not %s', coalesce(max_jobs::text, 'null')));
END
$$;

-- Compiled (src/claim.rs): the claim statement through a plan kept for the
-- session. Not STRICT: null arguments get the contract's errors.
CREATE OR REPLACE FUNCTION jobs.claim(
    worker_id text,
    queue text DEFAULT 'default',
    max_jobs int DEFAULT 1,
    lease interval DEFAULT NULL,
    job_types text[] DEFAULT NULL
) RETURNS SETOF jobs.job
LANGUAGE c VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'claim';

CREATE OR REPLACE FUNCTION jobs.cancel(job_id bigint) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job jobs.job;
BEGIN
    job := jobs._lock_job(cancel.job_id, '{queued,running}', 'queued or running');

    -- A running attempt ends here: record it. Its worker's token stops
    -- working because lease_token is cleared.
    IF job.state = 'running' THEN
        INSERT INTO jobs.job_attempt (job_id, attempt, worker_id, outcome, started_at, finished_at)
        VALUES (job.id, job.attempts, job.worker_id, 'canceled', job.started_at, now());
        -- The command of a running SQL job stops as soon as the worker sees this.
        IF job.queue = 'sql' THEN
            PERFORM jobs._wake_worker();
        END IF;
    END IF;
    UPDATE jobs.job j
    SET state = 'canceled', lease_token = NULL, lease_until = NULL,
        finished_at = now(), updated_at = now()
    WHERE j.id = cancel.job_id
    RETURNING * INTO job;
    RETURN job;
END
$$;
CREATE OR REPLACE FUNCTION jobs.retry_now(job_id bigint) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    job jobs.job;
BEGIN
    job := jobs._lock_job(retry_now.job_id, '{failed,canceled,queued}', 'failed, canceled or queued');

    -- A finished job starts over with all its attempts; a queued one only
    -- stops waiting.
    UPDATE jobs.job j
    SET state = 'queued',
        attempts = CASE WHEN job.state = 'queued' THEN j.attempts ELSE 0 END,
        run_at = CASE WHEN job.state = 'queued' THEN least(j.run_at, now()) ELSE now() END,
        finished_at = NULL,
        updated_at = now()
    WHERE j.id = retry_now.job_id
    RETURNING * INTO job;
    PERFORM jobs._queued('jobs.job', job.queue, job.priority, job.run_at, job.id);
    IF job.queue = 'sql' THEN
        PERFORM jobs._wake_worker();  -- its executor starts at once
    END IF;
    RETURN job;
END
$$;
CREATE OR REPLACE FUNCTION jobs._next_wakeup() RETURNS timestamptz
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT least((SELECT min(s.next_run_at) FROM jobs.schedule s
                  WHERE s.enabled AND s.next_run_at > now()),
                 (SELECT min(j.lease_until) FROM jobs.job j
                  WHERE j.state = 'running' AND j.lease_until > now()),
                 -- delayed SQL jobs: the worker starts their executors
                 (SELECT min(j.run_at) FROM jobs.job j
                  WHERE j.state = 'queued' AND j.queue = 'sql' AND j.run_at > now()))
$$;
-- Returns the occurrences skipped too (tick() shows them).
DROP FUNCTION jobs._fire_schedules();
CREATE FUNCTION jobs._fire_schedules(OUT fired bigint, OUT skipped bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    due jobs.schedule;
    skip boolean;
BEGIN
    fired := 0;
    skipped := 0;
    FOR due IN
        SELECT * FROM jobs.schedule s
        WHERE s.enabled AND s.next_run_at <= now()
        ORDER BY s.next_run_at
        FOR UPDATE SKIP LOCKED
    LOOP
        skip := NOT due.overlap AND (SELECT j.state IN ('queued', 'running') FROM jobs.job j
                                        WHERE j.schedule_id = due.id
                                        ORDER BY j.scheduled_for DESC LIMIT 1) IS TRUE;
        -- One schedule that cannot enqueue (a user trigger, a full disk
        -- quota) must not stop the others: each gets its own subtransaction.
        BEGIN
            IF skip THEN
                skipped := skipped + 1;
            ELSE
                INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts,
                                      schedule_id, scheduled_for)
                VALUES (due.queue, due.job_type, due.payload, due.priority, due.next_run_at,
                        coalesce(due.max_attempts, jobs._default_max_attempts()), due.id, due.next_run_at)
                ON CONFLICT (schedule_id, scheduled_for) WHERE schedule_id IS NOT NULL DO NOTHING;
                IF FOUND THEN
                    fired := fired + 1;
                    -- due.next_run_at has passed: announced too.
                    PERFORM jobs._queued('jobs.job', due.queue, due.priority, due.next_run_at,
                                         '-9223372036854775808'::bigint);
                END IF;
            END IF;
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'schedule % could not enqueue its job for %: %',
                jobs._quote(due.name), due.next_run_at, SQLERRM;
        END;
        BEGIN
            UPDATE jobs.schedule s
            SET last_run_at = CASE WHEN skip THEN s.last_run_at ELSE due.next_run_at END,
                skipped_runs = s.skipped_runs + CASE WHEN skip THEN 1 ELSE 0 END,
                next_run_at = jobs.next_run(due.cron, due.timezone, greatest(now(), due.next_run_at)),
                updated_at = now()
            WHERE s.id = due.id;
        EXCEPTION WHEN OTHERS THEN
            -- No next occurrence can be computed: stop rather than refire.
            RAISE WARNING 'schedule % paused: %', jobs._quote(due.name), SQLERRM;
            UPDATE jobs.schedule s
            SET enabled = false, next_run_at = NULL, last_run_at = due.next_run_at, updated_at = now()
            WHERE s.id = due.id;
        END;
    END LOOP;
END
$$;
CREATE FUNCTION jobs._sql_timeout() RETURNS interval
STRICT STABLE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'sql_timeout_wrapper';

-- Argument checks of jobs.enqueue_sql (22023), before its privilege checks.
CREATE FUNCTION jobs._check_sql_job(command text, timeout interval, run_at timestamptz, max_attempts int,
                                    priority int, idempotency_key text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_not_null('command', command);
    IF command = '' THEN
        PERFORM jobs._invalid('command must not be empty');
    END IF;
    IF timeout <= interval '0' THEN
        PERFORM jobs._invalid(format('timeout must be positive, not %s', jobs._quote(timeout::text)));
    ELSIF timeout > interval '100 years' THEN
        PERFORM jobs._invalid(format('timeout %s is longer than 100 years', jobs._quote(timeout::text)));
    END IF;
    PERFORM jobs._check_not_null('max_attempts', max_attempts);
    PERFORM jobs._check_enqueue('sql', 'default', run_at, priority, max_attempts);
    IF idempotency_key = '' THEN
        PERFORM jobs._invalid('idempotency_key must not be empty');
    ELSIF length(idempotency_key) > 255 THEN
        PERFORM jobs._invalid(format('idempotency_key %s is longer than 255 characters', jobs._quote(idempotency_key)));
    END IF;
END
$$;

-- The rest of jobs.schedule_sql's argument checks, the cron expression and
-- time zone included.
CREATE FUNCTION jobs._check_sql_schedule(name text, cron text, timezone text, overlap boolean, enabled boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_name('name', name);
    PERFORM jobs._check_not_null('cron', cron);
    PERFORM jobs._check_not_null('timezone', timezone);
    PERFORM jobs._check_not_null('overlap', overlap);
    PERFORM jobs._check_not_null('enabled', enabled);
    PERFORM jobs.next_run(cron, timezone, now());
END
$$;

-- The payload of a SQL job and of a SQL schedule; timeout in seconds.
CREATE FUNCTION jobs._sql_payload(command text, database text, run_as text, timeout interval) RETURNS jsonb
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT jsonb_build_object('command', command, 'database', database, 'run_as', run_as,
                              'timeout', extract(epoch FROM coalesce(timeout, jobs._sql_timeout()))::float8)
$$;

CREATE FUNCTION jobs._insert_sql_job(
    payload jsonb,
    run_at timestamptz,
    max_attempts int,
    priority int,
    idempotency_key text
) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    inserted jobs.job;
BEGIN
    IF _insert_sql_job.idempotency_key IS NOT NULL THEN
        INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts, idempotency_key)
        VALUES ('sql', 'sql', _insert_sql_job.payload, _insert_sql_job.priority,
                coalesce(_insert_sql_job.run_at, now()), _insert_sql_job.max_attempts,
                _insert_sql_job.idempotency_key)
        ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
        RETURNING * INTO inserted;
        IF NOT FOUND THEN
            -- ON CONFLICT waited for a concurrent enqueuer of the key; its job is visible now.
            SELECT * INTO inserted FROM jobs.job j WHERE j.idempotency_key = _insert_sql_job.idempotency_key;
            RETURN inserted;
        END IF;
    ELSE
        INSERT INTO jobs.job (queue, job_type, payload, priority, run_at, max_attempts)
        VALUES ('sql', 'sql', _insert_sql_job.payload, _insert_sql_job.priority,
                coalesce(_insert_sql_job.run_at, now()), _insert_sql_job.max_attempts)
        RETURNING * INTO inserted;
    END IF;
    PERFORM jobs._wake_worker();
    RETURN inserted;
END
$$;

-- Why a SQL job cannot start now, in the job's error format, or NULL: the
-- background worker asks before starting an executor, so that what
-- changed since the job was created (a dropped role or database, a revoked
-- CONNECT) fails the job with PostgreSQL's own words rather than an
-- executor that dies while connecting.
CREATE FUNCTION jobs._sql_job_refusal(database text, run_as text, login_required boolean) RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN r.oid IS NULL THEN format('42704: role "%s" does not exist', run_as)
        WHEN login_required AND NOT r.rolcanlogin THEN format('28000: role "%s" is not permitted to log in', run_as)
        WHEN d.oid IS NULL THEN format('3D000: database "%s" does not exist', database)
        WHEN NOT d.datallowconn THEN format('55000: database "%s" is not currently accepting connections', database)
        WHEN NOT has_database_privilege(r.oid, d.oid, 'CONNECT')
            THEN format('42501: permission denied for database "%s"', database)
    END
    FROM (SELECT) AS one
    LEFT JOIN pg_roles r ON r.rolname = run_as
    LEFT JOIN pg_database d ON d.datname = database
$$;

-- The background worker takes due SQL jobs for its free executors: jobs.claim
-- without its refusal of queue 'sql'.
CREATE FUNCTION jobs._claim_sql(max_jobs int, lease interval) RETURNS SETOF jobs.job
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE jobs.job j
    SET state = 'running',
        attempts = j.attempts + 1,
        lease_token = gen_random_uuid(),
        lease_until = now() + lease,
        worker_id = 'jobs sql executor',
        started_at = now(),
        updated_at = now()
    WHERE j.id = ANY (ARRAY(
        SELECT p.id
        FROM jobs.job p
        WHERE p.state = 'queued' AND p.queue = 'sql' AND p.run_at <= now()
        ORDER BY p.priority, p.run_at, p.id
        LIMIT max_jobs
        FOR UPDATE SKIP LOCKED))
    RETURNING j.*
$$;

-- Extends the leases of the SQL jobs whose commands are running; returns the
-- ids still held. A job missing from the answer was canceled (or its lease
-- was lost): its command must stop.
CREATE FUNCTION jobs._hold_sql(job_ids bigint[], lease_tokens uuid[], lease interval) RETURNS SETOF bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE jobs.job j
    SET lease_until = now() + lease
    WHERE j.id = ANY (job_ids) AND j.state = 'running'
      AND (j.id, j.lease_token) IN (SELECT * FROM unnest(job_ids, lease_tokens))
    RETURNING j.id
$$;

-- Ends the attempt of a SQL job with its command's outcome: completed with
-- `result`, or failed with `error` (retried while attempts remain and
-- `retryable`). False when the job is no longer held under this token
-- (canceled while its command ran): nothing changes then.
CREATE FUNCTION jobs._finish_sql(job_id bigint, lease_token uuid, result jsonb, error text, retryable boolean)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF error IS NULL THEN
        PERFORM jobs.complete(job_id, lease_token, result);
    ELSE
        PERFORM jobs.fail(job_id, lease_token, error, retryable => retryable);
    END IF;
    RETURN true;
EXCEPTION WHEN object_not_in_prerequisite_state OR no_data_found THEN
    RETURN false;
END
$$;

-- No executor could be started for a claimed SQL job (max_worker_processes
-- reached): it goes back to the queue as it was, no attempt made.
CREATE FUNCTION jobs._release_sql(job_id bigint, lease_token uuid) RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    UPDATE jobs.job j
    SET state = 'queued', attempts = j.attempts - 1, lease_token = NULL, lease_until = NULL,
        updated_at = now()
    WHERE j.id = _release_sql.job_id AND j.state = 'running' AND j.lease_token = _release_sql.lease_token
$$;

-- Called once when the background worker starts: SQL jobs still running
-- belonged to executors of an earlier worker, which were stopped. Each ends
-- its attempt now, as a failure with that reason, instead of waiting out its lease.
CREATE FUNCTION jobs._fail_orphaned_sql(error text) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) FILTER (WHERE jobs._finish_sql(j.id, j.lease_token, NULL, error, true))
    FROM jobs.job j
    WHERE j.state = 'running' AND j.queue = 'sql'
$$;

CREATE FUNCTION jobs.enqueue_sql(
    command text,
    run_at timestamptz DEFAULT NULL,
    database text DEFAULT NULL,
    run_as text DEFAULT NULL,
    timeout interval DEFAULT NULL,
    max_attempts int DEFAULT 1,
    priority int DEFAULT 0,
    idempotency_key text DEFAULT NULL
) RETURNS jobs.job
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'enqueue_sql_wrapper';

CREATE FUNCTION jobs.schedule_sql(
    name text,
    cron text,
    command text,
    timezone text DEFAULT 'UTC',
    database text DEFAULT NULL,
    run_as text DEFAULT NULL,
    timeout interval DEFAULT NULL,
    max_attempts int DEFAULT 1,
    overlap boolean DEFAULT false,
    enabled boolean DEFAULT true
) RETURNS jobs.schedule
VOLATILE PARALLEL UNSAFE
SET search_path TO pg_catalog, pg_temp
LANGUAGE c
AS 'MODULE_PATHNAME', 'schedule_sql_wrapper';

-- Why complete_batch's arguments are refused, in the order of the checks;
-- called only when jobs.complete_batch found them invalid. Never returns.
CREATE FUNCTION jobs._refuse_complete_batch(job_ids bigint[], lease_tokens uuid[]) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM jobs._check_not_null('job_ids', job_ids);
    PERFORM jobs._check_not_null('lease_tokens', lease_tokens);
    IF cardinality(job_ids) <> cardinality(lease_tokens) THEN
        PERFORM jobs._invalid(format('job_ids and lease_tokens must have the same length, not %s and %s',
                                     cardinality(job_ids), cardinality(lease_tokens)));
    ELSIF array_position(job_ids, NULL) IS NOT NULL OR array_position(lease_tokens, NULL) IS NOT NULL THEN
        PERFORM jobs._invalid('job_ids and lease_tokens must not contain null');
    END IF;
    PERFORM jobs._invalid('job_ids must not repeat');
END
$$;

-- Many completions in one statement and one commit: for workers that claim
-- in batches. All or nothing: if any job is not running under its token,
-- the call raises P0002 or 55000 for the first such job and completes none.
-- Compiled (src/complete.rs): one guarded UPDATE through a plan kept for the
-- session. Not STRICT: a null argument gets the contract's error.
CREATE OR REPLACE FUNCTION jobs.complete_batch(job_ids bigint[], lease_tokens uuid[]) RETURNS SETOF jobs.job
LANGUAGE c VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'complete_batch';

-- The invariants: one function of the plain columns (src/invariants.rs says why).
-- The constraint is checked against every existing row as it is added.
ALTER TABLE jobs.job DROP CONSTRAINT job_valid;
DROP FUNCTION jobs._job_row_valid(text, int, int, int, int, uuid, timestamptz, boolean, timestamptz, timestamptz);
CREATE FUNCTION jobs._job_row_valid(state jobs.job_state, queue text, job_type text, attempts int, max_attempts int,
                                    lease_token uuid, lease_until timestamptz, worker_id text,
                                    started_at timestamptz, finished_at timestamptz) RETURNS boolean
LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'job_row_valid';
ALTER TABLE jobs.job ADD CONSTRAINT job_valid
    CHECK (jobs._job_row_valid(state, queue, job_type, attempts, max_attempts, lease_token, lease_until, worker_id,
                               started_at, finished_at));

-- complete, compiled (src/complete.rs): the same guarded UPDATE through a
-- plan kept for the session.
CREATE OR REPLACE FUNCTION jobs.complete(
    job_id bigint,
    lease_token uuid,
    result jsonb DEFAULT NULL
) RETURNS jobs.job
LANGUAGE c VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'complete';

DROP FUNCTION jobs._prune(interval, int);
DROP INDEX jobs.job_finished_idx;
-- Where each sweeping duty goes on: pruning sweeps jobs.job's pages a slice
-- per pass (jobs._prune), from where the last pass, in any session, ended.
CREATE TABLE jobs.maintenance_cursor (
    duty      text PRIMARY KEY,
    next_page bigint NOT NULL
);
INSERT INTO jobs.maintenance_cursor (duty, next_page) VALUES ('prune', 0);
-- Pruning: jobs that finished more than `retention` ago, with their history,
-- found by a sweep of jobs.job's pages rather than by an index: an index of
-- finished jobs takes an entry (about 65 bytes of WAL) from every finished
-- job, for a cleanup that may run behind. Each call reads `pages` pages from
-- `from_page` and deletes at most `batch_size` jobs; next_page is where the
-- next call starts (0 once the sweep has passed the table's end). A page
-- holds dozens of jobs, so a pass of the worker sweeps far more jobs than
-- finish meanwhile, and an old snapshot makes it read no more than that.
CREATE FUNCTION jobs._prune(retention interval, batch_size int, from_page bigint, pages int,
                            OUT pruned bigint, OUT next_page bigint)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    -- a relation's size is read without a lock: the sweep may end a page
    -- short of a table that grew meanwhile, and the next one starts there
    table_pages bigint := pg_relation_size('jobs.job'::regclass) / current_setting('block_size')::int;
    upto bigint := least(from_page + greatest(pages, 1), table_pages);
    last_page bigint;
BEGIN
    WITH doomed AS (
        SELECT ARRAY(
            SELECT j.id FROM jobs.job j
            WHERE j.ctid >= format('(%s,0)', from_page)::tid
              AND j.ctid < format('(%s,0)', upto)::tid
              AND j.finished_at < now() - retention
            LIMIT batch_size
            FOR UPDATE SKIP LOCKED) AS ids
    ), history AS (
        DELETE FROM jobs.job_attempt r WHERE r.job_id = ANY ((SELECT ids FROM doomed)::bigint[])
    ), gone AS (
        DELETE FROM jobs.job j WHERE j.id = ANY ((SELECT ids FROM doomed)::bigint[])
        RETURNING (j.ctid::text::point)[0]::bigint AS page
    )
    SELECT count(*), max(g.page) INTO pruned, last_page FROM gone g;
    -- A full batch may have left jobs further on in the pages swept: the next
    -- call starts again at the last page it deleted from.
    next_page := CASE WHEN pruned >= batch_size THEN last_page
                      WHEN upto >= table_pages THEN 0
                      ELSE upto END;
END
$$;

-- Like everything in the schema, granted to nobody (sql/privileges.sql).
REVOKE ALL ON ALL TABLES IN SCHEMA jobs FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA jobs FROM PUBLIC;
