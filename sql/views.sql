-- Operators' views, for dashboards and psql. Like everything in the schema
-- they are not granted to PUBLIC; `GRANT SELECT ON jobs.queue_stats TO
-- monitoring` is enough, since a view reads the tables with its owner's rights.

-- One row per queue that has jobs: what jobs.stats() returns.
CREATE VIEW jobs.queue_stats AS
SELECT j.queue,
       count(*) FILTER (WHERE j.state = 'queued') AS queued,
       count(*) FILTER (WHERE j.state = 'running') AS running,
       count(*) FILTER (WHERE j.state = 'completed') AS completed,
       count(*) FILTER (WHERE j.state = 'failed') AS failed,
       count(*) FILTER (WHERE j.state = 'canceled') AS canceled,
       now() - min(j.run_at) FILTER (WHERE j.state = 'queued' AND j.run_at <= now()) AS oldest_queued_age
FROM jobs.job j
GROUP BY j.queue
ORDER BY j.queue;

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
