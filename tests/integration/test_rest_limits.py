"""Limits on what one client can make the server hold: a request is refused
from its headers (401 without a valid token, 413 when Content-Length is over
--max-body-bytes) before its body is read, a client IP holds at most
--http-max-connections-per-ip connections, a device posts at most its
token bucket's reports (--ingest-rate-per-device, --ingest-burst-per-device):
429 with Retry-After beyond, and a client that drips its request's head or
body a byte at a time loses its connection at --http-header-timeout-s or
--http-body-timeout-s, though every byte restarts libmicrohttpd's idle
timeout."""
import json
import resource
import socket
import subprocess
import time

import pytest

from conftest import HOMING_BIN, Homing, report


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-limits", "serve", tmp_path_factory.mktemp("limits"),
               extra={"HOMING_HTTP_MAX_CONNECTIONS_PER_IP": "6",
                      "HOMING_INGEST_RATE_PER_DEVICE": "1",
                      "HOMING_INGEST_BURST_PER_DEVICE": "5",
                      "HOMING_HTTP_HEADER_TIMEOUT_S": "2",
                      "HOMING_HTTP_BODY_TIMEOUT_S": "3"})
    h.migrate()
    h.start()
    yield h
    h.stop()


def head_only(homing, lines, timeout=3):
    """Sends a request's head and no body; the status line of the answer, or
    None when none came in time."""
    with socket.create_connection(("127.0.0.1", homing.port), timeout=timeout) as s:
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        got = b""
        try:
            while b"\r\n" not in got:
                chunk = s.recv(4096)
                if not chunk:
                    break
                got += chunk
        except socket.timeout:
            return None
        return got.split(b"\r\n")[0].decode() if got else None


def test_an_oversized_content_length_is_refused_before_the_body(homing):
    token = homing.device_token("d-big", "u-big")
    started = time.time()
    status = head_only(homing, ["POST /v1/locations HTTP/1.1", "Host: x",
                                f"Authorization: Bearer {token}",
                                "Content-Type: application/json",
                                "Content-Length: 100000000"])
    assert status is not None and " 413 " in status, status
    assert time.time() - started < 2


def test_a_request_without_a_token_is_refused_before_the_body(homing):
    for path in ("/v1/locations", "/v1/datacenters"):
        status = head_only(homing, [f"POST {path} HTTP/1.1", "Host: x",
                                    "Content-Type: application/json", "Content-Length: 1000"])
        assert status is not None and " 401 " in status, (path, status)


def test_a_client_ip_holds_at_most_its_connections(homing):
    # The earlier tests' connections closed on the server's side too (the
    # scrape's own connection is the one left), or one would take a place.
    deadline = time.time() + 10
    while metric(homing, "homing_http_connections") > 1 and time.time() < deadline:
        time.sleep(0.1)
    held = [socket.create_connection(("127.0.0.1", homing.port), timeout=3) for _ in range(6)]
    try:
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", homing.port), timeout=3)
        with extra:
            extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            try:
                answer = extra.recv(4096)
            except ConnectionResetError:
                answer = b""
            assert answer == b"", answer  # closed without an answer
    finally:
        for s in held:
            s.close()
    # Once they are gone, the client is served again.
    time.sleep(0.3)
    assert homing.get("/healthz")[0] == 200


def test_a_device_beyond_its_burst_gets_429_with_retry_after(homing):
    body = [report(user="u-rate", device="d-rate") for _ in range(4)]
    assert homing.post("/v1/locations", body)[0] == 202
    status, headers, raw = homing.post("/v1/locations", body)
    assert status == 429, raw
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(raw)["type"] == "urn:homing:problem:rate-limited"
    assert 1 <= int(headers["Retry-After"]) <= 5
    # Another device has its own bucket.
    assert homing.post("/v1/locations", report(user="u-rate", device="d-other"))[0] == 202
    # The bucket refills at one report a second.
    time.sleep(int(headers["Retry-After"]))
    assert homing.post("/v1/locations", body)[0] == 202
    metrics = homing.get("/metrics")[2].decode()
    assert 'homing_ingest_requests_total{status="429"} 1' in metrics
    assert "\nhoming_ingest_rate_limited_reports_total 4\n" in metrics


def drip_on(s, data, every=0.25, limit=15):
    """Sends data on s a byte at a time; the seconds until the server closed
    the connection, or None when it was still open after limit seconds."""
    started = time.time()
    for i in range(len(data)):
        try:
            s.sendall(data[i:i + 1])
            s.settimeout(every)
            if s.recv(4096) == b"":
                return time.time() - started
        except socket.timeout:
            pass
        except (BrokenPipeError, ConnectionResetError):
            return time.time() - started
        if time.time() - started > limit:
            return None
    return None


def drip(homing, data):
    with socket.create_connection(("127.0.0.1", homing.port), timeout=3) as s:
        return drip_on(s, data)


def cut_total(homing, phase):
    metrics = homing.get("/metrics")[2].decode()
    line = f'homing_http_connections_cut_total{{phase="{phase}"}} '
    return int(next(l for l in metrics.splitlines() if l.startswith(line)).split()[-1])


def test_a_dripped_head_is_cut_at_the_header_timeout(homing):
    before = cut_total(homing, "head")
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    took = drip(homing, head)
    assert took is not None and 2 <= took < 5, took
    assert cut_total(homing, "head") == before + 1
    # An honest client on the same address is still served.
    assert homing.get("/healthz")[0] == 200


def test_a_dripped_body_is_cut_at_the_body_timeout(homing):
    before = cut_total(homing, "body")
    token = homing.device_token("d-drip", "u-drip")
    head = ("POST /v1/locations HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            "Content-Length: 400\r\n\r\n").encode()
    started = time.time()
    with socket.create_connection(("127.0.0.1", homing.port), timeout=3) as s:
        s.sendall(head)
        took = drip_on(s, b" " * 400)
    assert took is not None and 3 <= time.time() - started < 6, took
    assert cut_total(homing, "body") == before + 1


def test_a_keep_alive_connection_waits_for_its_next_request_within_the_header_timeout(homing):
    with socket.create_connection(("127.0.0.1", homing.port), timeout=5) as s:
        for _ in range(3):  # each answer starts the head's clock again
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert s.recv(4096).startswith(b"HTTP/1.1 200")
            time.sleep(1.2)
        started = time.time()
        assert s.recv(4096) == b""  # idle past the header timeout: closed
        assert time.time() - started < 3


@pytest.fixture(scope="module")
def crowded(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-limits-room", "serve", tmp_path_factory.mktemp("room"),
               extra={"HOMING_HTTP_MAX_CONNECTIONS": "8", "HOMING_HTTP_THREADS": "2",
                      "HOMING_HTTP_MAX_CONNECTIONS_PER_IP": "0"})
    h.migrate()
    h.start()
    yield h
    h.stop()


def metric(homing, name):
    metrics = homing.get("/metrics")[2].decode()
    return float(next(l for l in metrics.splitlines() if l.startswith(name + " ")).split()[-1])


def test_idle_keep_alive_connections_make_room_for_new_ones_at_the_limit(crowded):
    # A client pool that keeps every connection alive fills the limit; a
    # thread at its share stops accepting, so without room made a new
    # connection would wait in the kernel's queue until an idle one timed out.
    before = metric(crowded, "homing_http_idle_connections_closed_total")
    idle = []
    try:
        for _ in range(8):
            s = socket.create_connection(("127.0.0.1", crowded.port), timeout=3)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            s.recv(4096)
            idle.append(s)
        time.sleep(0.3)
        started = time.time()
        assert head_only(crowded, ["GET /healthz HTTP/1.1", "Host: x"], timeout=3) \
            == "HTTP/1.1 200 OK"
        assert time.time() - started < 2
        assert metric(crowded, "homing_http_idle_connections_closed_total") > before
        assert metric(crowded, "homing_http_connections") <= 8
        # The connections closed were idle ones: their clients see the end.
        closed = 0
        for s in idle:
            try:
                s.settimeout(0.5)
                closed += s.recv(4096) == b""
            except (socket.timeout, ConnectionError):
                pass
        assert closed >= 1
    finally:
        for s in idle:
            s.close()


def serve_with_file_limit(database, topics, tmp_path, soft, hard, max_connections):
    """`homing serve` under a file limit of (soft, hard): the process, its log."""
    tmp_path.mkdir()
    h = Homing(database, topics, "test-limits-files", "serve", tmp_path,
               extra={"HOMING_HTTP_MAX_CONNECTIONS": str(max_connections)})
    limit = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))  # noqa: E731
    log = open(h.log_path, "w")
    proc = subprocess.Popen([HOMING_BIN, "serve"], env=h.env, stdout=log,
                            stderr=subprocess.STDOUT, preexec_fn=limit)
    return h, proc, log


def test_a_file_limit_below_the_connection_limit_is_raised_or_refused(database, topics,
                                                                        tmp_path):
    # Each connection is a file: found out under load, a low limit would
    # show as failed accepts. Too low a hard limit refuses the start.
    h, proc, log = serve_with_file_limit(database, topics, tmp_path / "low", 300, 300, 1000)
    try:
        assert proc.wait(timeout=30) != 0
    finally:
        log.close()
    assert "--http-max-connections 1000 needs 1128 open files" in h.log_text()
    assert "may open 300" in h.log_text()

    # A soft limit below it with room under the hard one is raised.
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    h, proc, log = serve_with_file_limit(database, topics, tmp_path / "raised", 300, hard, 1000)
    try:
        deadline = time.time() + 30
        while time.time() < deadline and proc.poll() is None:
            try:
                if h.get("/healthz")[0] == 200:
                    break
            except OSError:
                pass
            time.sleep(0.1)
        assert proc.poll() is None, h.log_text()
        limits = open(f"/proc/{proc.pid}/limits").read()
        soft = int(next(line for line in limits.splitlines()
                        if line.startswith("Max open files")).split()[3])
        assert soft >= 1128
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0, h.log_text()[-4000:]
        log.close()
