"""Shutdown under load: SIGTERM while location POSTs are in flight, some of
them suspended waiting for Kafka's delivery report (the broker is down, so
they wait until the produce timeout). homing must drain before it stops —
libmicrohttpd aborts the process if its daemon stops with a suspended
connection — and every request gets an answer (503 here: Kafka has stored
nothing, so a 202 would be a lie) or a closed connection."""
import http.client
import json
import threading
import time

import pytest

from conftest import Homing, report, stack



@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-shutdown", "serve", tmp_path_factory.mktemp("shutdown"),
               extra={"HOMING_PRODUCE_TIMEOUT_MS": "3000"})
    h.migrate()
    h.start()
    yield h
    if h.proc.poll() is None:
        h.stop()


def poster(homing, token, body, statuses, stop):
    """Posts on one keep-alive connection until it breaks; records each status."""
    conn = http.client.HTTPConnection("127.0.0.1", homing.port, timeout=30)
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    try:
        while not stop.is_set():
            conn.request("POST", "/v1/locations", body=body, headers=headers)
            resp = conn.getresponse()
            resp.read()
            statuses.append(resp.status)
    except (OSError, http.client.HTTPException):
        statuses.append("closed")
    finally:
        conn.close()


def test_sigterm_with_suspended_ingest_drains_then_exits_cleanly(homing):
    token = homing.device_token("d-shut", "u-shut")
    body = json.dumps(report(user="u-shut", device="d-shut")).encode()
    statuses, stop = [], threading.Event()
    threads = [threading.Thread(target=poster, args=(homing, token, body, statuses, stop))
               for _ in range(8)]
    stack("kafka-down")
    try:
        for t in threads:
            t.start()
        # Let every connection be accepted and its request suspended, then keep
        # sending on them after the signal (keep-alive outlives the listener).
        time.sleep(1.5)
        homing.proc.terminate()
        started = time.time()
        code = homing.proc.wait(timeout=30)
        took = time.time() - started
        stop.set()
        for t in threads:
            t.join(timeout=40)
    finally:
        stack("kafka-up")
    log = homing.log_text()
    assert code == 0, log[-4000:]
    assert "fatal error" not in log.lower() and "suspended connections" not in log, log[-4000:]
    # The drain waits for the produce timeout at most, then some slack.
    assert took < 10, took
    # Every request got an answer or its connection closed; none was accepted.
    assert statuses and set(statuses) <= {503, "closed"}, statuses
    assert 503 in statuses, statuses
