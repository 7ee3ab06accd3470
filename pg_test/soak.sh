#!/usr/bin/env bash
# Soak: steady enqueue and drain with a short retention and pruning on, for
# SOAK_SECONDS (default 600) on a throwaway cluster (release build). Every
# minute prints the size of the jobs tables with their indexes, the jobs by
# state, the last minute's completions and the background worker's resident
# memory; both must level off, not grow with time.
#
#   bash pg_test/soak.sh                     # 10 minutes
#   SOAK_SECONDS=120 bash pg_test/soak.sh    # a shorter look
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${SOAK_SECONDS:-600}
enqueue_rate=${SOAK_ENQUEUE_RATE:-300}   # jobs/s, one per transaction
export JOBS_PGDATA=${JOBS_PGDATA:-/tmp/jobs-soak-cluster} JOBS_PGPORT=${JOBS_PGPORT:-28819} JOBS_BUILD=release
trap 'kill $(jobs -p) 2>/dev/null || true; bash pg_test/cluster.sh stop' EXIT
bash pg_test/cluster.sh stop
bash pg_test/cluster.sh start
dsn=$(bash pg_test/cluster.sh dsn)
bin=$(bash pg_test/cluster.sh bindir)
sql() { "$bin/psql" "$dsn" -qAtX -v ON_ERROR_STOP=1 "$@"; }

sql -c "ALTER SYSTEM SET jobs.retention = '30s'" -c "SELECT pg_reload_conf()" >/dev/null
work=$(mktemp -d)
echo "SELECT jobs.enqueue('soak', '{\"n\": 1}', queue => 'soak');" >"$work/enqueue.sql"
echo "SELECT count(jobs.complete(c.id, c.lease_token)) FROM jobs.claim('soak-' || :client_id, 'soak', max_jobs => 10) c;" >"$work/drain.sql"

"$bin/pgbench" "$dsn" -n -f "$work/enqueue.sql" -c 2 -j 2 -R "$enqueue_rate" -T "$seconds" >"$work/enqueue.log" 2>&1 &
"$bin/pgbench" "$dsn" -n -f "$work/drain.sql" -c 4 -j 2 -R 100 -T "$seconds" >"$work/drain.log" 2>&1 &

last_id=0
report() {
    local pid rss max_id
    pid=$(sql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs worker'")
    # Private memory (RssAnon) is what a leak would grow; RssShmem is the
    # shared buffers the worker has touched so far.
    rss=$(awk '/RssAnon/ {a=$2} /RssShmem/ {s=$2} END {print a " kB private, " s " kB shared"}' "/proc/$pid/status" 2>/dev/null || echo "?")
    max_id=$(sql -c "SELECT coalesce(max(id), 0) FROM jobs.job")
    sql -c "SELECT format('%5s s | job %s, job_attempt %s (with indexes) | enqueued %s | queued %s running %s finished %s | worker pid %s: %s',
                          $1,
                          pg_size_pretty(pg_total_relation_size('jobs.job')),
                          pg_size_pretty(pg_total_relation_size('jobs.job_attempt')),
                          $max_id - $last_id,
                          count(*) FILTER (WHERE state = 'queued'), count(*) FILTER (WHERE state = 'running'),
                          count(*) FILTER (WHERE finished_at IS NOT NULL),
                          '$pid', '$rss')
            FROM jobs.job"
    last_id=$max_id
}

echo "soak: $seconds s, $enqueue_rate jobs/s enqueued, drained 10 at a time, retention 30 s"
report 0
for ((t = 60; t <= seconds; t += 60)); do
    sleep 60
    report "$t"
done
wait
echo "enqueue: $(grep -E '^(tps|number of transactions actually processed)' "$work/enqueue.log" | tr '\n' ' ')"
echo "drain:   $(grep -E '^(tps|number of transactions actually processed)' "$work/drain.log" | tr '\n' ' ')"
