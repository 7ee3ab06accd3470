#!/usr/bin/env bash
# The test command: everything CI runs, on a fresh machine or a warm one.
#
#   bash pg_test/test.sh                  # every supported major (14 … 18)
#   PG_VERSIONS=17 bash pg_test/test.sh   # one (or "15 18": some)
#
#  1. installs what is missing (pg_test/setup.sh): Debian packages,
#     cargo-pgrx, the project's own PostgreSQL trees in target/postgres;
#  2. installs `jobs` into the system's PostgreSQL 15 and starts a cluster
#     of it (pg_test/isolation.sh), to prove at the end that nothing below
#     touched it;
#  3. for each major: `cargo pgrx test` (Rust unit tests and the in-database
#     #[pg_test]s), then on a throwaway cluster of that major with the
#     library preloaded the plain-SQL regression suite (pg_test/regress.sh)
#     and every black-box test in tests/ over real connections, then the
#     Debian package of that major (pg_test/package.sh check);
#  4. pg_upgrade from each older major of the run to the newest
#     (tests/pg_upgrade.rs);
#  5. checks the system cluster of step 2: same postmaster and worker, no
#     file of the system's PostgreSQL changed.
# Tests install only into the trees in target/postgres and start only
# clusters of their own.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$JOBS_ROOT"

started=$SECONDS
majors=$(jobs_majors)
bash pg_test/setup.sh $majors
cargo fmt --check

bash pg_test/isolation.sh start
trap 'bash pg_test/isolation.sh stop' EXIT

# The black-box tests are plain clients of a server: built once, for any
# major (with the pgrx of the run's first, which needs to be built anyway).
# Those that share the cluster with others run side by side; those that
# restart it or its worker run alone after them, and so does the fuzzer: it
# calls jobs.tick(), whose announcements of due jobs add to the worker's
# (blackbox asserts that a delayed job is announced once); and so do the
# claim-position tests: their held snapshots would slow the others' drains and
# hold up their CREATE INDEX CONCURRENTLY.
side_by_side=(blackbox security clients upgrade backup replication sql_jobs)
alone=(fuzz worker faults positions)
features=(--no-default-features --features "blackbox pg$(echo "$majors" | head -1)")
all_tests=()
for t in "${side_by_side[@]}" "${alone[@]}" pg_upgrade; do all_tests+=(--test "$t"); done
cargo test --quiet "${features[@]}" "${all_tests[@]}" --no-run

# Runs black-box test binaries at once, each with its output in a file;
# prints them in order; fails if any failed.
run_side_by_side() {
    local dir pids=() names=("$@") t i failed=0
    dir=$(mktemp -d /tmp/jobs-blackbox.XXXXXX)
    for t in "$@"; do
        cargo test --quiet "${features[@]}" --test "$t" -- --nocapture --test-threads=1 >"$dir/$t.log" 2>&1 &
        pids+=($!)
    done
    for i in "${!pids[@]}"; do
        wait "${pids[$i]}" || { failed=1; echo "tests/${names[$i]}.rs failed" >&2; }
    done
    for t in "$@"; do
        echo "---- tests/$t.rs"
        cat "$dir/$t.log"
    done
    rm -rf "$dir"
    return "$failed"
}

summary=()
for major in $majors; do
    major_started=$SECONDS
    jobs_log "PostgreSQL $major: unit and in-database tests"
    pgrx_data=$(mktemp -u /tmp/jobs-pgrx-test-$major.XXXXXX)
    cargo pgrx test "pg$major" --runas postgres --pgdata "$pgrx_data"
    rm -rf "$pgrx_data"

    export JOBS_PG=$major JOBS_PGPORT=$((28900 + major))
    export JOBS_PGDATA=$(mktemp -u "/tmp/jobs-test-cluster-$major.XXXXXX")
    trap 'bash pg_test/cluster.sh stop; bash pg_test/isolation.sh stop' EXIT
    bash pg_test/cluster.sh start
    jobs_log "PostgreSQL $major: regression suite"
    bash pg_test/regress.sh
    jobs_log "PostgreSQL $major: black-box tests"
    export JOBS_TEST_DSN=$(bash pg_test/cluster.sh dsn) JOBS_PGBIN=$(bash pg_test/cluster.sh bindir)
    run_side_by_side "${side_by_side[@]}"
    for t in "${alone[@]}"; do
        cargo test --quiet "${features[@]}" --test "$t" -- --nocapture --test-threads=1
    done
    bash pg_test/cluster.sh stop
    trap 'bash pg_test/isolation.sh stop' EXIT

    jobs_log "PostgreSQL $major: Debian package"
    bash pg_test/package.sh check "$major"
    summary+=("PostgreSQL $major: $((SECONDS - major_started)) s")
done

# pg_upgrade from each older major to the newest, now that every tree has
# `jobs` installed.
newest=$(echo "$majors" | tail -1)
for major in $majors; do
    [ "$major" = "$newest" ] && continue
    major_started=$SECONDS
    jobs_log "pg_upgrade $major -> $newest"
    JOBS_UPGRADE_FROM_BIN=$("$(jobs_pg_config "$major")" --bindir) JOBS_PGBIN=$("$(jobs_pg_config "$newest")" --bindir) \
        JOBS_TEST_PORT_BASE=28960 cargo test --quiet "${features[@]}" --test pg_upgrade -- --nocapture
    summary+=("pg_upgrade $major -> $newest: $((SECONDS - major_started)) s")
done

bash pg_test/isolation.sh check
printf '%s\n' "${summary[@]}"
echo "test.sh: every test of PostgreSQL ${majors//$'\n'/, } passed in $((SECONDS - started)) s"
