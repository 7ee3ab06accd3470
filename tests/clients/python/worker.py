"""A jobs worker in Python (psycopg 3).

    PGHOST=127.0.0.1 PGDATABASE=postgres JOBS_QUEUE=default python worker.py

LISTEN jobs and claim in batches. Every job claimed is "in hand" until it is
finished: a heartbeat thread extends the lease of each of them, not only of
the one running, so the rest of a batch does not expire while it waits. A
lease token, not a connection, holds a job: after a lost connection the
worker reconnects and goes on with the jobs in hand, extending and finishing
them with their tokens while their leases hold. A job whose lease is gone
(55000: expired and recovered, canceled; P0002: deleted) is given up, never
finished twice. On SIGTERM or SIGINT it finishes the jobs in hand and exits,
printing a JSON summary line.
"""

import json
import os
import signal
import socket
import sys
import threading
import time

import psycopg
from psycopg import errors
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

DSN = os.environ.get("JOBS_DSN", "")  # empty: the standard PG* environment variables
QUEUE = os.environ.get("JOBS_QUEUE", "default")
BATCH = int(os.environ.get("JOBS_BATCH", "10"))
LEASE = float(os.environ.get("JOBS_LEASE_SECONDS", "60"))
POLL = 1.0  # seconds between claims when no NOTIFY arrives
WORKER_ID = f"python-{socket.gethostname()}-{os.getpid()}"
APPLICATION_NAME = "jobs-python-worker"

HANDLERS = {}


def handler(job_type):
    def register(fn):
        HANDLERS[job_type] = fn
        return fn

    return register


# Example handlers. A handler gets the payload and the job row and returns a
# JSON-serializable result, or raises to fail the attempt.
@handler("noop")
def noop(payload, job):
    return None


@handler("sleep")
def sleep(payload, job):
    time.sleep(float(payload.get("seconds", 1)))
    return {"slept": payload.get("seconds", 1)}


@handler("wait_for_file")
def wait_for_file(payload, job):
    """Runs until a file exists: work whose length the caller decides."""
    while not os.path.exists(payload["path"]):
        time.sleep(0.05)
    return {"waited_for": payload["path"]}


@handler("flaky")
def flaky(payload, job):
    if job["attempts"] < int(payload.get("succeed_on_attempt", 2)):
        raise RuntimeError(f"flaky failure on attempt {job['attempts']}")
    return {"attempts": job["attempts"]}


LEASE_LOST = (errors.NoDataFound, errors.ObjectNotInPrerequisiteState)  # P0002, 55000


class Session:
    """One connection, shared by the main loop and the heartbeat, made again
    on the first call after it broke."""

    def __init__(self):
        self.lock = threading.Lock()
        self.conn = None
        self.reconnects = 0

    def connection(self):
        with self.lock:
            if self.conn is None or self.conn.broken or self.conn.closed:
                if self.conn is not None:
                    self.reconnects += 1
                    self.conn.close()
                self.conn = None
                conn = psycopg.connect(DSN, autocommit=True, application_name=APPLICATION_NAME)
                conn.execute("LISTEN jobs")
                self.conn = conn
            return self.conn

    def execute(self, query, params=()):
        return self.connection().cursor(row_factory=dict_row).execute(query, params)


class Held:
    """A job in hand: its row, and until when its lease surely holds."""

    def __init__(self, job):
        self.job = job
        self.lease_until = time.monotonic() + LEASE
        self.lost = False


class Worker:
    def __init__(self):
        self.stopping = threading.Event()
        self.session = Session()
        self.hand = {}  # job id -> Held
        self.hand_lock = threading.Lock()
        self.stats = {"completed": 0, "failed": 0, "lost_leases": 0, "reconnects": 0}

    def run(self):
        started = time.monotonic()
        heartbeat = threading.Thread(target=self.heartbeat, daemon=True)
        heartbeat.start()
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                jobs = self.session.execute(
                    "SELECT id, job_type, payload, attempts, lease_token"
                    " FROM jobs.claim(%s, %s, max_jobs => %s, lease => make_interval(secs => %s))",
                    (WORKER_ID, QUEUE, BATCH, LEASE),
                ).fetchall()
                backoff = 0.1
            except psycopg.OperationalError as e:
                print(f"claim: connection lost ({e}); retrying in {backoff:.1f} s", file=sys.stderr)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            held = [Held(job) for job in jobs]
            with self.hand_lock:
                self.hand.update((h.job["id"], h) for h in held)
            for h in held:  # the batch is ours: finish it even when stopping
                self.process(h)
            if not jobs:
                self.wait_for_work()
        self.stats["reconnects"] = self.session.reconnects
        self.stats["seconds"] = round(time.monotonic() - started, 3)
        print(json.dumps(self.stats), flush=True)

    def wait_for_work(self):
        """Wakes on a NOTIFY, or after POLL seconds."""
        try:
            for _ in self.session.connection().notifies(timeout=POLL, stop_after=1):
                pass
        except psycopg.OperationalError:
            time.sleep(0.1)

    def heartbeat(self):
        """Every third of the lease, extends the lease of every job in hand;
        after a failed call, tries again soon (on a new connection)."""
        while True:
            with self.hand_lock:
                held = list(self.hand.values())
            pause = LEASE / 3
            for h in held:
                if h.lost:
                    continue
                asked = time.monotonic()
                try:
                    self.session.execute(
                        "SELECT jobs.extend_lease(%s, %s, make_interval(secs => %s))",
                        (h.job["id"], h.job["lease_token"], LEASE),
                    )
                    h.lease_until = asked + LEASE
                except LEASE_LOST as e:
                    h.lost = True
                    print(f"job {h.job['id']}: lease lost: {e.diag.message_primary}", file=sys.stderr)
                except psycopg.Error as e:
                    print(f"job {h.job['id']}: extend_lease: {e}", file=sys.stderr)
                    pause = 0.1
            time.sleep(pause)

    def process(self, h):
        job = h.job
        result, error = None, None
        try:
            if not h.lost:
                fn = HANDLERS.get(job["job_type"])
                if fn is None:
                    raise LookupError(f"no handler for job type {job['job_type']!r}")
                result, error = fn(job["payload"], job), None
        except Exception as e:  # the job's failure, not the worker's
            result, error = None, f"{type(e).__name__}: {e}"
        try:
            self.finish(h, result, error)
        finally:
            with self.hand_lock:
                self.hand.pop(job["id"], None)

    def finish(self, h, result, error):
        """Completes or fails the job with its token, across reconnects, for as
        long as its lease surely holds."""
        job = h.job
        backoff = 0.1
        while not h.lost:
            try:
                if error is None:
                    self.session.execute(
                        "SELECT jobs.complete(%s, %s, %s)",
                        (job["id"], job["lease_token"], None if result is None else Jsonb(result)),
                    )
                    self.stats["completed"] += 1
                else:
                    self.session.execute("SELECT jobs.fail(%s, %s, %s)", (job["id"], job["lease_token"], error))
                    self.stats["failed"] += 1
                return
            except LEASE_LOST as e:
                print(f"job {job['id']}: lease lost: {e.diag.message_primary}", file=sys.stderr)
                h.lost = True
            except psycopg.OperationalError as e:
                if time.monotonic() >= h.lease_until:
                    print(f"job {job['id']}: lease ran out while disconnected ({e})", file=sys.stderr)
                    h.lost = True
                else:
                    time.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
        self.stats["lost_leases"] += 1


def main():
    worker = Worker()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stopping.set())
    worker.run()


if __name__ == "__main__":
    main()
