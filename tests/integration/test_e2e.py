"""End to end: a device's reports travel over HTTP into Kafka, the scheduler
turns them into queued transfers in PostgreSQL, and the relay publishes the
jobs and audit events to Kafka."""
import json

import pytest

from conftest import homing_with_catalog, read_topic, report, seed_snapshot, wait_for


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    # No dwell: the first credible report near a better site moves the snapshot.
    yield from homing_with_catalog(db, database, topics, f"test-{topics['locations']}",
                                   "standalone", tmp_path_factory.mktemp("e2e"),
                                   extra={"HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "1"})


def processed(db, n):
    """True once the scheduler has committed offsets past n reports."""
    row = db.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets").fetchone()
    return row[0] >= n


class Counter:
    posted = 0


def post_ok(homing, body):
    status, headers, raw = homing.post("/v1/locations", body)
    assert status == 202, raw
    Counter.posted += len(body) if isinstance(body, list) else 1
    return json.loads(raw)


def test_a_report_near_another_datacenter_queues_a_transfer(homing, db, topics):
    snapshot = seed_snapshot(db, "u-traveller", "t-tokyo")
    sent = report(user="u-traveller", device="d-traveller", lat=48.85, lon=2.29)
    assert post_ok(homing, sent) == {"accepted": 1}

    row = wait_for(lambda: db.execute(
        "SELECT from_dc, to_dc, template_id, template_present, state, bytes_total"
        " FROM transfers WHERE snapshot_id = %s", (snapshot,)).fetchone(), what="transfer")
    assert row == ("t-tokyo", "t-paris", "tpl-1", True, "queued", 500)

    decision = db.execute("SELECT outcome, reason, from_dc, to_dc, from_distance_m, to_distance_m"
                          " FROM decisions WHERE snapshot_id = %s", (snapshot,)).fetchone()
    assert decision[:4] == ("move", "closer", "t-tokyo", "t-paris")
    assert decision[4] > 9_000_000 and decision[5] < 10_000

    location = db.execute("SELECT user_id, lat, lon FROM device_locations WHERE device_id = %s",
                          ("d-traveller",)).fetchone()
    assert location == ("u-traveller", 48.85, 2.29)

    # The report itself, read back from Kafka by a consumer we did not write.
    messages = read_topic(topics["locations"], expect=1)
    key, value = next((k, v) for k, v in messages if v["device_id"] == "d-traveller")
    assert key == "u-traveller"
    assert {k: value[k] for k in sent} == sent | {"ts": value["ts"]}
    assert value["ts"].startswith(sent["ts"][:19])
    assert "received_at" in value


def test_the_transfer_job_and_its_audit_event_reach_kafka(homing, db, topics):
    transfer_id = wait_for(lambda: db.execute(
        "SELECT id FROM transfers WHERE snapshot_id = 'snap-u-traveller'").fetchone())[0]
    jobs = read_topic(topics["transfers"], expect=1)
    key, job = next((k, v) for k, v in jobs if v["transfer_id"] == transfer_id)
    assert key == "snap-u-traveller"
    assert job["from_dc"] == "t-tokyo" and job["to_dc"] == "t-paris"
    assert job["template_id"] == "tpl-1" and job["template_present"] is True
    assert job["idempotency_key"].startswith("snap-u-traveller/")

    # The decision and the queued transfer, each a CloudEvent.
    events = [v for _, v in read_topic(topics["audit"], expect=2)
              if v["data"].get("transfer_id") == transfer_id]
    assert {e["type"] for e in events} == {"io.homing.placement.decided",
                                           "io.homing.transfer.queued"}
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["subject"] == "snap-u-traveller"
        assert event["source"] == "/homing/scheduler"
    assert {e["id"] for e in events} == {f"transfer-{transfer_id}-decided",
                                         f"transfer-{transfer_id}-queued"}
    wait_for(lambda: db.execute("SELECT bool_and(sent_at IS NOT NULL) FROM outbox").fetchone()[0],
             what="outbox marked sent")


def test_a_target_without_the_template_is_told_to_copy_it(homing, db):
    snapshot = seed_snapshot(db, "u-commuter", "t-paris")
    post_ok(homing, report(user="u-commuter", device="d-commuter", lat=50.1, lon=8.6))
    row = wait_for(lambda: db.execute(
        "SELECT to_dc, template_present, bytes_total FROM transfers WHERE snapshot_id = %s",
        (snapshot,)).fetchone(), what="transfer")
    # The snapshot (500) and the template it needs (1000).
    assert row == ("t-frankfurt", False, 1500)


def test_a_user_near_the_snapshot_causes_no_transfer(homing, db):
    snapshot = seed_snapshot(db, "u-homebody", "t-sydney")
    post_ok(homing, report(user="u-homebody", device="d-homebody", lat=-33.9, lon=151.1))
    wait_for(lambda: processed(db, Counter.posted), what="the report to be processed")
    assert db.execute("SELECT count(*) FROM transfers WHERE snapshot_id = %s",
                      (snapshot,)).fetchone()[0] == 0


def test_a_batch_of_reports_is_accepted_whole_and_moves_once(homing, db):
    snapshot = seed_snapshot(db, "u-flyer", "t-virginia")
    body = [report(user="u-flyer", device="d-flyer", lat=35.6 + i / 100, lon=139.7)
            for i in range(3)]
    assert post_ok(homing, body) == {"accepted": 3}
    wait_for(lambda: processed(db, Counter.posted), what="the reports to be processed")
    rows = db.execute("SELECT to_dc, state FROM transfers WHERE snapshot_id = %s",
                      (snapshot,)).fetchall()
    assert rows == [("t-tokyo", "queued")]


def test_the_nearest_datacenters_come_with_geodesic_distances(homing):
    status, _, raw = homing.get("/v1/datacenters/nearest?lat=48.85&lon=2.29&k=2")
    assert status == 200
    items = json.loads(raw)["items"]
    assert [i["id"] for i in items] == ["t-paris", "t-frankfurt"]
    # Paris to Frankfurt is about 480 km; the first is a few km away.
    assert items[0]["distance_m"] < 10_000
    assert 470_000 < items[1]["distance_m"] < 490_000

    status, headers, raw = homing.get("/v1/datacenters/nearest?lat=91&lon=0")
    assert status == 400
    assert headers["Content-Type"] == "application/problem+json"


def test_health_and_readiness(homing):
    assert homing.get("/healthz")[0] == 200
    status, _, raw = homing.get("/readyz")
    assert status == 200 and json.loads(raw)["schema_version"] >= 1
