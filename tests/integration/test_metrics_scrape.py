"""/metrics from running processes: valid Prometheus text (promtool), and
the numbers an on-call operator watches move when homing works; /readyz
waiting for the consumer."""
import json
import re
import signal
import subprocess
import urllib.error
import urllib.request

import pytest

from conftest import (HOMING_BIN, Homing, free_port, homing_with_catalog, report, seed_snapshot,
                      wait_for)


def promtool_check(text):
    done = subprocess.run(["promtool", "check", "metrics"], input=text.encode(),
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()


def sample(text, name, **labels):
    """The value of one series, or None."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = ",".join(sorted((m.group(2) or "{}")[1:-1].split(","))) if m.group(2) else ""
        if got == want:
            return float(m.group(3))
    return None


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "metrics", "standalone",
                                   tmp_path_factory.mktemp("metrics"),
                                   extra={"HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "1"})


def scrape(homing):
    status, headers, raw = homing.get("/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return raw.decode()


def test_the_api_and_scheduler_metrics_move_with_the_work(homing, db):
    seed_snapshot(db, "u-watched", "t-tokyo")
    before = scrape(homing)
    promtool_check(before)
    assert sample(before, "homing_build_info", version="0.1.0") == 1

    assert homing.post("/v1/locations", report(user="u-watched", device="d-watched",
                                               lat=48.85, lon=2.29))[0] == 202
    assert homing.post("/v1/locations", b"{", token=homing.device_token("d-x", "u-x"))[0] == 400

    def moved():
        text = scrape(homing)
        return (sample(text, "homing_decisions_total", outcome="move", reason="closer") or 0) >= 1 \
            and (sample(text, "homing_outbox_published_total") or 0) >= 3 and text
    text = wait_for(moved, what="the move to show in /metrics")
    promtool_check(text)
    assert sample(text, "homing_ingest_requests_total", status="202") >= 1
    assert sample(text, "homing_ingest_requests_total", status="400") >= 1
    assert sample(text, "homing_ingest_reports_total") >= 1
    assert sample(text, "homing_ingest_duration_seconds_count") >= 2
    assert sample(text, "homing_kafka_produce_duration_seconds_count") >= 1
    assert sample(text, "homing_scheduler_reports_total") >= 1
    assert sample(text, "homing_consumer_partitions_assigned") == 3
    assert sample(text, "homing_pg_transaction_duration_seconds_count",
                  component="scheduler") >= 1
    assert sample(text, "homing_decide_duration_seconds_count") >= 1
    assert sample(text, "homing_relay_leader") == 1
    # A partition's lag shows once its high watermark is known: a partition
    # without reports learns it from its first fetch answer, a moment later.
    def lags_known():
        lags = [sample(scrape(homing), "homing_consumer_lag_messages",
                       topic=homing.env["HOMING_TOPIC_LOCATIONS"], partition=str(p))
                for p in range(3)]
        return all(lag is not None and lag >= 0 for lag in lags)
    wait_for(lags_known, timeout=15, what="every partition's lag")
    assert sample(text, "process_resident_memory_bytes") > 0
    # The move's transfer waits for an agent at the default priority level.
    queued = wait_for(lambda: (sample(scrape(homing), "homing_transfers_queued", priority="3") or 0)
                      >= 1 and scrape(homing), what="the queue depth by priority")
    assert sample(queued, "homing_transfers_queued", priority="1") == 0


def test_metrics_need_a_viewer_token(homing):
    assert homing.get("/metrics", token=None)[0] == 401


def test_a_scheduler_without_the_api_serves_metrics_on_its_own_port(database, topics, tmp_path):
    port = free_port()
    s = Homing(database, topics, "metrics-alone", "schedule", tmp_path,
               extra={"HOMING_METRICS_LISTEN": f"127.0.0.1:{port}"})
    s.start()
    try:
        def scraped():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    return r.read().decode()
            except OSError:
                return None
        text = wait_for(scraped, what="the scheduler's /metrics")
        promtool_check(text)
        assert sample(text, "homing_scheduler_reports_total") is not None
        assert sample(text, "homing_ingest_requests_total", status="202") is None
    finally:
        s.stop()


def test_a_scrape_token_guards_the_schedulers_metrics(database, topics, tmp_path):
    port = free_port()
    token_file = tmp_path / "scrape-token"
    token_file.write_text("tok-" + "x" * 20 + "\n")
    s = Homing(database, topics, "metrics-token", "schedule", tmp_path,
               extra={"HOMING_METRICS_LISTEN": f"127.0.0.1:{port}",
                      "HOMING_METRICS_TOKEN_FILE": str(token_file)})
    s.start()
    try:
        def get(token):
            req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
            if token:
                req.add_header("Authorization", f"Bearer {token}")
            try:
                with urllib.request.urlopen(req, timeout=5) as r:
                    return r.status
            except urllib.error.HTTPError as e:
                return e.code
        assert wait_for(lambda: get("tok-" + "x" * 20) == 200, what="a scrape with the token")
        assert get(None) == 401 and get("tok-" + "x" * 19) == 401
    finally:
        s.stop()
    # Beyond loopback without a token: it does not start, and says why.
    done = subprocess.run([HOMING_BIN, "schedule"], capture_output=True, text=True, timeout=30,
                          env=dict(s.env, HOMING_METRICS_LISTEN="0.0.0.0:0",
                                   HOMING_METRICS_TOKEN_FILE=""))
    assert done.returncode != 0 and "--metrics-token-file" in done.stderr + done.stdout


def test_readyz_waits_for_the_consumer_to_be_given_its_partitions(database, topics, tmp_path):
    """A standalone whose group cannot rebalance yet (another member is frozen
    and must first time out) is not ready until its consumer is assigned."""
    frozen = Homing(database, topics, "readiness", "schedule", tmp_path)
    frozen.migrate()
    frozen.start()
    wait_for(lambda: "assigned" in frozen.log_text(), what="the first member's partitions")
    frozen.proc.send_signal(signal.SIGSTOP)
    newcomer = Homing(database, topics, "readiness", "standalone", tmp_path)
    try:
        newcomer.start()
        status, _, raw = newcomer.get("/readyz")
        assert status == 503, raw
        problem = json.loads(raw)
        assert problem["consumer"] is False and problem["postgres"] and problem["kafka"]
        assert "consumer group" in problem["detail"]
        # The frozen member's session expires; the group rebalances; ready.
        wait_for(lambda: newcomer.get("/readyz")[0] == 200, timeout=40, interval=0.5,
                 what="/readyz to turn 200")
    finally:
        frozen.proc.send_signal(signal.SIGCONT)
        newcomer.stop()
        frozen.stop()
