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
