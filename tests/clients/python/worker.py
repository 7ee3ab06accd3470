"""A jobs worker in Python (psycopg 3).

    PGHOST=127.0.0.1 PGDATABASE=postgres JOBS_QUEUE=default python worker.py

LISTEN jobs and claim in batches; a heartbeat thread extends the lease while a
job runs; complete with the handler's result or fail with its error text;
reconnect after a lost connection (jobs in hand are then left to lease
recovery and run again); on SIGTERM or SIGINT finish the jobs in hand and
exit. Prints a JSON summary line on exit.
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


@handler("flaky")
def flaky(payload, job):
    if job["attempts"] < int(payload.get("succeed_on_attempt", 2)):
        raise RuntimeError(f"flaky failure on attempt {job['attempts']}")
    return {"attempts": job["attempts"]}


LEASE_LOST = (errors.NoDataFound, errors.ObjectNotInPrerequisiteState)  # P0002, 55000


class Heartbeat(threading.Thread):
    """Extends one job's lease every third of the lease while it runs."""

    def __init__(self, conn, job):
        super().__init__(daemon=True)
        self.conn, self.job = conn, job
        self.done = threading.Event()
        self.lost = False

    def run(self):
        while not self.done.wait(LEASE / 3):
            try:
                self.conn.execute(
                    "SELECT jobs.extend_lease(%s, %s, make_interval(secs => %s))",
                    (self.job["id"], self.job["lease_token"], LEASE),
                )
            except LEASE_LOST:
                self.lost = True
                return
            except psycopg.Error:
                return  # the connection is gone; the main loop reconnects

    def stop(self):
        self.done.set()
        self.join()


class Worker:
    def __init__(self):
        self.stopping = threading.Event()
        self.stats = {"completed": 0, "failed": 0, "lost_leases": 0, "reconnects": 0}

    def run(self):
        started = time.monotonic()
        backoff = 0.1
        while not self.stopping.is_set():
            try:
                with psycopg.connect(DSN, autocommit=True, application_name="jobs-python-worker") as conn:
                    backoff = 0.1
                    conn.execute("LISTEN jobs")
                    self.serve(conn)
            except psycopg.OperationalError as e:
                if self.stopping.is_set():
                    break
                self.stats["reconnects"] += 1
                print(f"connection lost ({e}); reconnecting in {backoff:.1f} s", file=sys.stderr)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.stats["seconds"] = round(time.monotonic() - started, 3)
        print(json.dumps(self.stats), flush=True)

    def serve(self, conn):
        while not self.stopping.is_set():
            jobs = conn.cursor(row_factory=dict_row).execute(
                "SELECT id, job_type, payload, attempts, lease_token"
                " FROM jobs.claim(%s, %s, max_jobs => %s, lease => make_interval(secs => %s))",
                (WORKER_ID, QUEUE, BATCH, LEASE),
            ).fetchall()
            for job in jobs:  # the batch is ours: finish it even when stopping
                self.process(conn, job)
            if not jobs:
                # Wake on a NOTIFY, or poll again after POLL seconds.
                for _ in conn.notifies(timeout=POLL, stop_after=1):
                    pass

    def process(self, conn, job):
        heartbeat = Heartbeat(conn, job)
        heartbeat.start()
        try:
            fn = HANDLERS.get(job["job_type"])
            if fn is None:
                raise LookupError(f"no handler for job type {job['job_type']!r}")
            result, error = fn(job["payload"], job), None
        except Exception as e:  # the job's failure, not the worker's
            result, error = None, f"{type(e).__name__}: {e}"
        finally:
            heartbeat.stop()
        try:
            if error is None:
                result = None if result is None else Jsonb(result)
                conn.execute("SELECT jobs.complete(%s, %s, %s)", (job["id"], job["lease_token"], result))
                self.stats["completed"] += 1
            else:
                conn.execute("SELECT jobs.fail(%s, %s, %s)", (job["id"], job["lease_token"], error))
                self.stats["failed"] += 1
        except LEASE_LOST as e:
            # Expired and recovered, or canceled: someone else owns the job now.
            self.stats["lost_leases"] += 1
            print(f"job {job['id']}: {e.diag.message_primary}", file=sys.stderr)


def main():
    worker = Worker()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: worker.stopping.set())
    worker.run()


if __name__ == "__main__":
    main()
