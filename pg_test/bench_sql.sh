#!/usr/bin/env bash
# SQL jobs: how long a `SELECT 1` job takes from enqueue to completed on an
# idle server, and how fast 1,000 queued ones drain with jobs.sql_workers
# 1, 2 and 4. A throwaway cluster of the project's own PostgreSQL (JOBS_PG,
# default 15), release build. LATENCY_JOBS (default 200) and DRAIN_JOBS
# (default 1000) size the two runs.
set -euo pipefail
cd "$(dirname "$0")/.."
export JOBS_PGDATA=${JOBS_PGDATA:-/tmp/jobs-bench-sql} JOBS_PGPORT=${JOBS_PGPORT:-28819} JOBS_BUILD=release
latency_jobs=${LATENCY_JOBS:-200}
drain_jobs=${DRAIN_JOBS:-1000}
trap 'bash pg_test/cluster.sh stop' EXIT
bash pg_test/cluster.sh stop
bash pg_test/cluster.sh start >/dev/null
sql() { bash pg_test/cluster.sh psql -qAtX -v ON_ERROR_STOP=1 "$@"; }

# The client's view: each job is enqueued and committed, then polled every
# millisecond until it is completed.
sql <<'SQL'
CREATE TABLE bench_latency (ms float8);
CREATE PROCEDURE bench_latency(n int) LANGUAGE plpgsql AS $$
DECLARE
    this_job bigint;
    t0 timestamptz;
BEGIN
    FOR i IN 1..n LOOP
        t0 := clock_timestamp();
        SELECT j.id INTO this_job FROM jobs.enqueue_sql('SELECT 1') j;
        COMMIT;
        WHILE (SELECT state FROM jobs.job WHERE id = this_job) <> 'completed' LOOP
            PERFORM pg_sleep(0.001);
        END LOOP;
        INSERT INTO bench_latency VALUES (extract(epoch FROM clock_timestamp() - t0) * 1000);
        COMMIT;
    END LOOP;
END
$$;
CREATE PROCEDURE bench_drain(n int, INOUT seconds float8 DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    t0 timestamptz;
    first_id bigint;
BEGIN
    t0 := clock_timestamp();
    SELECT min((jobs.enqueue_sql('SELECT 1')).id) INTO first_id FROM generate_series(1, n);
    COMMIT;
    WHILE (SELECT count(*) FROM jobs.job WHERE id >= first_id AND state = 'completed') < n LOOP
        PERFORM pg_sleep(0.01);
    END LOOP;
    seconds := extract(epoch FROM clock_timestamp() - t0);
END
$$;
SQL

sql -c "CALL bench_latency($latency_jobs)"
echo "enqueue to completed, SELECT 1, one job at a time ($latency_jobs jobs, $(bash pg_test/cluster.sh psql -qAtX -c 'SHOW server_version')):"
sql -F ' ' <<'SQL'
SELECT format('  p50 %s ms, p90 %s ms, p99 %s ms, max %s ms',
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.99) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms)::numeric, 1))
FROM bench_latency;
SQL

echo "draining $drain_jobs queued SELECT 1 jobs:"
for workers in 1 2 4; do
    sql -c "ALTER SYSTEM SET jobs.sql_workers = $workers" -c "SELECT pg_reload_conf()" >/dev/null
    # The worker rereads its settings when it next wakes: give it that wake-up.
    sql -c "SELECT jobs.enqueue_sql('SELECT 1')" >/dev/null
    sleep 1
    seconds=$(sql -c "CALL bench_drain($drain_jobs)")
    awk -v w="$workers" -v s="$seconds" -v n="$drain_jobs" \
        'BEGIN { printf "  jobs.sql_workers = %d: %.2f s, %.0f jobs/s\n", w, s, n / s }'
done
