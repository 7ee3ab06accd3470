//! Helpers shared by the black-box test binaries.
#![allow(dead_code)]

use postgres::{Client, NoTls};
use std::time::{Duration, Instant};

/// How long to wait for what must happen: it ends a test that would
/// otherwise hang, and bounds nothing that is asserted.
pub const PATIENCE: Duration = Duration::from_secs(60);

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

/// Runs `sql` (roles, grants, revokes) on the test cluster holding a lock
/// that every test binary takes for the same: PostgreSQL fails concurrent
/// GRANTs and REVOKEs on one object (the schema jobs, its functions) with
/// "tuple concurrently updated", and the binaries run side by side.
pub fn change_privileges(sql: &str) {
    let mut admin = connect();
    let mut tx = admin.transaction().unwrap();
    tx.execute("SELECT pg_advisory_xact_lock(2026120101)", &[]).unwrap();
    tx.batch_execute(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    tx.commit().unwrap();
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
    as_postgres(
        &format!("{}/pg_ctl", pg_bin()),
        &["restart", "-m", "immediate", "-w", "-t", "120", "-D", &pgdata, "-l", &format!("{pgdata}/server.log")],
    );
}

/// A small deterministic PRNG (xorshift), so the tests need no extra crate.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    pub fn chance(&mut self, one_in: usize) -> bool {
        self.below(one_in) == 0
    }
}

pub fn job_state(db: &mut Client, id: i64) -> String {
    db.query_one("SELECT state::text FROM jobs.job WHERE id = $1", &[&id]).unwrap().get(0)
}

/// Waits (PATIENCE) until job `id` is in `state`; panics with `what` if not.
pub fn wait_for_state(db: &mut Client, id: i64, state: &str, what: &str) {
    wait_for(PATIENCE, || (job_state(db, id) == state).then_some(())).unwrap_or_else(|| panic!("{what}"));
}

/// When (epoch seconds) job `id`'s newest lease_expired attempt was recorded.
pub fn expired_at(db: &mut Client, id: i64) -> f64 {
    db.query_one(
        "SELECT extract(epoch FROM max(finished_at))::float8 FROM jobs.job_run
         WHERE job_id = $1 AND outcome = 'lease_expired'",
        &[&id],
    )
    .unwrap()
    .get(0)
}

/// Jobs of `queue` (a schedule's) and how many occurrences among them came twice.
pub fn firings_and_repeats(db: &mut Client, queue: &str) -> (i64, i64) {
    let row = db
        .query_one(
            "SELECT count(*), count(*) - count(DISTINCT scheduled_for) FROM jobs.job WHERE queue = $1",
            &[&queue],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Every row of the extension's tables in `db`, as JSON, in a stable order.
pub fn contents(db: &mut Client) -> String {
    db.query_one(
        "SELECT jsonb_build_object(
             'job', (SELECT jsonb_agg(to_jsonb(j) ORDER BY j.id) FROM jobs.job j),
             -- a completed attempt's row has no id since 0.3.0 (its job is its row)
             'job_run', (SELECT jsonb_agg(to_jsonb(r) - 'id' ORDER BY r.job_id, r.id) FROM jobs.job_run r),
             'schedule', (SELECT jsonb_agg(to_jsonb(s) ORDER BY s.id) FROM jobs.schedule s))::text",
        &[],
    )
    .unwrap()
    .get(0)
}

/// `after` with only the columns `before` has, row by row: an update may add
/// columns (with their defaults), and must change nothing else.
pub fn same_columns_as(before: &str, after: &str) -> serde_json::Value {
    let before: serde_json::Value = serde_json::from_str(before).unwrap();
    let mut after: serde_json::Value = serde_json::from_str(after).unwrap();
    for (table, rows) in after.as_object_mut().unwrap() {
        let (Some(rows), Some(old_rows)) = (rows.as_array_mut(), before[table].as_array()) else { continue };
        for (row, old) in rows.iter_mut().zip(old_rows) {
            let old = old.as_object().unwrap();
            row.as_object_mut().unwrap().retain(|column, _| old.contains_key(column));
        }
    }
    after
}

/// Fills a database that has the extension with jobs in every state (with
/// payloads, results, errors and leases), their history, and schedules
/// enabled and paused. One job stays running on a lease of `lease`.
pub fn fill_every_state(db: &mut Client, lease: &str) {
    db.batch_execute(&format!(
        "SELECT jobs.enqueue_batch('noop', array_fill('{{\"n\": 1}}'::jsonb, ARRAY[6]), queue => 'u');
         SELECT jobs.enqueue('later', '{{\"n\": 2}}', queue => 'u', run_at => now() + interval '1 day');
         SELECT jobs.enqueue('charge', '{{\"order\": 7}}', queue => 'u', idempotency_key => 'charge-7');
         SELECT jobs.complete(id, lease_token, '{{\"ok\": true}}') FROM jobs.claim('w1', 'u');
         SELECT jobs.fail(id, lease_token, 'boom') FROM jobs.claim('w1', 'u');
         SELECT jobs.fail(id, lease_token, 'fatal', retryable => false) FROM jobs.claim('w1', 'u');
         SELECT jobs.cancel(id) FROM jobs.claim('w1', 'u');
         SELECT count(*) FROM jobs.claim('w2', 'u', lease => '{lease}');
         SELECT jobs.schedule('nightly', '0 3 * * *', 'report', timezone => 'Europe/Paris');
         SELECT jobs.schedule('paused', '*/5 * * * *', 'ping', enabled => false);"
    ))
    .unwrap();
}

/// A throwaway cluster of the test cluster's major, run as the postgres
/// user, with `jobs` preloaded; stopped and removed when dropped.
pub struct Cluster {
    pub port: u16,
    pub data: String,
    pub bin: String,
}

/// Throwaway clusters take the ports above this one: JOBS_TEST_PORT_BASE,
/// else the test cluster's.
fn base_port() -> u16 {
    if let Ok(port) = std::env::var("JOBS_TEST_PORT_BASE") {
        return port.parse().expect("JOBS_TEST_PORT_BASE is a port");
    }
    dsn()
        .split_whitespace()
        .find_map(|pair| pair.strip_prefix("port="))
        .and_then(|port| port.parse().ok())
        .expect("a port in JOBS_TEST_DSN")
}

/// Runs `program` as the postgres user. A PostgreSQL program runs with its
/// tree's libraries first: the project's trees are relocatable, and without
/// it a server's walreceiver loads the system's older libpq.
pub fn as_postgres(program: &str, args: &[&str]) -> std::process::Output {
    let libraries = std::path::Path::new(program).parent().map(|bin| bin.join("../lib"));
    let library_path = libraries.map(|l| format!("LD_LIBRARY_PATH={}", l.display())).unwrap_or_default();
    let output = std::process::Command::new("sudo")
        .args(["-u", "postgres", "env", &library_path, program])
        .args(args)
        .current_dir("/tmp")
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

impl Cluster {
    /// initdb and start with `conf` appended to postgresql.conf; `offset`
    /// picks its port above the test cluster's.
    pub fn start(name: &str, offset: u16, conf: &str) -> Cluster {
        Cluster::start_with(&pg_bin(), name, offset, conf)
    }

    pub fn start_with(bin: &str, name: &str, offset: u16, conf: &str) -> Cluster {
        let cluster = Cluster::init(bin, name, offset, conf, &[]);
        cluster.pg_ctl(&["start"]);
        cluster
    }

    /// initdb (with `initdb_args` besides the usual) only.
    pub fn init(bin: &str, name: &str, offset: u16, conf: &str, initdb_args: &[&str]) -> Cluster {
        let port = base_port() + 100 + offset;
        let data = format!("/tmp/jobs-{name}-{}", std::process::id());
        let cluster = Cluster { port, data: data.clone(), bin: bin.to_string() };
        cluster.stop_quietly();
        let _ = std::fs::remove_dir_all(&data);
        let mut args = vec![
            "-D",
            &data,
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C.UTF-8",
            "--no-instructions",
        ];
        args.extend_from_slice(initdb_args);
        as_postgres(&format!("{bin}/initdb"), &args);
        cluster.append_conf(&format!(
            "port = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = '{data}'\n\
             shared_preload_libraries = 'jobs'\nlog_line_prefix = '%m [%p] %b '\n{conf}\n"
        ));
        cluster
    }

    /// A cluster in a data directory made otherwise (pg_basebackup).
    pub fn adopt(bin: &str, data: &str, offset: u16) -> Cluster {
        Cluster { port: base_port() + 100 + offset, data: data.to_string(), bin: bin.to_string() }
    }

    pub fn append_conf(&self, conf: &str) {
        let path = format!("{}/postgresql.conf", self.data);
        let text = String::from_utf8(as_postgres("/bin/cat", &[&path]).stdout).unwrap() + conf;
        let mut child = std::process::Command::new("sudo")
            .args(["-u", "postgres", "tee", &path])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        use std::io::Write;
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        assert!(child.wait().unwrap().success());
    }

    pub fn pg_ctl(&self, args: &[&str]) {
        let log = format!("{}/server.log", self.data);
        let mut all = vec!["-D", &self.data, "-l", &log, "-w", "-t", "120"];
        all.extend_from_slice(args);
        as_postgres(&format!("{}/pg_ctl", self.bin), &all);
    }

    fn stop_quietly(&self) {
        let pg_ctl = format!("{}/pg_ctl", self.bin);
        let _ = std::process::Command::new("sudo")
            .args(["-u", "postgres", &pg_ctl, "-D", &self.data, "-m", "immediate", "stop"])
            .current_dir("/tmp")
            .output();
    }

    pub fn dsn(&self, database: &str) -> String {
        format!("host=127.0.0.1 port={} user=postgres dbname={database}", self.port)
    }

    pub fn connect(&self, database: &str) -> Client {
        connect_to(&self.dsn(database))
    }

    /// Runs one of the cluster's own programs (pg_dump, psql …) as root.
    pub fn run(&self, program: &str, args: &[&str]) -> std::process::Output {
        let output = std::process::Command::new(format!("{}/{program}", self.bin))
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    pub fn major(&self) -> u32 {
        major_of(&self.bin)
    }

    pub fn log(&self) -> String {
        String::from_utf8_lossy(&as_postgres("/bin/cat", &[&format!("{}/server.log", self.data)]).stdout).into_owned()
    }

    /// The pid of the jobs background worker, if it runs.
    pub fn worker_pid(&self) -> Option<i32> {
        let mut client = Client::connect(&self.dsn("postgres"), NoTls).ok()?;
        client
            .query_opt("SELECT pid FROM pg_stat_activity WHERE backend_type = 'jobs worker'", &[])
            .ok()
            .flatten()
            .map(|row| row.get(0))
    }
}

/// The major version of the PostgreSQL in bin directory `bin`.
pub fn major_of(bin: &str) -> u32 {
    let out = std::process::Command::new(format!("{bin}/pg_config")).arg("--version").output().expect("pg_config");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().nth(1).and_then(|v| v.split('.').next()).and_then(|m| m.parse().ok()).expect("a version")
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop_quietly();
        let _ = std::process::Command::new("rm").args(["-rf", &self.data]).status();
    }
}
