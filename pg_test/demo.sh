#!/usr/bin/env bash
# The demo: a throwaway cluster, a few jobs enqueued, a cron schedule fired
# by the background worker, a small worker loop in psql that claims and
# completes (or fails) them, two SQL jobs the extension runs itself, then
# jobs.stats() and the attempt history. Leaves the cluster running so you can look around;
# `JOBS_PG=system bash pg_test/cluster.sh stop` removes it. It installs `jobs` into the
# system's PostgreSQL 15 (/usr/lib/postgresql/15, /usr/share/postgresql/15),
# as a user would; JOBS_PG=17 runs it on the project's own tree of 17 instead.
set -euo pipefail
cd "$(dirname "$0")/.."
export JOBS_PG=${JOBS_PG:-system}

bash pg_test/cluster.sh start
sql() { bash pg_test/cluster.sh psql -qX -v ON_ERROR_STOP=1 "$@"; }

echo
echo "== enqueue: three emails, a report that fails once, a job for tomorrow"
sql <<'SQL'
SELECT e.id, e.job_type, e.queue, e.state
FROM unnest(ARRAY['ada@example.com', 'grace@example.com', 'edsger@example.com']) AS email,
     LATERAL jobs.enqueue('send_email', jsonb_build_object('to', email)) AS e;
SELECT id, job_type, queue, state, priority FROM jobs.enqueue('build_report', '{"flaky": true}', priority => -1);
SELECT id, job_type, queue, state, run_at > now() AS scheduled
FROM jobs.enqueue('cleanup', run_at => now() + interval '1 day');
SQL

echo "== a cron schedule: every second, fired by the background worker; removed after 2.5 s"
sql -c "SELECT name, cron, next_run_at FROM jobs.schedule('demo-heartbeat', '* * * * * *', 'heartbeat')"
sleep 2.5
sql -c "SELECT jobs.unschedule('demo-heartbeat')" >/dev/null
sql -c "SELECT id, job_type, scheduled_for, created_at - scheduled_for AS lateness
        FROM jobs.job WHERE job_type = 'heartbeat' ORDER BY id"

echo "== a worker loop: claim two at a time, do the work, complete or fail"
while :; do
    batch=$(sql -At -F '|' -c "SELECT id, lease_token, job_type, payload->>'flaky', attempts
                               FROM jobs.claim('demo-worker', max_jobs => 2, lease => '30 seconds')")
    [ -n "$batch" ] || break
    while IFS='|' read -r id token job_type flaky attempts; do
        if [ "$flaky" = true ] && [ "$attempts" = 1 ]; then
            echo "worker: job $id ($job_type) attempt $attempts failed; retrying at once"
            sql -c "SELECT jobs.fail($id, '$token', 'report server timed out', retry_in => '0')" >/dev/null
        else
            echo "worker: job $id ($job_type) attempt $attempts done"
            sql -c "SELECT jobs.complete($id, '$token', '{\"ok\": true}')" >/dev/null
        fi
    done <<<"$batch"
done

echo
echo "== SQL jobs: commands the extension runs itself, as psql runs a script"
sql <<'SQL'
CREATE TABLE IF NOT EXISTS demo_events (id int, at timestamptz DEFAULT now());
SELECT id, state FROM jobs.enqueue_sql(
    'INSERT INTO demo_events (id) SELECT generate_series(1, 3); VACUUM ANALYZE demo_events; SELECT * FROM demo_events');
SELECT id, state FROM jobs.enqueue_sql('SELECT 1/0');
SELECT name, cron, overlap FROM jobs.schedule_sql('demo-purge', '1 second', 'DELETE FROM demo_events WHERE id > 100');
SQL
for _ in $(seq 100); do
    [ "$(sql -At -c "SELECT count(*) FROM jobs.job WHERE queue = 'sql' AND state IN ('queued', 'running')")" = 0 ] && break
    sleep 0.1
done
sql -c "SELECT jobs.unschedule('demo-purge')" >/dev/null
sql -c "SELECT id, state, result, last_error FROM jobs.job WHERE queue = 'sql' ORDER BY id LIMIT 2"

echo
echo "== jobs.queue_stats (the view; jobs.stats() returns the same)"
sql -c "SELECT * FROM jobs.queue_stats"
echo "== attempt history (jobs.job_run)"
sql -c "SELECT r.job_id, j.job_type, r.attempt, r.worker_id, r.outcome, r.error
        FROM jobs.job_run r JOIN jobs.job j ON j.id = r.job_id ORDER BY r.job_id, r.id"
echo "== jobs.recent_failures (the operators' view of failed attempts)"
sql -c "SELECT job_id, job_type, state, attempts, outcome, error FROM jobs.recent_failures"
echo "The cluster is still running: JOBS_PG=$JOBS_PG bash pg_test/cluster.sh psql  (stop: JOBS_PG=$JOBS_PG bash pg_test/cluster.sh stop)"
