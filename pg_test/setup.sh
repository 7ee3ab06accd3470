#!/usr/bin/env bash
# Installs what building, testing and running `jobs` needs on Debian 12, as
# root: Debian's PostgreSQL 15 with its server headers (the demo's server),
# clang, sudo, cargo-pgrx 0.18.1, the project's own PostgreSQL trees of the
# given majors (default: PG_VERSIONS, else all) in target/postgres with
# pgrx's configuration for them, and the example workers' runtimes and
# pinned dependencies (tests/clients: Python with psycopg, Node with pg).
# Safe to run again: it only installs what is missing.
#
#   bash pg_test/setup.sh          # PG_VERSIONS, else 14 … 18
#   bash pg_test/setup.sh 17       # one major's tree
#   bash pg_test/setup.sh system   # no tree: the system's PostgreSQL only
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PGRX_VERSION=0.18.1

missing=()
for pkg in postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# The clients' runtimes and the fetching of PostgreSQL trees: whatever
# python3 (with venv and pip) and node (with npm) the machine has, else Debian's.
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
command -v python3 >/dev/null && python3 -m pip --version >/dev/null 2>&1 || missing+=(python3-pip)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
    jobs_log "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -qF "$PGRX_VERSION"; then
    jobs_log "setup: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

majors=("$@")
((${#majors[@]})) || mapfile -t majors < <(jobs_majors)
trees=()
for major in "${majors[@]}"; do
    [ "$major" = system ] && continue
    jobs_pg_tree "$major" >/dev/null
    trees+=("$major")
done
((${#trees[@]} == 0)) || jobs_pgrx_init "${trees[@]}"

clients=$JOBS_ROOT/tests/clients
venv=$clients/python/.venv
if ! "$venv/bin/python" -c 'import psycopg' 2>/dev/null \
        || ! cmp -s "$clients/python/requirements.txt" "$venv/requirements.txt"; then
    jobs_log "setup: installing the Python client's packages"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$clients/python/requirements.txt"
    cp "$clients/python/requirements.txt" "$venv/requirements.txt"
fi
if ! cmp -s "$clients/node/package-lock.json" "$clients/node/node_modules/.installed-from-lock.json"; then
    jobs_log "setup: installing the Node client's packages"
    (cd "$clients/node" && npm ci --silent --no-audit --no-fund)
    cp "$clients/node/package-lock.json" "$clients/node/node_modules/.installed-from-lock.json"
fi
