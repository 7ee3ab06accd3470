//! Helpers shared by the black-box test binaries.
#![allow(dead_code)]

use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

pub fn dsn() -> String {
    std::env::var("JOBS_TEST_DSN").expect("JOBS_TEST_DSN must name the test cluster; pg_test/test.sh sets it")
}

pub fn connect() -> Client {
    connect_to(&dsn())
}

pub fn connect_to(dsn: &str) -> Client {
    Client::connect(dsn, NoTls).unwrap_or_else(|e| panic!("connect to {dsn}: {e}"))
}

/// The test cluster's DSN with another database.
pub fn dsn_for(database: &str) -> String {
    dsn()
        .split_whitespace()
        .map(|pair| if pair.starts_with("dbname=") { format!("dbname={database}") } else { pair.to_string() })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates database `name` on the test cluster with `options` (after
/// dropping what a failed run may have left); returns its DSN.
pub fn create_database(name: &str, options: &str) -> String {
    let mut admin = connect();
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {name} {options}")).unwrap();
    dsn_for(name)
}

pub fn drop_database(name: &str) {
    connect().batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).unwrap();
}

/// A name no other test (or earlier run) uses.
pub fn fresh_name(test: &str) -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{test}-{}-{nanos}", std::process::id())
}

/// Polls `probe` every 50 ms until it returns Some or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The bin directory of the PostgreSQL the test cluster runs (pg_test/test.sh
/// sets it from that major's pg_config).
pub fn pg_bin() -> String {
    std::env::var("JOBS_PGBIN").expect("JOBS_PGBIN must name the test cluster's PostgreSQL bin directory")
}

pub fn pgdata() -> String {
    std::env::var("JOBS_PGDATA").expect("JOBS_PGDATA must name the test cluster's data directory")
}

/// `pg_ctl restart -m immediate` of the test cluster: a crash and recovery.
pub fn restart_immediately() {
    let pgdata = pgdata();
    let status = std::process::Command::new("sudo")
        .args(["-u", "postgres", &format!("{}/pg_ctl", pg_bin()), "restart", "-m", "immediate", "-w", "-t", "120"])
        .args(["-D", &pgdata, "-l", &format!("{pgdata}/server.log")])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run pg_ctl");
    assert!(status.success(), "pg_ctl restart -m immediate");
}
