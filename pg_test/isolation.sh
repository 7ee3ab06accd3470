#!/usr/bin/env bash
# Proof that the test command touches nothing but its own files. `start`
# installs `jobs` into the system's PostgreSQL 15 (as the demo or a package
# would; nothing of that PostgreSQL may be running), starts a cluster of it
# with the library preloaded, and records its postmaster and worker pids and
# a checksum of every file under its pkglibdir and sharedir. `check`, run
# after everything else, asserts the cluster is still up with the same pids
# and that no such file changed. `stop` removes the cluster.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PG_CONFIG=$JOBS_SYSTEM_PG_CONFIG
PGDATA=/tmp/jobs-isolation-cluster
PGPORT=28930
DSN=$(jobs_dsn "$PGPORT")
STATE=/tmp/jobs-isolation-state
psql_() { "$("$PG_CONFIG" --bindir)/psql" "$DSN" -qAtX -v ON_ERROR_STOP=1 "$@"; }

fingerprint() {
    local dir
    for dir in "$("$PG_CONFIG" --pkglibdir)" "$("$PG_CONFIG" --sharedir)"; do
        find "$dir" -type f -print0 | sort -z | xargs -0 sha256sum
    done
}

# This cluster's postmaster and worker, and every other postmaster of the
# system's PostgreSQL (a demo's).
pids() {
    echo "postmaster $(head -1 "$PGDATA/postmaster.pid")"
    echo "worker $(psql_ -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs worker'")"
    pgrep -f "^$("$PG_CONFIG" --bindir)/postgres" | sort | sed 's/^/running postmaster /' || true
}

worker_up() { [ -n "$(psql_ -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs worker'")" ]; }

case "${1:-}" in
    start)
        jobs_cluster_stop "$PG_CONFIG" "$PGDATA"
        if pgrep -f "^$("$PG_CONFIG" --bindir)/postgres" >/dev/null \
                && [ -f "$("$PG_CONFIG" --pkglibdir)/jobs.so" ]; then
            jobs_log "isolation: a server of the system's PostgreSQL 15 runs; starting a cluster beside it with the jobs installed there"
        else
            jobs_log "isolation: installing jobs into the system's PostgreSQL 15 and starting a cluster of it"
            jobs_install "$PG_CONFIG"
        fi
        jobs_cluster_start "$PG_CONFIG" "$PGDATA" "$PGPORT"
        psql_ -c 'CREATE EXTENSION jobs' >/dev/null
        for _ in $(seq 100); do worker_up && break; sleep 0.1; done
        worker_up || { echo "isolation: the system cluster's worker did not start" >&2; exit 1; }
        mkdir -p "$STATE"
        fingerprint >"$STATE/files"
        pids >"$STATE/pids"
        ;;
    check)
        as_postgres "$("$PG_CONFIG" --bindir)/pg_ctl" -D "$PGDATA" status >/dev/null \
            || { echo "isolation: the system cluster is down" >&2; exit 1; }
        if ! diff -u "$STATE/pids" <(pids); then
            echo "isolation: the system cluster's postmaster or worker was restarted" >&2
            exit 1
        fi
        if ! diff -u "$STATE/files" <(fingerprint); then
            echo "isolation: files of the system's PostgreSQL changed" >&2
            exit 1
        fi
        psql_ -c "SELECT count(*) FROM jobs.enqueue('isolation-check')" >/dev/null
        echo "isolation: the system's PostgreSQL 15 cluster ran throughout (same postmaster and worker)," \
             "and none of its $(wc -l <"$STATE/files") files changed"
        ;;
    stop)
        jobs_cluster_stop "$PG_CONFIG" "$PGDATA"
        rm -rf "$STATE"
        ;;
    *) echo "usage: $0 start|check|stop" >&2; exit 2 ;;
esac
