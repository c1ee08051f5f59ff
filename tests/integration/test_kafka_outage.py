"""The 202 promise: with the broker down, a report gets 503 and never 202;
when the broker is back, reports are accepted again by the same process."""
import json
import time

import pytest

from conftest import Homing, read_topic, report, stack, wait_for



@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-outage", "serve", tmp_path_factory.mktemp("outage"),
               extra={"HOMING_PRODUCE_TIMEOUT_MS": "2000"})
    h.migrate()
    h.start()
    yield h
    h.stop()


def test_no_202_while_kafka_is_down_and_recovery_without_restart(homing, topics):
    assert homing.post("/v1/locations", report(device="d-before"))[0] == 202

    stack("kafka-down")
    try:
        for i in range(5):
            started = time.time()
            status, headers, raw = homing.post("/v1/locations", report(device=f"d-down-{i}"))
            assert status == 503, raw
            assert headers["Content-Type"] == "application/problem+json"
            assert int(headers["Retry-After"]) > 0
            assert json.loads(raw)["type"] == "urn:homing:problem:kafka-unavailable"
            # The answer comes once the produce timeout has passed, not sooner.
            assert time.time() - started >= 1.5
        assert homing.get("/readyz")[0] == 503
    finally:
        stack("kafka-up")

    def accepted():
        status, _, _ = homing.post("/v1/locations", report(device="d-after"))
        assert status in (202, 503)
        return status == 202
    wait_for(accepted, timeout=90, interval=1, what="a 202 after the broker came back")
    # Readiness is checked in the background, once a second: it follows shortly.
    wait_for(lambda: homing.get("/readyz")[0] == 200, timeout=10, interval=0.5,
             what="/readyz to be 200 again")

    devices = {v["device_id"] for _, v in read_topic(topics["locations"], expect=2)}
    assert {"d-before", "d-after"} <= devices
