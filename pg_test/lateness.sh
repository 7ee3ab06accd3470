#!/usr/bin/env bash
# Scheduler lateness on a running cluster (DSN in $1): an every-second
# schedule, FIRINGS firings (default 60); prints p50 / p99 / max of (moment
# the job was enqueued − the occurrence it belongs to) and duplicates.
set -euo pipefail
dsn=$1
firings=${FIRINGS:-60}
sql() { psql "$dsn" -qAtX -v ON_ERROR_STOP=1 "$@"; }
sql -c "SELECT jobs.schedule('lateness', '* * * * * *', 'beat', queue => 'lateness')" >/dev/null
sleep $((firings + 2))
sql -c "SELECT jobs.unschedule('lateness')" >/dev/null
sql <<SQL
WITH late AS (
    SELECT extract(epoch FROM created_at - scheduled_for) * 1000 AS ms
    FROM jobs.job WHERE queue = 'lateness'
    ORDER BY scheduled_for
    LIMIT $firings
)
SELECT format('Schedule lateness, every-second schedule, %s firings: p50 %s ms, p99 %s ms, max %s ms; duplicate occurrences %s',
              count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms)::numeric, 1),
              (SELECT count(*) - count(DISTINCT scheduled_for) FROM jobs.job WHERE queue = 'lateness'))
FROM late;
SQL
