"""The HTTP threads never wait on PostgreSQL for what does not need it.

With PostgreSQL frozen (SIGSTOP: connections hang rather than fail, the
worst case for a client), /readyz answers at once from the background
check (503, saying the check is stale or PostgreSQL is away), ingest —
which needs Kafka only — still answers 202, and an operator token used a
moment ago is still known (the token cache) without asking PostgreSQL.
"""
import json
import os
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import Homing, report, wait_for


def postgres_pids():
    """The postmaster of the test stack and its children."""
    pidfile = Path(os.environ["HOMING_STATE_DIR"]) / "postgres" / "postmaster.pid"
    master = int(pidfile.read_text().split()[0])
    children = subprocess.run(["ps", "-o", "pid=", "--ppid", str(master)],
                              capture_output=True, text=True).stdout.split()
    return [master, *map(int, children)]


def freeze_postgres():
    pids = postgres_pids()
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def thaw(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-outages", "serve", tmp_path_factory.mktemp("outages"),
               extra={"HOMING_HTTP_THREADS": "2", "HOMING_DB_POOL_SIZE": "2"})
    h.migrate()
    h.start()
    yield h
    h.stop()


def timed_get(homing, path, timeout, token=None):
    """(status, seconds, body); status None when no answer came in time."""
    req = urllib.request.Request(homing.url + path)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    started = time.time()
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, time.time() - started, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, time.time() - started, e.read()
    except OSError:
        return None, time.time() - started, b""


def test_probes_and_ingest_stay_fast_while_postgresql_hangs(homing):
    status, _, raw = timed_get(homing, "/readyz", 5)
    assert status == 200, raw
    doc = json.loads(raw)
    assert doc["checked_ago_s"] < 5, doc
    viewer = homing.token("viewer")
    assert timed_get(homing, "/v1/me", 5, viewer)[0] == 200
    device = homing.device_token("d-out", "u-out")

    pids = freeze_postgres()
    try:
        # The background check hangs too; its answer goes stale, and /readyz says so.
        wait_for(lambda: timed_get(homing, "/readyz", 2)[0] == 503, timeout=30, interval=0.5,
                 what="/readyz to turn 503")

        results, posts = [], []

        def probe():
            results.append(timed_get(homing, "/readyz", 5))

        def post():
            started = time.time()
            status, _, raw = homing.post("/v1/locations", report(user="u-out", device="d-out"),
                                         token=device, timeout=5)
            posts.append((status, time.time() - started))

        threads = [threading.Thread(target=probe) for _ in range(20)]
        threads += [threading.Thread(target=post) for _ in range(5)]
        started = time.time()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
        took = time.time() - started
        assert len(results) == 20 and all(s == 503 for s, _, _ in results), results
        assert all(json.loads(b)["type"] == "urn:homing:problem:not-ready"
                   for _, _, b in results)
        assert took < 1.5 and max(t for _, t, _ in results) < 1, results
        assert [s for s, _ in posts] == [202] * 5 and max(t for _, t in posts) < 1, posts

        # A token seen within the cache's time is known without PostgreSQL.
        status, took, raw = timed_get(homing, "/v1/me", 2, viewer)
        assert status == 200 and took < 1, (status, took, raw)
        assert json.loads(raw)["name"] == "test-viewer"
    finally:
        thaw(pids)
    wait_for(lambda: timed_get(homing, "/readyz", 5)[0] == 200, timeout=30, interval=0.5,
             what="/readyz to be 200 again")
