-- Producers: jobs.enqueue and jobs.enqueue_batch.
--
-- Every API function is SECURITY DEFINER with search_path pinned to
-- pg_catalog, pg_temp, and names its own objects with the schema: a caller's
-- search_path (look-alike functions or operators in public) changes nothing.

-- Checks shared by both enqueue functions (and jobs.schedule). run_at and
-- max_attempts may be NULL (now, jobs.default_max_attempts). Queue 'sql'
-- holds SQL jobs, which only jobs.enqueue_sql creates (sql/sql_jobs.sql).
CREATE FUNCTION jobs._check_enqueue(job_type text, queue text, run_at timestamptz, priority int, max_attempts int) RETURNS void
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
CREATE FUNCTION jobs.enqueue(
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

CREATE FUNCTION jobs.enqueue_batch(
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
