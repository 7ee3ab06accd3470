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

-- A claim's lease token (src/claim.rs): a random UUID, as unguessable as
-- gen_random_uuid's, cheaper to make.
CREATE FUNCTION jobs._lease_token() RETURNS uuid
LANGUAGE c VOLATILE PARALLEL UNSAFE
AS 'MODULE_PATHNAME', 'lease_token';

-- Compiled (src/claim.rs): the claim statement through a plan kept for the
-- session. Not STRICT: null arguments get the contract's errors.
CREATE FUNCTION jobs.claim(
    worker_id text,
    queue text DEFAULT 'default',
    max_jobs int DEFAULT 1,
    lease interval DEFAULT NULL,
    job_types text[] DEFAULT NULL
) RETURNS SETOF jobs.job
LANGUAGE c VOLATILE SECURITY DEFINER
AS 'MODULE_PATHNAME', 'claim';

CREATE FUNCTION jobs.extend_lease(
    job_id bigint,
    lease_token uuid,
    lease interval DEFAULT NULL
) RETURNS timestamptz
LANGUAGE plpgsql VOLATILE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off  -- plans outlive the statistics they were made with: see src/claim.rs
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
