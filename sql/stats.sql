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
    SELECT s.* FROM jobs.queue_stats s WHERE $1 IS NULL
    UNION ALL
    -- A queue asked for by name gets its row even when it has no jobs.
    SELECT $1, coalesce(s.queued, 0), coalesce(s.running, 0), coalesce(s.completed, 0),
           coalesce(s.failed, 0), coalesce(s.canceled, 0), s.oldest_queued_age
    FROM (SELECT) one
    LEFT JOIN jobs.queue_stats s ON s.queue = $1
    WHERE $1 IS NOT NULL
    ORDER BY 1
$$;
