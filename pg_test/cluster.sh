#!/usr/bin/env bash
# A throwaway PostgreSQL 15 cluster with `jobs` preloaded, run as the
# postgres user on a local port.
#
#   pg_test/cluster.sh start   build and install jobs, create and start the cluster
#   pg_test/cluster.sh stop    stop it and delete its data directory
#   pg_test/cluster.sh psql    open psql on it
#
# JOBS_PGDATA (default /tmp/jobs-cluster) and JOBS_PGPORT (default 28815)
# choose the cluster; JOBS_BUILD=release installs an optimized build;
# JOBS_EXTRA_CONF adds lines to postgresql.conf of a new cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

PGBIN=/usr/lib/postgresql/15/bin
PGDATA=${JOBS_PGDATA:-/tmp/jobs-cluster}
PGPORT=${JOBS_PGPORT:-28815}
DSN="host=127.0.0.1 port=$PGPORT user=postgres dbname=postgres"

as_postgres() { sudo -u postgres "$@"; }

# Builds a package and installs each file by renaming a copy over it (a new
# inode) instead of rewriting it in place: a server that has the old library
# loaded keeps running. (`cargo pgrx install` and `install` rewrite jobs.so in
# place, and a running server that maps it dies of SIGBUS.)
install_extension() {
    local profile=(--debug) out
    [ "${JOBS_BUILD:-debug}" = release ] && profile=()
    out=$(mktemp -d /tmp/jobs-package.XXXXXX)
    if ! cargo pgrx package "${profile[@]}" --pg-config "$PGBIN/pg_config" --out-dir "$out" >"$out.log" 2>&1; then
        cat "$out.log" >&2
        exit 1
    fi
    local lib ext
    lib=$("$PGBIN/pg_config" --pkglibdir)
    ext=$("$PGBIN/pg_config" --sharedir)/extension
    local file
    for file in "$out$lib"/jobs.so "$out$ext"/jobs.control "$out$ext"/jobs--*.sql; do
        local target="${file#"$out"}"
        install -m 644 "$file" "$target.new"
        mv -f "$target.new" "$target"
    done
    # Install scripts of earlier releases, for `CREATE EXTENSION jobs VERSION`
    # and the upgrade test (the package has the current one and the updates).
    for file in sql/jobs--*.sql; do
        [[ $file == sql/jobs--*--*.sql ]] && continue
        install -m 644 "$file" "$ext/$(basename "$file").new"
        mv -f "$ext/$(basename "$file").new" "$ext/$(basename "$file")"
    done
    chmod 755 "$lib/jobs.so"
    rm -rf "$out" "$out.log"
}

start() {
    bash pg_test/setup.sh
    install_extension

    if [ ! -f "$PGDATA/PG_VERSION" ]; then
        rm -rf "$PGDATA"
        install -d -o postgres -g postgres -m 700 "$PGDATA"
        as_postgres "$PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
            --no-instructions >/dev/null
        cat >>"$PGDATA/postgresql.conf" <<CONF
port = $PGPORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGDATA'
shared_preload_libraries = 'jobs'
max_connections = 200
log_line_prefix = '%m [%p] %b '
${JOBS_EXTRA_CONF:-}
CONF
    fi
    if ! as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
        as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -l "$PGDATA/server.log" -w -t 60 start >/dev/null
    fi
    psql "$DSN" -qX -v ON_ERROR_STOP=1 -c 'CREATE EXTENSION IF NOT EXISTS jobs' 2>&1 | grep -v '^NOTICE' || true
    echo "cluster running: psql \"$DSN\"   (log: $PGDATA/server.log)"
}

stop() {
    if [ -f "$PGDATA/PG_VERSION" ]; then
        as_postgres "$PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$PGDATA"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    psql) shift; exec psql "$DSN" "$@" ;;
    dsn) echo "$DSN" ;;
    *) echo "usage: $0 start|stop|psql|dsn" >&2; exit 2 ;;
esac
