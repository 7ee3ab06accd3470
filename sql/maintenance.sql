-- The background worker's duties, one function each, called by the worker
-- (src/worker/) and by jobs.tick(). Every one is safe to run concurrently
-- with itself: rows are taken with SKIP LOCKED and each change is guarded.

-- Scheduler: enqueues one job for each due occurrence and advances the
-- schedule, in the caller's transaction. The row lock (SKIP LOCKED) keeps
-- concurrent firers off one schedule, and job_schedule_occurrence_idx makes a
-- second job for one occurrence impossible. Missed occurrences (downtime)
-- collapse into the one fired; the schedule continues from now. A schedule
-- without overlap skips an occurrence while its previous job (the newest,
-- found backwards on that index) is still queued or running, and counts it
-- in skipped_runs.
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

-- Lease recovery: running jobs whose lease has expired go back to queued,
-- due at once, attempts kept; on their last attempt they fail. Each leaves a
-- lease_expired row in jobs.job_run. A worker that extends or finishes its
-- job concurrently wins: its row is locked (skipped) or no longer expired
-- when re-checked.
CREATE FUNCTION jobs._recover_leases(batch_size int) RETURNS bigint
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

-- Delayed jobs: one NOTIFY per queue that has jobs that became due since
-- `since`, so listening workers need not poll for them. Only jobs made to
-- wait (run_at after their last change: a delayed enqueue, a retry after
-- backoff); the rest were announced when they were queued.
CREATE FUNCTION jobs._notify_due(since timestamptz) RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(jobs._announce(q.queue))
    FROM (SELECT DISTINCT j.queue FROM jobs.job j
          WHERE j.state = 'queued' AND j.run_at > since AND j.run_at <= now()
            AND j.run_at > j.updated_at) q
$$;

-- When the worker has something to do next: the earliest schedule
-- occurrence, lease expiry or delayed SQL job still ahead of this pass (NULL when none). Past
-- ones this pass could not take (rows locked by another transaction) are
-- retried after the maintenance interval, not in a busy loop.
CREATE FUNCTION jobs._next_wakeup() RETURNS timestamptz
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

CREATE FUNCTION jobs._millis_until_next_wakeup() RETURNS bigint
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT ceil(extract(epoch FROM jobs._next_wakeup() - clock_timestamp()) * 1000)::bigint
$$;
