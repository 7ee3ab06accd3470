-- Workers, part one: taking jobs and keeping them (jobs.claim, jobs.extend_lease).

-- A lease: NULL means jobs.default_lease; otherwise positive and small enough
-- that now() + lease is a timestamp.
CREATE FUNCTION jobs._lease_or_default(lease interval) RETURNS interval
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF lease IS NULL THEN
        RETURN jobs._default_lease();
    ELSIF lease <= interval '0' THEN
        PERFORM jobs._invalid(format('lease must be positive, not %s', jobs._quote(lease::text)));
    ELSIF lease > interval '100 years' THEN
        PERFORM jobs._invalid(format('lease %s is longer than 100 years', jobs._quote(lease::text)));
    END IF;
    RETURN lease;
END
$$;

CREATE FUNCTION jobs.claim(
    worker_id text,
    queue text DEFAULT 'default',
    max_jobs int DEFAULT 1,
    lease interval DEFAULT NULL,
    job_types text[] DEFAULT NULL
) RETURNS SETOF jobs.job
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
-- One plan per session. The claim query's cost depends on max_jobs only
-- through LIMIT, which a generic plan estimates at 10 % of the rows:
-- PostgreSQL then judges the generic plan dearer than a custom one and
-- replans on every call (about 300 µs, more than the claim itself).
SET plan_cache_mode = force_generic_plan
-- That plan lives as long as the session, and one made while the table was
-- empty would scan the table and sort: it must be the walk of
-- job_claim_idx (and primary-key lookups) whatever the statistics said then.
SET enable_seqscan = off
AS $$
#variable_conflict use_column
DECLARE
    lease_for interval := coalesce(claim.lease, jobs._default_lease());
    -- The claim reads where the queue's claimable work starts once, inside
    -- its statement (src/position.rs).
    ticket bigint := jobs._claim_ticket();
BEGIN
    IF NOT coalesce(claim.worker_id IS NOT NULL AND jobs._is_name(claim.queue) AND claim.queue <> 'sql'
            AND claim.max_jobs >= 1
            AND lease_for > interval '0' AND lease_for <= interval '100 years', false)
    THEN
        PERFORM jobs._lease_or_default(claim.lease);
        PERFORM jobs._check_not_null('worker_id', claim.worker_id);
        PERFORM jobs._check_name('queue', claim.queue);
        IF claim.queue = 'sql' THEN
            -- SQL jobs run only in the extension's executors (sql/sql_jobs.sql).
            PERFORM jobs._invalid('queue "sql" is reserved for SQL jobs, which only the extension''s executors take');
        END IF;
        PERFORM jobs._invalid(format('max_jobs must be at least 1, not %s',
                                     coalesce(claim.max_jobs::text, 'null')));
    END IF;

    -- SKIP LOCKED: rows another claimer is taking right now are passed over,
    -- never waited for. The subquery walks job_claim_idx in claim order from
    -- the queue's position (no queued row lies before it); the ids come back
    -- as an array so the update finds each row by primary key (a join let
    -- the planner hash against a scan of the whole table).
    RETURN QUERY
    WITH claimed AS (
        UPDATE jobs.job j
        SET state = 'running',
            attempts = j.attempts + 1,
            lease_token = gen_random_uuid(),
            lease_until = now() + lease_for,
            worker_id = claim.worker_id,
            started_at = now(),
            updated_at = now()
        WHERE j.id = ANY (ARRAY(
            SELECT p.id
            FROM jobs.job p
            WHERE p.state = 'queued'
              AND p.queue = claim.queue
              AND (p.priority, p.run_at, p.id) >= (jobs._claim_from_priority('jobs.job', claim.queue, ticket),
                                                   jobs._claim_from_run_at('jobs.job', claim.queue, ticket),
                                                   jobs._claim_from_id('jobs.job', claim.queue, ticket))
              AND p.run_at <= now()
              AND (claim.job_types IS NULL OR p.job_type = ANY (claim.job_types))
            ORDER BY p.priority, p.run_at, p.id
            LIMIT claim.max_jobs
            FOR UPDATE SKIP LOCKED))
        RETURNING j.*
    )
    SELECT * FROM claimed c
    WHERE jobs._claim_took(ticket, c.priority, c.run_at, c.id)
    ORDER BY c.priority, c.run_at, c.id;

    -- While an old snapshot keeps claimed jobs' index entries alive, move the
    -- position up to the first queued row (a new statement: it sees this
    -- claim's rows as taken).
    IF jobs._claim_may_raise(ticket) THEN
        PERFORM jobs._claim_raise(ticket, first.priority, first.run_at, first.id)
        FROM (SELECT) one
        LEFT JOIN LATERAL (
            SELECT p.priority, p.run_at, p.id
            FROM jobs.job p
            WHERE p.state = 'queued'
              AND p.queue = claim.queue
              AND (p.priority, p.run_at, p.id) >= (jobs._claim_from_priority('jobs.job', claim.queue, ticket),
                                                   jobs._claim_from_run_at('jobs.job', claim.queue, ticket),
                                                   jobs._claim_from_id('jobs.job', claim.queue, ticket))
            ORDER BY p.priority, p.run_at, p.id
            LIMIT 1) first ON true;
    END IF;
END
$$;

CREATE FUNCTION jobs.extend_lease(
    job_id bigint,
    lease_token uuid,
    lease interval DEFAULT NULL
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off  -- plans outlive the statistics they were made with: see jobs.claim
AS $$
#variable_conflict use_column
DECLARE
    lease_for interval := coalesce(extend_lease.lease, jobs._default_lease());
    new_until timestamptz;
BEGIN
    IF NOT coalesce(extend_lease.job_id IS NOT NULL AND extend_lease.lease_token IS NOT NULL
            AND lease_for > interval '0' AND lease_for <= interval '100 years', false)
    THEN
        PERFORM jobs._lease_or_default(extend_lease.lease);
        PERFORM jobs._check_not_null('job_id', extend_lease.job_id);
        PERFORM jobs._check_not_null('lease_token', extend_lease.lease_token);
    END IF;

    UPDATE jobs.job j
    SET lease_until = now() + lease_for, updated_at = now()
    WHERE j.id = extend_lease.job_id
      AND j.state = 'running'
      AND j.lease_token = extend_lease.lease_token
    RETURNING j.lease_until INTO new_until;
    IF NOT FOUND THEN
        PERFORM jobs._raise_not_held(extend_lease.job_id);
    END IF;
    RETURN new_until;
END
$$;
