-- With the library preloaded, the background worker serves only
-- jobs.database_name: say so when the extension lands in another database.
DO $$
BEGIN
    IF 'jobs' = ANY (pg_catalog.string_to_array(pg_catalog.replace(
               pg_catalog.current_setting('shared_preload_libraries'), ' ', ''), ','))
       AND pg_catalog.current_setting('jobs.database_name', true) IS DISTINCT FROM pg_catalog.current_database()
    THEN
        RAISE WARNING 'the jobs background worker does not serve database "%"', pg_catalog.current_database()
            USING HINT = pg_catalog.format(
                'It serves database "%s" (jobs.database_name). Here the queue API works, but schedules fire, leases are recovered and old jobs are pruned only when something calls jobs.tick().',
                pg_catalog.current_setting('jobs.database_name', true));
    END IF;
END
$$;
