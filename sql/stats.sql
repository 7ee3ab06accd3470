-- Operators: jobs.stats. A SQL-language function because its parameter and
-- its first output column are both named queue, which PL/pgSQL refuses.

CREATE FUNCTION jobs.stats(queue text DEFAULT NULL)
RETURNS TABLE (
    queue text,
    queued bigint,
    running bigint,
    completed bigint,
    failed bigint,
    canceled bigint,
    oldest_queued_age interval
)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
    -- A queue asked for by name gets its row even when it has no jobs.
    WITH wanted AS (
        SELECT j.queue FROM jobs.job j WHERE $1 IS NULL GROUP BY j.queue
        UNION
        SELECT $1 WHERE $1 IS NOT NULL
    )
    SELECT w.queue,
           count(j.id) FILTER (WHERE j.state = 'queued'),
           count(j.id) FILTER (WHERE j.state = 'running'),
           count(j.id) FILTER (WHERE j.state = 'completed'),
           count(j.id) FILTER (WHERE j.state = 'failed'),
           count(j.id) FILTER (WHERE j.state = 'canceled'),
           now() - min(j.run_at) FILTER (WHERE j.state = 'queued' AND j.run_at <= now())
    FROM wanted w
    LEFT JOIN jobs.job j ON j.queue = w.queue
    GROUP BY w.queue
    ORDER BY w.queue
$$;
