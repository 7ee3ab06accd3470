#!/usr/bin/env bash
# Installs what building, testing and running `jobs` needs on Debian 12, as
# root: PostgreSQL 15 with its server headers, clang, sudo, cargo-pgrx 0.18.1,
# and pgrx's configuration for PostgreSQL 15. Safe to run again: it only
# installs what is missing.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config

[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

missing=()
for pkg in postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
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
