// A jobs worker in Node (pg).
//
//     PGHOST=127.0.0.1 PGDATABASE=postgres JOBS_QUEUE=default node worker.js
//
// LISTEN jobs and claim in batches. Every job claimed is "in hand" until it
// is finished: a heartbeat extends the lease of each of them, not only of the
// one running, so the rest of a batch does not expire while it waits. A lease
// token, not a connection, holds a job: after a lost connection the worker
// reconnects and goes on with the jobs in hand, extending and finishing them
// with their tokens while their leases hold. A job whose lease is gone
// (55000: expired and recovered, canceled; P0002: deleted) is given up, never
// finished twice. On SIGTERM or SIGINT it finishes the jobs in hand and exits.
// Connects with the standard PG* environment variables; prints a JSON summary
// line on exit.
"use strict";

const fs = require("fs");
const os = require("os");
const { Client } = require("pg");

const QUEUE = process.env.JOBS_QUEUE || "default";
const BATCH = Number(process.env.JOBS_BATCH || 10);
const LEASE = Number(process.env.JOBS_LEASE_SECONDS || 60);
const POLL_MS = 1000; // between claims when no NOTIFY arrives
const WORKER_ID = `node-${os.hostname()}-${process.pid}`;
const APPLICATION_NAME = "jobs-node-worker";

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Example handlers. A handler gets the payload and the job row and returns a
// JSON-serializable result, or throws to fail the attempt.
const handlers = {
  noop: async () => null,
  sleep: async (payload) => {
    await delay(1000 * (payload.seconds ?? 1));
    return { slept: payload.seconds ?? 1 };
  },
  // Runs until a file exists: work whose length the caller decides.
  wait_for_file: async (payload) => {
    while (!fs.existsSync(payload.path)) await delay(50);
    return { waited_for: payload.path };
  },
  flaky: async (payload, job) => {
    if (job.attempts < (payload.succeed_on_attempt ?? 2)) {
      throw new Error(`flaky failure on attempt ${job.attempts}`);
    }
    return { attempts: job.attempts };
  },
};

const LEASE_LOST = new Set(["P0002", "55000"]);
const stats = { completed: 0, failed: 0, lost_leases: 0, reconnects: 0 };
let stopping = false;
let wake = () => {};

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => {
    stopping = true;
    wake();
  });
}

// One connection, shared by the main loop and the heartbeat, made again on
// the first call after it broke. Errors of a dead connection carry no SQLSTATE.
const session = {
  client: null,
  connecting: null,
  connection() {
    if (this.client) return Promise.resolve(this.client);
    if (!this.connecting) {
      this.connecting = (async () => {
        const client = new Client({ application_name: APPLICATION_NAME });
        client.on("error", (e) => {
          console.error(`connection error: ${e.message}`);
          this.drop(client);
        });
        client.on("end", () => this.drop(client));
        client.on("notification", () => wake());
        try {
          await client.connect();
          await client.query("LISTEN jobs");
        } catch (e) {
          client.end().catch(() => {});
          throw e;
        }
        this.client = client;
        return client;
      })().finally(() => {
        this.connecting = null;
      });
    }
    return this.connecting;
  },
  drop(client) {
    if (this.client === client) {
      this.client = null;
      stats.reconnects += 1;
      client.end().catch(() => {});
    }
  },
  async query(text, values) {
    const client = await this.connection();
    return client.query(text, values);
  },
};

const isLeaseLost = (e) => LEASE_LOST.has(e.code);
// A lost connection: no SQLSTATE (socket closed), class 08, or the server's
// own 57P0x (terminated by an administrator, shut down).
const isConnectionLoss = (e) => !e.code || e.code.startsWith("08") || e.code.startsWith("57P");
const hand = new Map(); // job id -> { job, leaseUntil (ms), lost }

// Every third of the lease, extends the lease of every job in hand; after a
// failed call, tries again soon (on a new connection).
async function heartbeat() {
  for (;;) {
    let pause = (LEASE * 1000) / 3;
    for (const held of [...hand.values()]) {
      if (held.lost) continue;
      const asked = Date.now();
      try {
        await session.query("SELECT jobs.extend_lease($1, $2, make_interval(secs => $3))", [
          held.job.id,
          held.job.lease_token,
          LEASE,
        ]);
        held.leaseUntil = asked + LEASE * 1000;
      } catch (e) {
        if (isLeaseLost(e)) {
          held.lost = true;
          console.error(`job ${held.job.id}: lease lost: ${e.message}`);
        } else {
          console.error(`job ${held.job.id}: extend_lease: ${e.message}`);
          pause = 100;
        }
      }
    }
    await delay(pause);
  }
}

// Completes or fails a job with its token, across reconnects, for as long as
// its lease surely holds.
async function finish(held, result, error) {
  const { job } = held;
  let backoff = 100;
  while (!held.lost) {
    try {
      if (error === null) {
        const json = result === null || result === undefined ? null : JSON.stringify(result);
        await session.query("SELECT jobs.complete($1, $2, $3)", [job.id, job.lease_token, json]);
        stats.completed += 1;
      } else {
        await session.query("SELECT jobs.fail($1, $2, $3)", [job.id, job.lease_token, error]);
        stats.failed += 1;
      }
      return;
    } catch (e) {
      if (isLeaseLost(e)) {
        console.error(`job ${job.id}: lease lost: ${e.message}`);
        held.lost = true;
      } else if (!isConnectionLoss(e)) {
        throw e; // an SQL error the worker did not expect: a bug
      } else if (Date.now() >= held.leaseUntil) {
        console.error(`job ${job.id}: lease ran out while disconnected (${e.message})`);
        held.lost = true;
      } else {
        await delay(backoff);
        backoff = Math.min(backoff * 2, 1000);
      }
    }
  }
  stats.lost_leases += 1;
}

async function processJob(held) {
  const { job } = held;
  let result = null;
  let error = null;
  try {
    if (!held.lost) {
      const handler = handlers[job.job_type];
      if (!handler) throw new Error(`no handler for job type ${job.job_type}`);
      result = await handler(job.payload, job);
    }
  } catch (e) {
    error = `${e.name}: ${e.message}`;
  }
  try {
    await finish(held, result, error);
  } finally {
    hand.delete(job.id);
  }
}

// Resolves on a NOTIFY, a stop signal, or after ms.
function waitForWork(ms) {
  return new Promise((resolve) => {
    const timer = setTimeout(() => wake(), ms);
    wake = () => {
      clearTimeout(timer);
      wake = () => {};
      resolve();
    };
    if (stopping) wake();
  });
}

async function main() {
  const started = Date.now();
  heartbeat();
  let backoff = 100;
  while (!stopping) {
    let rows;
    try {
      ({ rows } = await session.query(
        `SELECT id, job_type, payload, attempts, lease_token
         FROM jobs.claim($1, $2, max_jobs => $3, lease => make_interval(secs => $4))`,
        [WORKER_ID, QUEUE, BATCH, LEASE],
      ));
      backoff = 100;
    } catch (e) {
      if (!isConnectionLoss(e)) throw e;
      console.error(`claim: connection lost (${e.message}); retrying in ${backoff} ms`);
      await delay(backoff);
      backoff = Math.min(backoff * 2, 5000);
      continue;
    }
    const held = rows.map((job) => ({ job, leaseUntil: Date.now() + LEASE * 1000, lost: false }));
    for (const h of held) hand.set(h.job.id, h);
    for (const h of held) await processJob(h); // the batch is ours: finish it even when stopping
    if (rows.length === 0) await waitForWork(POLL_MS);
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
