#!/usr/bin/env bash
# pg_regress's psql launcher for pg_test/sql: runs psql and drops the
# LOCATION lines that `\set VERBOSITY verbose` prints, which name the
# server's C source lines and so change between PostgreSQL builds. The
# SQLSTATE and message of each error stay.
set -o pipefail
"$@" 2>&1 | { grep -v '^LOCATION:  ' || true; }
