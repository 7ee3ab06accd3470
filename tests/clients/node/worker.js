// A jobs worker in Node (pg).
//
//     PGHOST=127.0.0.1 PGDATABASE=postgres JOBS_QUEUE=default node worker.js
//
// LISTEN jobs and claim in batches; extend the lease on a timer while a job
// runs; complete with the handler's result or fail with its error text;
// reconnect after a lost connection (jobs in hand are then left to lease
// recovery and run again); on SIGTERM or SIGINT finish the jobs in hand and
// exit. Connects with the standard PG* environment variables; prints a JSON
// summary line on exit.
"use strict";

const os = require("os");
const { Client } = require("pg");

const QUEUE = process.env.JOBS_QUEUE || "default";
const BATCH = Number(process.env.JOBS_BATCH || 10);
const LEASE = Number(process.env.JOBS_LEASE_SECONDS || 60);
const POLL_MS = 1000; // between claims when no NOTIFY arrives
const WORKER_ID = `node-${os.hostname()}-${process.pid}`;

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Example handlers. A handler gets the payload and the job row and returns a
// JSON-serializable result, or throws to fail the attempt.
const handlers = {
  noop: async () => null,
  sleep: async (payload) => {
    await delay(1000 * (payload.seconds ?? 1));
    return { slept: payload.seconds ?? 1 };
  },
  flaky: async (payload, job) => {
    if (job.attempts < (payload.succeed_on_attempt ?? 2)) {
      throw new Error(`flaky failure on attempt ${job.attempts}`);
    }
    return { attempts: job.attempts };
  },
};

const LEASE_LOST = new Set(["P0002", "55000"]); // recovered, canceled or finished elsewhere
const stats = { completed: 0, failed: 0, lost_leases: 0, reconnects: 0 };
let stopping = false;
let wake = () => {};

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    stopping = true;
    wake();
  });
}

// Resolves on a NOTIFY, a stop signal, the connection's end, or after ms.
function waitForWork(client, ms) {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      client.off("notification", done);
      client.off("end", done);
      wake = () => {};
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.on("notification", done);
    client.on("end", done);
    wake = done;
  });
}

async function processJob(client, job) {
  const heartbeat = setInterval(() => {
    client
      .query("SELECT jobs.extend_lease($1, $2, make_interval(secs => $3))", [job.id, job.lease_token, LEASE])
      .catch((e) => console.error(`job ${job.id}: extend_lease: ${e.message}`));
  }, (LEASE * 1000) / 3);
  let result = null;
  let error = null;
  try {
    const handler = handlers[job.job_type];
    if (!handler) throw new Error(`no handler for job type ${job.job_type}`);
    result = await handler(job.payload, job);
  } catch (e) {
    error = `${e.name}: ${e.message}`;
  } finally {
    clearInterval(heartbeat);
  }
  try {
    if (error === null) {
      const json = result === null || result === undefined ? null : JSON.stringify(result);
      await client.query("SELECT jobs.complete($1, $2, $3)", [job.id, job.lease_token, json]);
      stats.completed += 1;
    } else {
      await client.query("SELECT jobs.fail($1, $2, $3)", [job.id, job.lease_token, error]);
      stats.failed += 1;
    }
  } catch (e) {
    if (!LEASE_LOST.has(e.code)) throw e;
    stats.lost_leases += 1;
    console.error(`job ${job.id}: ${e.message}`);
  }
}

async function serve(client) {
  while (!stopping) {
    const { rows } = await client.query(
      `SELECT id, job_type, payload, attempts, lease_token
       FROM jobs.claim($1, $2, max_jobs => $3, lease => make_interval(secs => $4))`,
      [WORKER_ID, QUEUE, BATCH, LEASE],
    );
    for (const job of rows) await processJob(client, job); // ours: finish even when stopping
    if (rows.length === 0) await waitForWork(client, POLL_MS);
  }
}

async function main() {
  const started = Date.now();
  let backoff = 100;
  while (!stopping) {
    const client = new Client({ application_name: "jobs-node-worker" });
    client.on("error", (e) => console.error(`connection error: ${e.message}`));
    try {
      await client.connect();
      backoff = 100;
      await client.query("LISTEN jobs");
      await serve(client);
    } catch (e) {
      if (stopping) break;
      stats.reconnects += 1;
      console.error(`connection lost (${e.message}); reconnecting in ${backoff} ms`);
      await delay(backoff);
      backoff = Math.min(backoff * 2, 5000);
    } finally {
      await client.end().catch(() => {});
    }
  }
  stats.seconds = (Date.now() - started) / 1000;
  console.log(JSON.stringify(stats));
}

main().then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
