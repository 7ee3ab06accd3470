#!/usr/bin/env bash
# The plain-SQL regression suite: pg_test/sql/*.sql run by PostgreSQL's
# pg_regress against the running test cluster (pg_test/cluster.sh, the same
# JOBS_PG and JOBS_PGPORT), output compared with pg_test/expected/*.out. Each
# file runs in a transaction it rolls back, so the cluster is left as it was.
#
#   bash pg_test/regress.sh                 # all files
#   bash pg_test/regress.sh enqueue errors  # some
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$JOBS_ROOT"

PG_CONFIG=$(jobs_pg_config "${JOBS_PG:-15}")
PGBIN=$("$PG_CONFIG" --bindir)
pg_regress=$(dirname "$("$PG_CONFIG" --pgxs)")/../test/regress/pg_regress
PGPORT=${JOBS_PGPORT:-28815}
out=${JOBS_REGRESS_OUT:-/tmp/jobs-regress-${JOBS_PG:-15}}
tests=("$@")
if ((${#tests[@]} == 0)); then
    tests=(enqueue claim_leases finish_retries cancel_retry_now schedules stats_tick errors sql_jobs)
fi

rm -rf "$out"
mkdir -p "$out"
if ! "$pg_regress" --use-existing --host=127.0.0.1 --port="$PGPORT" --user=postgres --dbname=postgres \
        --bindir="$PGBIN" --inputdir=pg_test --outputdir="$out" \
        --launcher="$PWD/pg_test/regress-psql.sh" "${tests[@]}"; then
    cat "$out/regression.diffs" >&2
    exit 1
fi
