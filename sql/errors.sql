-- The one place the SQL API raises its errors: every user error has the
-- contract's SQLSTATE and a PostgreSQL-style message (lower case, value quoted).
-- Functions that raise are VOLATILE, so the planner never folds a call.

-- 22023 invalid_parameter_value
CREATE FUNCTION jobs._invalid(message text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'invalid_parameter_value', MESSAGE = message;
END
$$;

-- Quotes a user-supplied value for a message, cut short so a megabyte of
-- input does not become a megabyte of log.
CREATE FUNCTION jobs._quote(value text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT '"' || CASE WHEN length(value) > 64 THEN left(value, 64) || '...' ELSE value END || '"'
$$;

-- The hot paths test validity with these inlinable predicates (SQL-standard
-- bodies, bound when the extension is created, so no search_path reaches
-- them) and call the raising checks below only when a test fails.
CREATE FUNCTION jobs._is_name(value text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE
RETURN value IS NOT NULL AND value <> '' AND length(value) <= 128;

-- A queue or job type: present, not empty, at most 128 characters.
CREATE FUNCTION jobs._check_name(what text, value text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        PERFORM jobs._invalid(format('%s must not be null', what));
    ELSIF value = '' THEN
        PERFORM jobs._invalid(format('%s must not be empty', what));
    ELSIF length(value) > 128 THEN
        PERFORM jobs._invalid(format('%s %s is longer than 128 characters', what, jobs._quote(value)));
    END IF;
END
$$;

CREATE FUNCTION jobs._check_not_null(what text, value anyelement) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF value IS NULL THEN
        PERFORM jobs._invalid(format('%s must not be null', what));
    END IF;
END
$$;

CREATE FUNCTION jobs._raise_missing(job_id bigint) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'no_data_found',
        MESSAGE = format('job %s does not exist', job_id);
END
$$;

CREATE FUNCTION jobs._raise_wrong_state(job_id bigint, current jobs.job_state, wanted text) RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
        MESSAGE = format('job %s is %s, not %s', job_id, current, wanted);
END
$$;

-- Locks a job for an operator's transition; P0002 when it does not exist,
-- 55000 when its state is not one of `allowed`.
CREATE FUNCTION jobs._lock_job(job_id bigint, allowed jobs.job_state[], wanted text) RETURNS jobs.job
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
SET enable_seqscan = off  -- plans outlive the statistics they were made with: see src/claim.rs
AS $$
DECLARE
    job jobs.job;
BEGIN
    PERFORM jobs._check_not_null('job_id', job_id);
    SELECT * INTO job FROM jobs.job j WHERE j.id = _lock_job.job_id FOR UPDATE;
    IF NOT FOUND THEN
        PERFORM jobs._raise_missing(job_id);
    ELSIF job.state <> ALL (allowed) THEN
        PERFORM jobs._raise_wrong_state(job_id, job.state, wanted);
    END IF;
    RETURN job;
END
$$;

-- Called when a guarded update of a running job matched nothing: says why.
-- P0002 when the job does not exist, 55000 when it is not running under
-- this token. Never returns.
CREATE FUNCTION jobs._raise_not_held(job_id bigint) RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    current jobs.job_state;
BEGIN
    SELECT j.state INTO current FROM jobs.job j WHERE j.id = _raise_not_held.job_id;
    IF NOT FOUND THEN
        PERFORM jobs._raise_missing(job_id);
    ELSIF current <> 'running' THEN
        PERFORM jobs._raise_wrong_state(job_id, current, 'running');
    END IF;
    RAISE EXCEPTION USING ERRCODE = 'object_not_in_prerequisite_state',
        MESSAGE = format('lease token does not match the current lease of job %s', job_id),
        HINT = 'The lease expired and the job was claimed again: this worker must stop working on it.';
END
$$;
