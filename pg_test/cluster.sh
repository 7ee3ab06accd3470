#!/usr/bin/env bash
# A throwaway cluster with `jobs` built, installed and preloaded, run as the
# postgres user on a local port.
#
#   pg_test/cluster.sh start   build and install jobs, create and start the cluster
#   pg_test/cluster.sh stop    stop it and delete its data directory
#   pg_test/cluster.sh psql    open psql on it
#   pg_test/cluster.sh dsn     print its connection string
#
# JOBS_PG chooses the PostgreSQL: a major (14 … 18, the project's own tree in
# target/postgres; default 15) or `system` (Debian's PostgreSQL 15: the demo).
# JOBS_PGDATA (default /tmp/jobs-cluster) and JOBS_PGPORT (default 28815)
# choose the cluster; JOBS_BUILD=release installs an optimized build;
# JOBS_EXTRA_CONF adds lines to postgresql.conf of a new cluster;
# JOBS_NO_INSTALL=1 starts it with what is installed.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

TARGET=${JOBS_PG:-15}
[ "${1:-}" = start ] && bash "$JOBS_ROOT/pg_test/setup.sh" "$TARGET"
PG_CONFIG=$(jobs_pg_config "$TARGET")
PGDATA=${JOBS_PGDATA:-/tmp/jobs-cluster}
PGPORT=${JOBS_PGPORT:-28815}
DSN=$(jobs_dsn "$PGPORT")

case "${1:-}" in
    start)
        [ -n "${JOBS_NO_INSTALL:-}" ] || jobs_install "$PG_CONFIG"
        jobs_cluster_start "$PG_CONFIG" "$PGDATA" "$PGPORT"
        "$("$PG_CONFIG" --bindir)/psql" "$DSN" -qX -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS jobs' 2>&1 \
            | grep -v '^NOTICE' || true
        echo "cluster running ($("$PG_CONFIG" --version)): psql \"$DSN\"   (log: $PGDATA/server.log)"
        ;;
    stop) jobs_cluster_stop "$PG_CONFIG" "$PGDATA" ;;
    psql) shift; exec "$("$PG_CONFIG" --bindir)/psql" "$DSN" "$@" ;;
    dsn) echo "$DSN" ;;
    bindir) "$PG_CONFIG" --bindir ;;
    *) echo "usage: $0 start|stop|psql|dsn|bindir" >&2; exit 2 ;;
esac
