#!/usr/bin/env bash
# Debian packages of `jobs`, one per PostgreSQL major, laid out as Debian's
# and PGDG's PostgreSQL packages lay out extensions, so a server needs no
# Rust to install it:
#   target/packages/postgresql-NN-jobs_VERSION-1_amd64.deb
#     /usr/lib/postgresql/NN/lib/jobs.so
#     /usr/share/postgresql/NN/extension/jobs.control, jobs--*.sql
#
#   bash pg_test/package.sh build [MAJOR ...]    build (release) the packages
#   bash pg_test/package.sh check [MAJOR ...]    build, then check each without
#       touching the system: unpack it, check where its files sit, install them
#       into the project's own tree of that major, start a cluster with the
#       library preloaded and run a smoke test of the API and the worker
#   bash pg_test/package.sh install-system MAJOR  dpkg -i the package into
#       this system (needs Debian's postgresql-MAJOR, so 15 on Debian 12) and
#       run the same smoke test on a cluster of the system's PostgreSQL.
#       Writes to the system: not part of the test command.
# MAJOR defaults to PG_VERSIONS, else every supported major.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
cd "$JOBS_ROOT"

VERSION=$(sed -nE 's/^version = "(.*)"/\1/p' Cargo.toml | head -1)
OUT=$JOBS_ROOT/target/packages

deb_of() { echo "$OUT/postgresql-$1-jobs_${VERSION}-1_amd64.deb"; }

# Debian's package of a library the extension links to.
debian_dependency() {
    case "$1" in
        libc.so.6 | libm.so.6 | libpthread.so.0 | libdl.so.2 | ld-linux-x86-64.so.2) echo libc6 ;;
        libgcc_s.so.1) echo libgcc-s1 ;;
        *) echo "package: jobs.so needs $1, which no dependency of the package provides" >&2; return 1 ;;
    esac
}

build() {
    local major=$1 pg_config stage work lib ext needed deps glibc
    pg_config=$(jobs_pg_config "$major")
    work=$(mktemp -d /tmp/jobs-deb.XXXXXX)
    JOBS_BUILD=release jobs_package_into "$pg_config" "$work/pgrx"
    lib=$work/pgrx$("$pg_config" --pkglibdir)
    ext=$work/pgrx$("$pg_config" --sharedir)/extension
    stage=$work/stage
    install -d "$stage/DEBIAN" "$stage/usr/lib/postgresql/$major/lib" \
        "$stage/usr/share/postgresql/$major/extension" "$stage/usr/share/doc/postgresql-$major-jobs"
    install -m 755 "$lib/jobs.so" "$stage/usr/lib/postgresql/$major/lib/jobs.so"
    strip --strip-debug "$stage/usr/lib/postgresql/$major/lib/jobs.so"
    install -m 644 "$ext"/jobs.control "$ext"/jobs--*.sql "$stage/usr/share/postgresql/$major/extension/"
    install -m 644 README.md "$stage/usr/share/doc/postgresql-$major-jobs/README.md"
    printf 'jobs %s\nLicense: PostgreSQL\n' "$VERSION" >"$stage/usr/share/doc/postgresql-$major-jobs/copyright"

    deps=("postgresql-$major")
    while read -r needed; do
        deps+=("$(debian_dependency "$needed")")
    done < <(readelf -d "$lib/jobs.so" | sed -nE 's/.*\(NEEDED\).*\[(.*)\]/\1/p')
    glibc=$(objdump -T "$lib/jobs.so" | grep -oE 'GLIBC_[0-9.]+' | sed 's/GLIBC_//' | sort -uV | tail -1)
    deps=("${deps[@]/#libc6/libc6 (>= $glibc)}")
    cat >"$stage/DEBIAN/control" <<CONTROL
Package: postgresql-$major-jobs
Version: $VERSION-1
Architecture: amd64
Maintainer: jobs developers <jobs@localhost>
Section: database
Priority: optional
Installed-Size: $(du -sk "$stage/usr" | cut -f1)
Depends: $(printf '%s\n' "${deps[@]}" | sort -u | paste -sd, | sed 's/,/, /g')
Description: durable job queue and cron scheduler inside PostgreSQL $major
 jobs turns the database into a job queue and cron scheduler: enqueue with one
 SQL call, workers in any language claim, extend, complete and fail jobs
 through SQL, and a background worker fires schedules, recovers expired
 leases and prunes history. Add 'jobs' to shared_preload_libraries, then
 CREATE EXTENSION jobs.
CONTROL
    mkdir -p "$OUT"
    dpkg-deb --root-owner-group --build "$stage" "$(deb_of "$major")" >/dev/null
    rm -rf "$work"
    jobs_log "package: $(deb_of "$major")"
}

# The smoke test: the API end to end, and the worker firing a schedule.
smoke() {
    local psql=$1 dsn=$2
    "$psql" "$dsn" -qAtX -v ON_ERROR_STOP=1 <<'SQL' >/dev/null
CREATE EXTENSION jobs;
SELECT jobs.enqueue('smoke', '{"n": 1}', queue => 'smoke');
SELECT jobs.complete(c.id, c.lease_token, '{"ok": true}') FROM jobs.claim('smoke-worker', 'smoke') c;
DO $$ BEGIN
    IF (SELECT state FROM jobs.job WHERE queue = 'smoke') <> 'completed' THEN
        RAISE EXCEPTION 'smoke: the job did not complete';
    END IF;
END $$;
SELECT jobs.schedule('smoke', '* * * * * *', 'beat', queue => 'smoke-beat');
SQL
    local fired=0
    for _ in $(seq 300); do
        fired=$("$psql" "$dsn" -qAtX -c "SELECT count(*) FROM jobs.job WHERE queue = 'smoke-beat'")
        [ "$fired" -gt 0 ] && break
        sleep 0.1
    done
    [ "$fired" -gt 0 ] || { echo "package: the background worker fired no schedule in 30 s" >&2; return 1; }
    "$psql" "$dsn" -qAtX -c "SELECT backend_type FROM pg_stat_activity WHERE backend_type = 'jobs worker'" | grep -q .
}

check() {
    local major=$1 work tree file expected pgdata port
    [ -f "$(deb_of "$major")" ] || build "$major"
    work=$(mktemp -d /tmp/jobs-deb-check.XXXXXX)
    dpkg-deb -x "$(deb_of "$major")" "$work/root"
    dpkg-deb -f "$(deb_of "$major")" Package Version Depends | sed 's/^/package: /'
    # Where Debian's pg_config of that major puts extensions.
    expected=$(printf '%s\n' "usr/lib/postgresql/$major/lib/jobs.so" \
        "usr/share/postgresql/$major/extension/jobs.control" \
        "usr/share/postgresql/$major/extension/jobs--$VERSION.sql")
    if [ "$major" = 15 ]; then
        [ "$("$JOBS_SYSTEM_PG_CONFIG" --pkglibdir)" = /usr/lib/postgresql/15/lib ] \
            && [ "$("$JOBS_SYSTEM_PG_CONFIG" --sharedir)" = /usr/share/postgresql/15 ] \
            || { echo "package: Debian's pg_config no longer matches the package layout" >&2; return 1; }
    fi
    while read -r file; do
        [ -f "$work/root/$file" ] || { echo "package: $file missing from $(deb_of "$major")" >&2; return 1; }
    done <<<"$expected"
    if (cd "$work/root" && find . -type f | grep -vE "^\./usr/(lib/postgresql/$major/lib|share/postgresql/$major/extension|share/doc/postgresql-$major-jobs)/"); then
        echo "package: files outside the extension directories" >&2
        return 1
    fi

    # Into the project's own tree of that major, then a cluster of it.
    tree=$(jobs_pg_tree "$major")
    for file in "$work/root/usr/lib/postgresql/$major/lib/"* "$work/root/usr/share/postgresql/$major/extension/"*; do
        case "$file" in
            */lib/*) jobs_replace_file "$file" "$tree/lib/$(basename "$file")" ;;
            *) jobs_replace_file "$file" "$tree/share/extension/$(basename "$file")" ;;
        esac
    done
    pgdata=$(mktemp -u "/tmp/jobs-package-$major.XXXXXX")
    port=$((28940 + major))
    jobs_cluster_start "$tree/bin/pg_config" "$pgdata" "$port"
    if smoke "$tree/bin/psql" "$(jobs_dsn "$port")"; then
        jobs_cluster_stop "$tree/bin/pg_config" "$pgdata"
    else
        tail -20 "$pgdata/server.log" >&2
        jobs_cluster_stop "$tree/bin/pg_config" "$pgdata"
        return 1
    fi
    rm -rf "$work"
    jobs_log "package: postgresql-$major-jobs installs and runs on PostgreSQL $major"
}

install_system() {
    local major=$1 pgdata=/tmp/jobs-package-system port=28939 bin=/usr/lib/postgresql/$1/bin
    [ -f "$(deb_of "$major")" ] || build "$major"
    dpkg -i "$(deb_of "$major")"
    jobs_cluster_stop "$bin/pg_config" "$pgdata"
    jobs_cluster_start "$bin/pg_config" "$pgdata" "$port"
    local ok=0
    smoke "$bin/psql" "$(jobs_dsn "$port")" || ok=$?
    jobs_cluster_stop "$bin/pg_config" "$pgdata"
    ((ok == 0)) && jobs_log "package: postgresql-$major-jobs installed with dpkg and ran on the system's PostgreSQL $major"
    return "$ok"
}

command=${1:-}
shift || true
majors=("$@")
((${#majors[@]})) || mapfile -t majors < <(jobs_majors)
case "$command" in
    build) for m in "${majors[@]}"; do build "$m"; done ;;
    check) for m in "${majors[@]}"; do build "$m"; check "$m"; done ;;
    install-system) install_system "${majors[0]}" ;;
    *) echo "usage: $0 build|check|install-system [MAJOR ...]" >&2; exit 2 ;;
esac
