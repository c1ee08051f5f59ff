"""Transfers under faults, with two agents in their own processes (the
target slowed to 4 MiB/s so that faults land mid-transfer):

- the target is SIGKILLed: a new target agent takes the transfer over when
  the lease ends and pulls only what the partial image lacks;
- a byte is flipped in flight (a proxy between the agents): the chunk is
  caught by its SHA-256, asked again, and the copy verifies;
- the source answers 503, busy (at its --agent-max-streams): the target
  asks again after a pause, within the same attempt;
- the source is SIGKILLed and comes back: the target asks for the rest;
- a more urgent transfer comes while the target's only worker is busy with
  a less urgent one: that one steps aside (queued again, resumable), the
  urgent one runs, then the other resumes from what it had written;
- the source is gone for good: retries, then `failed` with the reason.

After each: exactly one active placement, pointing at a verified copy.
"""
import http.client
import http.server
import re
import shutil
import threading
import time

import pytest

from conftest import Homing, free_port, seed_catalog, wait_for
from plane import (ENV, MIB, Agent, active, go_to, make_overlay, make_template, seed,
                   transfer_rows, wait_transfer)

CHUNK = MIB
SLOW = {"HOMING_AGENT_BANDWIDTH": str(4 * MIB)}


@pytest.fixture(scope="module")
def plane(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("faults")
    api = Homing(database, topics, "agent-faults", "standalone", tmp, extra=ENV)
    api.migrate()
    seed_catalog(db)  # Paris and Tokyo both hold the template
    api.start()
    stores = {"t-paris": tmp / "paris", "t-tokyo": tmp / "tokyo"}
    make_template(stores["t-paris"], "tpl-1")
    (stores["t-tokyo"] / "templates").mkdir(parents=True)
    shutil.copyfile(stores["t-paris"] / "templates" / "tpl-1.qcow2",
                    stores["t-tokyo"] / "templates" / "tpl-1.qcow2")
    ports = {dc: free_port() for dc in stores}
    agents = {"t-paris": Agent(api, "t-paris", stores["t-paris"], tmp, port=ports["t-paris"]).start(),
              "t-tokyo": Agent(api, "t-tokyo", stores["t-tokyo"], tmp, extra=SLOW,
                               port=ports["t-tokyo"]).start()}
    yield api, agents, stores, ports, tmp
    for a in agents.values():
        if a.proc.poll() is None:
            a.stop()
    api.stop()


def start_move(plane, db, name, mib=24):
    """A snapshot of `mib` MiB at Paris whose user flies to Tokyo; its running transfer."""
    api, agents, stores, _, _ = plane
    seed(db, f"u-{name}", f"snap-{name}", "t-paris")
    make_overlay(stores["t-paris"], "tpl-1", f"snap-{name}", 1,
                 [(i * MIB, MIB, 0x40 + i) for i in range(mib)])
    digest, size = agents["t-paris"].register(f"snap-{name}", 1)
    go_to(api, f"u-{name}", 35.68, 139.69)
    tid = wait_transfer(db, f"snap-{name}", 1, states=("running",))[0]
    return tid, digest, size


def bytes_done(db, tid):
    return db.execute("SELECT bytes_done FROM transfers WHERE id = %s", (tid,)).fetchone()[0]


def assert_one_verified_copy(db, stores, snapshot, dc, digest):
    assert active(db, snapshot) == [(dc, 1, digest)]
    assert (stores[dc] / "snapshots" / snapshot / "v1.qcow2").exists()


def plan_of(log, tid):
    """(kept, local, zero, pulled) blocks of the last plan the agent logged for `tid`."""
    plans = re.findall(rf"transfer {tid}: \d+ blocks: (\d+) kept, (\d+) local, (\d+) zero, "
                       rf"(\d+) to pull", log)
    return tuple(int(x) for x in plans[-1])


def test_a_killed_target_resumes_from_what_it_had_written(plane, db):
    api, agents, stores, ports, tmp = plane
    tid, digest, size = start_move(plane, db, "kill-target")
    # Kill right after a progress report, so the report says what was written.
    wait_for(lambda: bytes_done(db, tid) >= 6 * MIB, timeout=30, interval=0.05,
             what="a quarter of the copy")
    seen = bytes_done(db, tid)
    wait_for(lambda: bytes_done(db, tid) != seen, timeout=5, interval=0.02, what="a progress report")
    reported = bytes_done(db, tid)
    agents["t-tokyo"].kill()
    assert transfer_rows(db, "snap-kill-target")[0][3] == "running"

    agents["t-tokyo"] = Agent(api, "t-tokyo", stores["t-tokyo"], tmp, extra=SLOW,
                              port=ports["t-tokyo"]).start()
    wait_transfer(db, "snap-kill-target", 1, timeout=60)
    kept, local, zero, pulled = plan_of(agents["t-tokyo"].log_path.read_text(), tid)
    # Everything reported written was kept; what was sent twice is what was in
    # flight when the agent died: at most one chunk.
    assert kept * 4096 >= reported, (kept * 4096, reported)
    assert pulled * 4096 <= size - reported + CHUNK
    assert (kept + pulled) * 4096 == size
    assert_one_verified_copy(db, stores, "snap-kill-target", "t-tokyo", digest)


class FaultyProxy(http.server.ThreadingHTTPServer):
    """Forwards to the source agent; with `flip`, flips one byte in the first
    block stream; with `busy`, answers that many block requests 503 first,
    as a source at its --agent-max-streams does."""

    def __init__(self, upstream_port, flip=False, busy=0):
        self.upstream_port = upstream_port
        self.flip = flip
        self.flipped = 0
        self.busy = busy
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(http.server.BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def forward(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        with self.server.lock:
            refuse = self.path.endswith("/blocks") and self.server.busy > 0
            self.server.busy -= refuse
        if refuse:
            problem = (b'{"type":"urn:homing:problem:busy","title":"Service Unavailable",'
                       b'"status":503,"detail":"this agent sends as many streams as it may"}')
            self.send_response(503)
            self.send_header("Content-Type", "application/problem+json")
            self.send_header("Content-Length", str(len(problem)))
            self.end_headers()
            self.wfile.write(problem)
            return
        conn = http.client.HTTPConnection("127.0.0.1", self.server.upstream_port, timeout=60)
        conn.request(self.command, self.path, body=body,
                     headers={k: v for k, v in self.headers.items()
                              if k.lower() in ("authorization", "x-homing-transfer", "content-type")})
        resp = conn.getresponse()
        data = bytearray(resp.read())
        with self.server.lock:
            if self.server.flip and self.path.endswith("/blocks") and resp.status == 200 \
                    and not self.server.flipped and len(data) > 3 * MIB:
                data[2 * MIB + 12345] ^= 0x5A  # inside the third chunk's data
                self.server.flipped += 1
        self.send_response(resp.status)
        for k, v in resp.getheaders():
            if k.lower() in ("content-type",):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(bytes(data))
        conn.close()

    do_GET = do_POST = forward


def through_proxy(plane, db, proxy, name, mib):
    """Moves a snapshot of `mib` MiB with Paris's agent behind `proxy`."""
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    real = db.execute("SELECT agent_url FROM datacenters WHERE id = 't-paris'").fetchone()[0]
    db.execute("UPDATE datacenters SET agent_url = %s WHERE id = 't-paris'",
               (f"http://127.0.0.1:{proxy.server_address[1]}/dc/t-paris",))
    try:
        tid, digest, size = start_move(plane, db, name, mib=mib)
        wait_transfer(db, f"snap-{name}", 1, timeout=60)
    finally:
        db.execute("UPDATE datacenters SET agent_url = %s WHERE id = 't-paris'", (real,))
        proxy.shutdown()
    return tid, digest, size


def test_a_flipped_byte_in_flight_is_caught_and_only_its_chunk_comes_again(plane, db):
    api, agents, stores, ports, tmp = plane
    proxy = FaultyProxy(ports["t-paris"], flip=True)
    tid, digest, size = through_proxy(plane, db, proxy, "flip", 8)
    assert proxy.flipped == 1
    log = agents["t-tokyo"].log_path.read_text()
    assert re.search(rf"transfer {tid}: the chunk at \d+ \(\+\d+\) failed its SHA-256", log)
    kept, local, zero, pulled = plan_of(log, tid)
    # The second request asked for the bad chunk and the rest, nothing before it.
    assert kept * 4096 >= 2 * MIB and pulled * 4096 <= size - 2 * MIB
    assert_one_verified_copy(db, stores, "snap-flip", "t-tokyo", digest)


def test_a_busy_source_is_asked_again_not_failed_as_a_bad_stream(plane, db):
    api, agents, stores, ports, tmp = plane
    proxy = FaultyProxy(ports["t-paris"], busy=2)
    tid, digest, size = through_proxy(plane, db, proxy, "busy", 4)
    assert proxy.busy == 0
    log = agents["t-tokyo"].log_path.read_text()
    assert re.search(rf"transfer {tid}: POST \S+/blocks: HTTP 503; asking for the rest", log), log
    assert "not a chunk stream" not in log
    # Asked again within the same attempt, not handed back as a failure.
    assert db.execute("SELECT attempts FROM transfers WHERE id = %s", (tid,)).fetchone()[0] == 1
    assert_one_verified_copy(db, stores, "snap-busy", "t-tokyo", digest)


def test_a_source_killed_and_back_is_asked_for_the_rest(plane, db):
    api, agents, stores, ports, tmp = plane
    tid, digest, size = start_move(plane, db, "kill-source")
    wait_for(lambda: bytes_done(db, tid) >= 4 * MIB, timeout=30, interval=0.1,
             what="some of the copy")
    agents["t-paris"].kill()
    time.sleep(1.5)
    agents["t-paris"] = Agent(api, "t-paris", stores["t-paris"], tmp, port=ports["t-paris"]).start()
    wait_transfer(db, "snap-kill-source", 1, timeout=90)
    log = agents["t-tokyo"].log_path.read_text()
    assert f"transfer {tid}: " in log and "asking for the rest" in log
    kept, local, zero, pulled = plan_of(log, tid)
    assert kept * 4096 >= 4 * MIB
    assert_one_verified_copy(db, stores, "snap-kill-source", "t-tokyo", digest)


def test_a_less_urgent_transfer_steps_aside_for_a_more_urgent_one_and_resumes(plane, db):
    api, agents, stores, ports, tmp = plane
    agents["t-tokyo"].stop()
    agents["t-tokyo"] = Agent(api, "t-tokyo", stores["t-tokyo"], tmp, port=ports["t-tokyo"],
                              extra={**SLOW, "HOMING_AGENT_CONCURRENCY": "1"}).start()
    seed(db, "u-later", "snap-later", "t-paris")
    db.execute("UPDATE snapshots SET priority = 5 WHERE id = 'snap-later'")
    make_overlay(stores["t-paris"], "tpl-1", "snap-later", 1,
                 [(i * MIB, MIB, 0x60 + i) for i in range(24)])
    agents["t-paris"].register("snap-later", 1)
    go_to(api, "u-later", 35.68, 139.69)
    low = wait_transfer(db, "snap-later", 1, states=("running",))[0]
    wait_for(lambda: bytes_done(db, low) >= 4 * MIB, timeout=30, interval=0.1,
             what="some of the less urgent copy")

    seed(db, "u-urgent", "snap-urgent", "t-paris")
    db.execute("UPDATE snapshots SET priority = 1 WHERE id = 'snap-urgent'")
    make_overlay(stores["t-paris"], "tpl-1", "snap-urgent", 1, [(0, 2 * MIB, 0x7e)])
    urgent_digest, _ = agents["t-paris"].register("snap-urgent", 1)
    go_to(api, "u-urgent", 35.68, 139.69)
    wait_transfer(db, "snap-urgent", 1, timeout=60)
    # The urgent one finished while the other waited its turn, and then that one resumed.
    assert transfer_rows(db, "snap-later")[0][3] in ("queued", "running")
    wait_transfer(db, "snap-later", 1, timeout=90)
    log = agents["t-tokyo"].log_path.read_text()
    assert f"transfer {low} paused for a more urgent one" in log
    kept, local, zero, pulled = plan_of(log, low)
    assert kept * 4096 >= 4 * MIB
    assert db.execute("SELECT attempts FROM transfers WHERE id = %s", (low,)).fetchone()[0] == 1
    paused = db.execute("SELECT count(*) FROM outbox WHERE payload->>'type' ="
                        " 'io.homing.transfer.paused' AND payload->'data'->>'transfer_id' = %s",
                        (str(low),)).fetchone()[0]
    assert paused == 1
    assert active(db, "snap-urgent") == [("t-tokyo", 1, urgent_digest)]


def test_a_source_gone_for_good_fails_the_transfer_with_its_reason(plane, db):
    api, agents, stores, ports, tmp = plane
    tid, digest, size = start_move(plane, db, "gone", mib=16)
    db.execute("UPDATE transfers SET max_attempts = 2 WHERE id = %s", (tid,))
    agents["t-paris"].kill()
    row = wait_transfer(db, "snap-gone", 1, states=("failed",), timeout=120)
    assert "/dc/t-paris/snapshots/snap-gone/versions/1/" in row[6], row[6]
    attempts = db.execute("SELECT attempts FROM transfers WHERE id = %s", (tid,)).fetchone()[0]
    assert attempts == 2
    # Nothing moved: the snapshot is still active where it was, verified.
    assert active(db, "snap-gone") == [("t-paris", 1, digest)]
    assert not (stores["t-tokyo"] / "snapshots" / "snap-gone" / "v1.qcow2").exists()
