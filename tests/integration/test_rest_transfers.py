"""Transfers through the operator API: filtered lists, cancel and retry with
their state machine, and the audit events and retried jobs that the outbox
relay puts on Kafka (homing standalone runs the relay)."""
import json
import time

import pytest

from conftest import homing_with_catalog, now_rfc3339, read_topic, seed_snapshot, wait_for


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, f"test-{topics['locations']}",
                                   "standalone", tmp_path_factory.mktemp("transfers"))


def add_transfer(db, snapshot, to_dc, state, from_dc=None, key=None):
    """A transfer as its writers would leave it: queued, then moved on to
    `state` (the database keeps the state machine for every writer)."""
    tid = db.execute(
        "INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,"
        " reason, idempotency_key, bytes_total) VALUES (%s, %s, %s, 'tpl-1', true,"
        " 'closer', %s, 500) RETURNING id",
        (snapshot, from_dc, to_dc, key or f"{snapshot}/{to_dc}/{state}/{time.time()}"),
    ).fetchone()[0]
    if state != "queued":
        db.execute("UPDATE transfers SET state = %s WHERE id = %s", (state, tid))
    return tid


@pytest.fixture(scope="module")
def seeded(homing, db):
    ids = {}
    seed_snapshot(db, "u-q", "t-tokyo")
    ids["queued"] = add_transfer(db, "snap-u-q", "t-paris", "queued", "t-tokyo")
    seed_snapshot(db, "u-f", "t-sydney")
    ids["failed"] = add_transfer(db, "snap-u-f", "t-frankfurt", "failed", "t-sydney")
    seed_snapshot(db, "u-s", "t-virginia")
    ids["succeeded"] = add_transfer(db, "snap-u-s", "t-tokyo", "succeeded", "t-virginia")
    seed_snapshot(db, "u-busy", "t-paris")
    ids["busy_failed"] = add_transfer(db, "snap-u-busy", "t-tokyo", "failed", "t-paris")
    ids["busy_open"] = add_transfer(db, "snap-u-busy", "t-sydney", "running", "t-paris")
    return ids


def items(homing, query):
    return homing.json("GET", "/v1/transfers" + query)[0]["items"]


def test_transfers_are_listed_newest_first_with_filters(homing, seeded):
    all_ids = [t["id"] for t in items(homing, "")]
    assert all_ids == sorted(all_ids, reverse=True) and len(all_ids) == 5
    assert {t["state"] for t in items(homing, "?state=failed")} == {"failed"}
    assert len(items(homing, "?state=queued,running")) == 2
    assert {t["id"] for t in items(homing, "?datacenter_id=t-frankfurt")} == {seeded["failed"]}
    assert {t["id"] for t in items(homing, "?snapshot_id=snap-u-busy")} == \
        {seeded["busy_failed"], seeded["busy_open"]}
    assert items(homing, "?since=" + now_rfc3339(3600)) == []
    assert len(items(homing, "?until=" + now_rfc3339(3600))) == 5
    page, _ = homing.json("GET", "/v1/transfers?limit=2")
    rest, _ = homing.json("GET", "/v1/transfers?limit=10&cursor=" + page["next_cursor"])
    assert [t["id"] for t in page["items"] + rest["items"]] == all_ids
    assert homing.get("/v1/transfers?state=lost")[0] == 400
    assert homing.get("/v1/transfers?since=yesterday")[0] == 400


def test_one_transfer_and_unknown_ones(homing, seeded):
    t, _ = homing.json("GET", f"/v1/transfers/{seeded['queued']}")
    assert t["snapshot_id"] == "snap-u-q" and t["state"] == "queued" and t["retry_of"] is None
    assert homing.get("/v1/transfers/999999")[0] == 404
    assert homing.get("/v1/transfers/abc")[0] == 404


def test_cancel_takes_a_queued_transfer_out_once(homing, db, seeded):
    operator = homing.token("operator", "bob")
    t, _ = homing.json("POST", f"/v1/transfers/{seeded['queued']}/cancel", token=operator)
    assert t["state"] == "cancelled" and "bob" in t["error"]
    status, _, raw = homing.request("POST", f"/v1/transfers/{seeded['queued']}/cancel",
                                    token=operator)
    assert status == 409
    assert json.loads(raw)["type"] == "urn:homing:problem:transfer-not-cancellable"
    status, _, _ = homing.request("POST", f"/v1/transfers/{seeded['succeeded']}/cancel",
                                  token=operator)
    assert status == 409


def test_retry_queues_a_new_transfer_that_names_the_old_one(homing, db, seeded, topics):
    operator = homing.token("operator", "bob")
    new, headers = homing.json("POST", f"/v1/transfers/{seeded['failed']}/retry", expect=201,
                               token=operator)
    assert headers["Location"] == f"/v1/transfers/{new['id']}"
    assert new["state"] == "queued" and new["retry_of"] == seeded["failed"]
    assert (new["from_dc"], new["to_dc"]) == ("t-sydney", "t-frankfurt")
    # Frankfurt lacks the template: it travels too (500 + 1000).
    assert new["template_present"] is False and new["bytes_total"] == 1500
    assert new["idempotency_key"] == f"retry-of-{seeded['failed']}"
    # Its bytes are promised at the target, as the scheduler's transfers are.
    assert db.execute("SELECT reserved_bytes FROM datacenters WHERE id = 't-frankfurt'"
                      ).fetchone()[0] == 1500

    # A second click queues nothing more.
    status, _, raw = homing.request("POST", f"/v1/transfers/{seeded['failed']}/retry",
                                    token=operator)
    assert status == 409 and json.loads(raw)["type"] == "urn:homing:problem:already-retried"

    # The job reaches the transfers topic like the scheduler's.
    jobs = wait_for(lambda: [v for _, v in read_topic(topics["transfers"], expect=1, timeout=5)
                             if v.get("transfer_id") == new["id"]], timeout=30, what="the job")
    assert jobs[0]["retry_of"] == seeded["failed"] and jobs[0]["to_dc"] == "t-frankfurt"


def test_a_cancelled_transfer_can_be_retried_and_cancelling_releases_its_bytes(homing, db,
                                                                              seeded):
    operator = homing.token("operator", "bob")
    new, _ = homing.json("POST", f"/v1/transfers/{seeded['queued']}/retry", expect=201,
                         token=operator)
    assert new["retry_of"] == seeded["queued"] and new["to_dc"] == "t-paris"
    reserved = "SELECT reserved_bytes FROM datacenters WHERE id = 't-paris'"
    assert db.execute(reserved).fetchone()[0] == 500
    homing.json("POST", f"/v1/transfers/{new['id']}/cancel", token=operator)
    assert db.execute(reserved).fetchone()[0] == 0
    # ... and that one may be retried in turn.
    again, _ = homing.json("POST", f"/v1/transfers/{new['id']}/retry", expect=201,
                           token=operator)
    assert again["retry_of"] == new["id"]


def test_retry_is_refused_while_another_transfer_of_the_snapshot_is_open(homing, db, seeded):
    operator = homing.token("operator", "bob")
    status, _, raw = homing.request("POST", f"/v1/transfers/{seeded['busy_failed']}/retry",
                                    token=operator)
    assert status == 409, raw
    assert json.loads(raw)["type"] == "urn:homing:problem:snapshot-in-transfer"
    status, _, raw = homing.request("POST", f"/v1/transfers/{seeded['busy_open']}/retry",
                                    token=operator)
    assert status == 409
    assert json.loads(raw)["type"] == "urn:homing:problem:transfer-not-retryable"
    assert db.execute("SELECT count(*) FROM transfers WHERE snapshot_id = 'snap-u-busy'"
                      ).fetchone()[0] == 2


def test_operator_actions_reach_the_audit_topic_as_cloudevents(homing, topics, seeded):
    def cancelled():
        return [v for _, v in read_topic(topics["audit"], expect=10, timeout=5)
                if v.get("type") == "io.homing.transfer.cancelled"
                and v["data"]["transfer_id"] == seeded["queued"]]
    [event] = wait_for(cancelled, timeout=30, what="the cancel event on Kafka")
    assert event["specversion"] == "1.0" and event["source"] == "/homing/api"
    assert event["subject"] == "snap-u-q"
    assert event["data"]["transfer_id"] == seeded["queued"]
    assert event["data"]["actor"]["name"] == "bob"
    assert event["data"]["transfer"]["state"] == "cancelled"


def test_stats_count_the_queue(homing):
    stats, _ = homing.json("GET", "/v1/stats")
    # Two retries queued, one running.
    assert stats["transfers"]["queued"] == 2 and stats["transfers"]["running"] == 1
    assert stats["datacenters"]["active"] == 5
    assert stats["ingest"]["reports_accepted_total"] == 0
