#!/usr/bin/env bash
# pg_cron and SQL jobs side by side: one throwaway cluster of the project's
# own PostgreSQL 15 with both preloaded, SCHEDULES (default 4) every-minute
# schedules each whose command records when it ran, for MINUTES (default 4)
# minutes. Lateness is the time from the scheduled minute to the command's
# clock_timestamp(), the same measure for both. pg_cron is Debian's
# postgresql-15-cron (1.4.2), downloaded (not installed) and its files copied
# into the project's tree of 15, whose servers must be stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
. pg_test/lib.sh
schedules=${SCHEDULES:-4}
minutes=${MINUTES:-4}
export JOBS_PG=15
pg_config=$(jobs_pg_config 15)
if [ ! -f "$("$pg_config" --pkglibdir)/pg_cron.so" ]; then
    jobs_log "copying Debian's postgresql-15-cron into the project's PostgreSQL 15"
    work=$(mktemp -d)
    (cd "$work" && { apt-get download -qq postgresql-15-cron 2>/dev/null \
        || { apt-get update -qq && apt-get download -qq postgresql-15-cron; }; })
    dpkg-deb -x "$work"/postgresql-15-cron_*.deb "$work/root"
    jobs_replace_file "$work"/root/usr/lib/postgresql/15/lib/pg_cron.so "$("$pg_config" --pkglibdir)/pg_cron.so"
    for file in "$work"/root/usr/share/postgresql/15/extension/pg_cron*; do
        jobs_replace_file "$file" "$("$pg_config" --sharedir)/extension/$(basename "$file")"
    done
    rm -rf "$work"
fi
export JOBS_PGDATA=${JOBS_PGDATA:-/tmp/jobs-bench-pg-cron} JOBS_PGPORT=${JOBS_PGPORT:-28820} JOBS_BUILD=release
# Both run every schedule's command at once: pg_cron's own limit is 32.
export JOBS_EXTRA_CONF="shared_preload_libraries = 'jobs,pg_cron'
cron.database_name = 'postgres'
cron.host = '127.0.0.1'
jobs.sql_workers = $schedules"
trap 'bash pg_test/cluster.sh stop' EXIT
bash pg_test/cluster.sh stop
bash pg_test/cluster.sh start >/dev/null
sql() { bash pg_test/cluster.sh psql -qAtX -v ON_ERROR_STOP=1 "$@"; }
sql -v n="$schedules" <<'SQL'
CREATE EXTENSION pg_cron;
CREATE TABLE ran (runner text, scheduled timestamptz, ran timestamptz);
SELECT count(jobs.schedule_sql('jobs-' || i, '* * * * *',
    $$INSERT INTO ran SELECT 'jobs', date_trunc('minute', clock_timestamp()), clock_timestamp()$$, overlap => true))
FROM generate_series(1, :n) i;
SELECT count(cron.schedule('cron-' || i, '* * * * *',
    $$INSERT INTO ran SELECT 'pg_cron', date_trunc('minute', clock_timestamp()), clock_timestamp()$$))
FROM generate_series(1, :n) i;
SQL
jobs_log "waiting $minutes minutes for $schedules schedules of each to fire"
sleep $((minutes * 60 + 5))
echo "scheduled minute to command running, $schedules every-minute schedules each, $minutes minutes (PostgreSQL $(sql -c 'SHOW server_version'), pg_cron $(sql -c "SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'")):"
sql -F ' ' <<'SQL'
SELECT format('  %-8s %3s runs: p50 %6s ms, p90 %6s ms, max %6s ms', runner, count(*),
              round(percentile_cont(0.5) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(percentile_cont(0.9) WITHIN GROUP (ORDER BY ms)::numeric, 1),
              round(max(ms)::numeric, 1))
FROM (SELECT runner, extract(epoch FROM ran - scheduled) * 1000 AS ms FROM ran) r
GROUP BY runner ORDER BY runner;
SQL
