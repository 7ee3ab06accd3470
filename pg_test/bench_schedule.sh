#!/usr/bin/env bash
# Scheduler lateness alone: an idle throwaway cluster (release build) and
# pg_test/lateness.sh (FIRINGS, default 60).
set -euo pipefail
cd "$(dirname "$0")/.."
export JOBS_PGDATA=${JOBS_PGDATA:-/tmp/jobs-bench-cluster} JOBS_PGPORT=${JOBS_PGPORT:-28818} JOBS_BUILD=release
trap 'bash pg_test/cluster.sh stop' EXIT
bash pg_test/cluster.sh stop
bash pg_test/cluster.sh start
PATH=$(bash pg_test/cluster.sh bindir):$PATH bash pg_test/lateness.sh "$(bash pg_test/cluster.sh dsn)"
