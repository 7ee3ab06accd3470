#!/usr/bin/env bash
# The test command: everything CI runs, on a fresh machine or a warm one.
#  1. installs what is missing (pg_test/setup.sh);
#  2. `cargo pgrx test`: Rust unit tests and the in-database #[pg_test]s;
#  3. on a throwaway cluster with the library preloaded, started and stopped
#     here: the plain-SQL regression suite (pg_test/regress.sh), then the
#     black-box tests (tests/) over real connections, the example workers
#     in Python and Node and the upgrade from earlier releases among them.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"

bash pg_test/setup.sh

pgrx_data=$(mktemp -u /tmp/jobs-pgrx-test.XXXXXX)
cargo pgrx test pg15 --runas postgres --pgdata "$pgrx_data"
rm -rf "$pgrx_data"

export JOBS_PGDATA=$(mktemp -u /tmp/jobs-test-cluster.XXXXXX)
export JOBS_PGPORT=${JOBS_PGPORT:-28816}
trap 'bash pg_test/cluster.sh stop' EXIT
bash pg_test/cluster.sh start
bash pg_test/regress.sh
JOBS_TEST_DSN=$(bash pg_test/cluster.sh dsn) cargo test --features blackbox \
    --test blackbox --test security --test fuzz --test worker --test clients --test upgrade --test faults \
    -- --nocapture --test-threads=1
