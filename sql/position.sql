-- Where each queue's claimable work starts (src/position.rs says why and
-- how): the parts of the position a claim starts from, the call through
-- which every function that makes a row queued lowers it (and announces a
-- due job), and the worker's check of each queue's first queued row.
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
