#!/usr/bin/env bash
# The benchmark: a throwaway cluster with fixed settings (fsync and
# synchronous_commit on, shared_buffers 2GB, release build), `jobs` beside the
# cheapest plain SQL doing the same state transitions, in the same run.
# Prints the results and writes them to pg_test/bench-results.md.
#
#   bash pg_test/bench.sh
#   BENCH_RUNS=1 BENCH_HELD_SECONDS=120 bash pg_test/bench.sh   # shorter
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$JOBS_ROOT"
# BENCH_ONLY=drain,latency (parts: enqueue, drain, batch, latency, held,
# lateness) runs a part and writes its table elsewhere.
only=${BENCH_ONLY:-}
if [ -z "$only" ]; then out=${BENCH_OUT:-pg_test/bench-results.md}; else out=${BENCH_OUT:-/tmp/jobs-bench-partial.md}; fi
export JOBS_PGDATA=${JOBS_PGDATA:-/tmp/jobs-bench-cluster} JOBS_PGPORT=${JOBS_PGPORT:-28818} JOBS_BUILD=release
export JOBS_EXTRA_CONF="shared_buffers = '2GB'
fsync = on
synchronous_commit = on"
trap 'bash pg_test/cluster.sh stop' EXIT
bash pg_test/cluster.sh stop
bash pg_test/cluster.sh start
dsn=$(bash pg_test/cluster.sh dsn)
export PATH=$(bash pg_test/cluster.sh bindir):$PATH
cargo build --release --quiet --features bench --example bench

{
    echo "# jobs benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(psql "$dsn" -qAtX -c 'SELECT version()' | cut -d, -f1);"
    echo "fsync and synchronous_commit on, shared_buffers 2GB; jobs.retention 1d for the drains (all completed jobs are counted), 60s for the steady load."
    echo "Server CPU: user + system time of the postmaster and all its processes (/proc); WAL: pg_current_wal_lsn() before and after."
    echo "Command: \`bash pg_test/bench.sh\` (BENCH_JOBS=${BENCH_JOBS:-20000}, BENCH_RUNS=${BENCH_RUNS:-3}, BENCH_SECONDS=${BENCH_SECONDS:-10}, BENCH_HELD_SECONDS=${BENCH_HELD_SECONDS:-300}${BENCH_HELD_RATE:+, BENCH_HELD_RATE=$BENCH_HELD_RATE}${BENCH_ONLY:+, BENCH_ONLY=$BENCH_ONLY})."
    echo
    target/release/examples/bench "$dsn"
    if [ -z "$only" ] || [[ ",$only," == *,lateness,* ]]; then
        echo
        bash pg_test/lateness.sh "$dsn"
    fi
} | tee "$out"
