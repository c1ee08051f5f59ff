"""Evacuation plans through the API, without agents: a dry run names every
snapshot active at the site with its target (its replica's site, else the
nearest eligible one), level and bytes, or why it cannot move (capacity,
zones), and changes nothing else; bad input is refused with a problem and
changes nothing; viewers read, operators create, execute and cancel; a
cancelled evacuation gives back what it had reserved; every write is an
audit event that fits its schema."""
import json
import time

import pytest

from conftest import homing_with_catalog
from test_audit_events import check_event

PARIS_ONLY = {"type": "Polygon",
              "coordinates": [[[2.0, 48.5], [2.8, 48.5], [2.8, 49.2], [2.0, 49.2], [2.0, 48.5]]]}


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "evac-api", "standalone",
                                   tmp_path_factory.mktemp("evac-api"),
                                   extra={"HOMING_REPLICA_PASS_S": "0",
                                          "HOMING_CATALOG_REFRESH_S": "1"},
                                   log_lacks=("evacuation step failed",))


def add(db, snap, priority, size=1000, user=None, zones="{}"):
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority,"
               " allowed_zones) VALUES (%s, %s, 'tpl-1', %s, %s, %s)",
               (snap, user or f"u-{snap}", size, priority, zones))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
               " content_sha256) VALUES (%s, 't-paris', 1, true, repeat('a', 64))", (snap,))
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size, datacenter_id) VALUES (%s, 1, repeat('a', 64), %s, %s, 't-paris')",
               (snap, size, size))


@pytest.fixture(scope="module")
def fleet(homing, db):
    admin = homing.token("admin")
    homing.json("PUT", "/v1/zones/paris-only", {"name": "Paris", "geojson": PARIS_ONLY},
                expect=201, token=admin)
    add(db, "ev-a", 1)  # its user in Paris: Frankfurt, the nearest other site
    db.execute("INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
               " reported_at, received_at) VALUES ('d-a', 'u-ev-a', 48.86, 2.35, 10, now(),"
               " now())")
    add(db, "ev-b", 2)  # a warm replica at Tokyo holding its version: nothing to send
    copy = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
                      " content_sha256) VALUES ('ev-b', 't-tokyo', 1, false, repeat('a', 64))"
                      " RETURNING id").fetchone()[0]
    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
               " VALUES ('ev-b', 't-tokyo', %s)", (copy,))
    add(db, "ev-c", 3, size=4 * 1024 ** 4)  # larger than any site's room
    add(db, "ev-d", 4, zones="{paris-only}")  # may live at Paris only
    return ["ev-a", "ev-b", "ev-c", "ev-d"]


def world(db):
    """What a dry run must leave as it was."""
    return (db.execute("SELECT id, status, used_bytes, reserved_bytes, row_version FROM"
                       " datacenters ORDER BY id").fetchall(),
            db.execute("SELECT snapshot_id, datacenter_id, version, active, epoch FROM"
                       " placements ORDER BY id").fetchall(),
            db.execute("SELECT count(*) FROM transfers").fetchone()[0],
            db.execute("SELECT id, epoch, power FROM snapshots ORDER BY id").fetchall())


def events(db, evacuation_id):
    rows = db.execute("SELECT payload FROM outbox WHERE payload->>'type' LIKE"
                      " 'io.homing.evacuation.%%' AND (payload->'data'->>'evacuation_id')::bigint"
                      " = %s ORDER BY id", (evacuation_id,)).fetchall()
    return [r[0] for r in rows]


def test_a_dry_run_names_each_target_level_and_bytes_and_changes_nothing(homing, db, fleet):
    operator = homing.token("operator")
    before = world(db)
    evac, headers = homing.json("POST", "/v1/datacenters/t-paris/evacuations",
                                {"dry_run": True}, expect=201, token=operator)
    assert headers["Location"] == f"/v1/evacuations/{evac['id']}"
    assert (evac["state"], evac["dry_run"], evac["gate"], evac["snapshots"]) == \
        ("planned", True, "done", 4)
    plan = {i["snapshot_id"]: i for i in evac["items"]}
    got = {s: (i["priority"], i["target_dc"], i["target_kind"], i["blocked_reason"],
               i["bytes_planned"], i["delta"], i["state"]) for s, i in plan.items()}
    assert got == {
        # Frankfurt lacks the template: the version and the template (1000 + 1000).
        "ev-a": (1, "t-frankfurt", "nearest", None, 2000, False, "pending"),
        "ev-b": (2, "t-tokyo", "replica", None, 0, True, "pending"),
        "ev-c": (3, None, None, "capacity", 0, False, "blocked"),
        "ev-d": (4, None, None, "zones", 0, False, "blocked"),
    }
    assert 400_000 < plan["ev-a"]["distance_m"] < 500_000  # Paris to Frankfurt
    assert [(l["level"], l["snapshots"], l["blocked"], l["bytes_planned"])
            for l in evac["levels"]] == [(1, 1, 0, 2000), (2, 1, 0, 0), (3, 1, 1, 0),
                                         (4, 1, 1, 0)]
    # The scheduler steps about every second: a plan does not run.
    time.sleep(2.5)
    assert world(db) == before
    again = homing.json("GET", f"/v1/evacuations/{evac['id']}")[0]
    assert again["state"] == "planned" and again["items"] == evac["items"]
    listed = homing.json("GET", "/v1/evacuations?datacenter_id=t-paris&state=planned")[0]
    assert [e["id"] for e in listed["items"]] == [evac["id"]] and \
        listed["items"][0]["items"] is None
    created, = events(db, evac["id"])
    check_event(created)
    assert created["type"] == "io.homing.evacuation.created" and \
        created["data"]["dry_run"] is True and created["subject"] == "t-paris"


@pytest.mark.parametrize("body,pointer", [
    ({"dry_run": "yes"}, "/dry_run"),
    ({"gate": "sometimes"}, "/gate"),
    ({"dry_run": True, "level": 1}, "/level"),
])
def test_bad_input_is_refused_and_changes_nothing(homing, db, fleet, body, pointer):
    before = (world(db), db.execute("SELECT count(*) FROM evacuations").fetchone()[0])
    status, _, raw = homing.request("POST", "/v1/datacenters/t-paris/evacuations", body,
                                    token=homing.token("operator"))
    problem = json.loads(raw)
    assert status == 422 and problem["errors"][0]["pointer"] == pointer, raw
    assert (world(db), db.execute("SELECT count(*) FROM evacuations").fetchone()[0]) == before


def test_what_cannot_run_is_refused_with_its_reason(homing, db, fleet):
    operator = homing.token("operator")
    before = world(db)
    for path, body, status, slug in [
        ("/v1/datacenters/t-nowhere/evacuations", {"dry_run": True}, 404, "not-found"),
        # Running needs the site drained first; a dry run does not.
        ("/v1/datacenters/t-paris/evacuations", {}, 409, "datacenter-not-draining"),
        ("/v1/evacuations/999999/execute", None, 404, "not-found"),
        ("/v1/evacuations/abc/cancel", None, 404, "not-found"),
    ]:
        got, _, raw = homing.request("POST", path, body, token=operator)
        assert got == status and json.loads(raw)["type"].endswith(slug), (path, raw)
    plan = homing.json("POST", "/v1/datacenters/t-paris/evacuations", {"dry_run": True},
                       expect=201, token=operator)[0]
    got, _, raw = homing.request("POST", f"/v1/evacuations/{plan['id']}/execute", None,
                                 token=operator)
    assert got == 409 and "drain it first" in json.loads(raw)["detail"]
    assert homing.request("GET", "/v1/evacuations?state=bogus")[0] == 400
    assert homing.request("GET", "/v1/evacuations/none")[0] == 404
    assert world(db) == before
    # Down is failover's business, not an evacuation's.
    db.execute("UPDATE datacenters SET status = 'down' WHERE id = 't-virginia'")
    got, _, raw = homing.request("POST", "/v1/datacenters/t-virginia/evacuations",
                                 {"dry_run": True}, token=operator)
    db.execute("UPDATE datacenters SET status = 'active' WHERE id = 't-virginia'")
    assert got == 409 and json.loads(raw)["type"].endswith("datacenter-down")


def test_viewers_read_and_only_operators_write(homing, db, fleet):
    viewer = homing.token("viewer")
    evac = homing.json("POST", "/v1/datacenters/t-paris/evacuations", {"dry_run": True},
                       expect=201, token=homing.token("operator"))[0]
    for path in ("/v1/datacenters/t-paris/evacuations", f"/v1/evacuations/{evac['id']}/execute",
                 f"/v1/evacuations/{evac['id']}/cancel"):
        assert homing.request("POST", path, {"dry_run": True} if "datacenters" in path else None,
                              token=viewer)[0] == 403
        assert homing.request("POST", path, None, token=None)[0] == 401
    assert homing.json("GET", f"/v1/evacuations/{evac['id']}", token=viewer)[0]["state"] == \
        "planned"


def test_a_cancelled_run_gives_back_its_reservations_and_its_transfers(homing, db, fleet):
    operator = homing.token("operator")
    reserved = dict(db.execute("SELECT id, reserved_bytes FROM datacenters").fetchall())
    etag = homing.get("/v1/datacenters/t-paris")[1]["ETag"]
    homing.json("PUT", "/v1/datacenters/t-paris/status", {"status": "draining"},
                token=operator, headers={"If-Match": etag})
    plan = homing.json("POST", "/v1/datacenters/t-paris/evacuations",
                       {"dry_run": True, "gate": "running"}, expect=201, token=operator)[0]
    evac = homing.json("POST", f"/v1/evacuations/{plan['id']}/execute", token=operator)[0]
    assert evac["state"] == "running" and evac["gate"] == "running"
    again = homing.request("POST", f"/v1/datacenters/t-paris/evacuations", {}, token=operator)
    assert again[0] == 409 and b"evacuation-running" in again[2]

    # No agents: the level-1 bulk copy is queued and waits; with the gate
    # "running", level 2 (its replica holds the version: no bulk copy) starts too.
    def started():
        e = homing.json("GET", f"/v1/evacuations/{evac['id']}")[0]
        states = {i["snapshot_id"]: i["state"] for i in e["items"]}
        return states if states["ev-a"] == "copying" and states["ev-b"] != "pending" else None
    from conftest import wait_for
    states = wait_for(started, timeout=20, what="levels 1 and 2 started")
    assert states["ev-b"] in ("stopping", "switching")
    bulk = db.execute("SELECT kind, state, to_dc, reason, bytes_total FROM transfers"
                      " WHERE snapshot_id = 'ev-a'").fetchall()
    assert bulk == [("evacuate", "queued", "t-frankfurt", "evacuation", 2000)]
    assert db.execute("SELECT reserved_bytes FROM datacenters WHERE id = 't-frankfurt'"
                      ).fetchone()[0] == reserved["t-frankfurt"] + 2000

    done = homing.json("POST", f"/v1/evacuations/{evac['id']}/cancel", token=operator)[0]
    assert done["state"] == "cancelled"
    assert {i["snapshot_id"]: i["state"] for i in done["items"]} == \
        {"ev-a": "cancelled", "ev-b": "cancelled", "ev-c": "blocked", "ev-d": "blocked"}
    assert db.execute("SELECT count(*) FROM transfers WHERE state IN ('queued', 'running')"
                      ).fetchone()[0] == 0
    assert dict(db.execute("SELECT id, reserved_bytes FROM datacenters").fetchall()) == reserved
    assert db.execute("SELECT datacenter_id FROM placements WHERE active AND snapshot_id"
                      " IN ('ev-a', 'ev-b') ORDER BY snapshot_id").fetchall() == \
        [("t-paris",), ("t-paris",)]
    assert homing.request("POST", f"/v1/evacuations/{evac['id']}/cancel", None,
                          token=operator)[0] == 409
    assert homing.request("POST", f"/v1/evacuations/{evac['id']}/execute", None,
                          token=operator)[0] == 409
    kinds = [e["type"] for e in events(db, evac["id"])]
    assert kinds == ["io.homing.evacuation.created", "io.homing.evacuation.started",
                     "io.homing.evacuation.cancelled"]
    for e in events(db, evac["id"]):
        check_event(e)
        assert e["data"]["actor"]["role"] == "operator"
