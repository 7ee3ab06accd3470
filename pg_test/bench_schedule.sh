#!/usr/bin/env bash
# Scheduler lateness: an every-second schedule on an idle throwaway cluster
# (release build), FIRINGS firings (default 60); prints p50 / p99 / max of
# (moment the job was enqueued − the occurrence it belongs to).
set -euo pipefail
cd "$(dirname "$0")/.."
firings=${FIRINGS:-60}
export JOBS_PGDATA=${JOBS_PGDATA:-/tmp/jobs-bench-cluster} JOBS_PGPORT=${JOBS_PGPORT:-28818} JOBS_BUILD=release
trap 'bash pg_test/cluster.sh stop' EXIT
bash pg_test/cluster.sh stop
bash pg_test/cluster.sh start
sql() { bash pg_test/cluster.sh psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

sql -c "SELECT jobs.schedule('lateness', '* * * * * *', 'beat', queue => 'lateness')" >/dev/null
echo "waiting for $firings firings of an every-second schedule..."
sleep $((firings + 2))
sql -c "SELECT jobs.unschedule('lateness')" >/dev/null
sql <<SQL
WITH late AS (
    SELECT extract(epoch FROM created_at - scheduled_for) * 1000 AS ms
    FROM jobs.job WHERE queue = 'lateness'
    ORDER BY scheduled_for
    LIMIT $firings
)
SELECT format('schedule lateness over %s firings: p50 %s ms, p99 %s ms, max %s ms',
              count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms)::numeric, 1))
FROM late;
SELECT format('duplicate occurrences: %s', count(*) - count(DISTINCT scheduled_for))
FROM jobs.job WHERE queue = 'lateness';
SQL
