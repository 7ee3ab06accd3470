#!/usr/bin/env bash
# Installs what building, testing and running `jobs` needs on Debian 12, as
# root: PostgreSQL 15 with its server headers, clang, sudo, cargo-pgrx 0.18.1,
# pgrx's configuration for PostgreSQL 15, and the example workers' runtimes
# and pinned dependencies (tests/clients: Python with psycopg, Node with pg).
# Safe to run again: it only installs what is missing.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

missing=()
for pkg in postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# The clients' runtimes: whatever python3 (with venv) and node (with npm)
# the machine has, else Debian's.
command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3 python3-venv)
command -v node >/dev/null && command -v npm >/dev/null || missing+=(nodejs npm)
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! cargo pgrx --version 2>/dev/null | grep -qF "$PGRX_VERSION"; then
    echo "setup: installing cargo-pgrx $PGRX_VERSION (a few minutes)"
    cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
fi

if ! grep -q '^pg15' "${PGRX_HOME:-$HOME/.pgrx}/config.toml" 2>/dev/null; then
    cargo pgrx init --pg15 "$PG_CONFIG" >/dev/null
fi

clients=$(cd "$(dirname "$0")/../tests/clients" && pwd)
venv=$clients/python/.venv
if ! "$venv/bin/python" -c 'import psycopg' 2>/dev/null \
        || ! cmp -s "$clients/python/requirements.txt" "$venv/requirements.txt"; then
    echo "setup: installing the Python client's packages"
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$clients/python/requirements.txt"
    cp "$clients/python/requirements.txt" "$venv/requirements.txt"
fi
if ! cmp -s "$clients/node/package-lock.json" "$clients/node/node_modules/.installed-from-lock.json"; then
    echo "setup: installing the Node client's packages"
    (cd "$clients/node" && npm ci --silent --no-audit --no-fund)
    cp "$clients/node/package-lock.json" "$clients/node/node_modules/.installed-from-lock.json"
fi
