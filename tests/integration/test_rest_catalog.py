"""The operator REST API over the catalog, against the real PostgreSQL:
datacenters, templates and their replicas, snapshots with their placements
and decisions, zones. Writes are transactions with an audit event each;
ETag and If-Match keep two operators from overwriting each other unseen;
lists are paged with a cursor."""
import json

import pytest

from conftest import homing_with_catalog, seed_snapshot

PARIS = {"id": "c-paris", "name": "Paris 1", "provider": "test", "city": "Paris",
         "country_code": "FR", "lat": 48.86, "lon": 2.35, "capacity_bytes": 10 ** 12}


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "test-catalog", "serve",
                                   tmp_path_factory.mktemp("catalog"))


@pytest.fixture(scope="module")
def admin(homing):
    return homing.token("admin", "alice")


def audit_events(db, subject):
    return [row[0] for row in db.execute(
        "SELECT payload FROM outbox WHERE key = %s AND payload->>'source' = '/homing/api'"
        " ORDER BY id", (subject,))]


def test_a_datacenter_is_created_read_and_audited(homing, db, admin):
    created, headers = homing.json("POST", "/v1/datacenters", PARIS, expect=201, token=admin)
    assert headers["Location"] == "/v1/datacenters/c-paris"
    assert headers["ETag"] == '"1"'
    assert created["status"] == "active" and created["used_bytes"] == 0
    assert created["snapshots"] == 0

    got, headers = homing.json("GET", "/v1/datacenters/c-paris")
    assert got == created and headers["ETag"] == '"1"'

    [event] = audit_events(db, "c-paris")
    assert event["specversion"] == "1.0" and event["type"] == "io.homing.datacenter.created"
    assert event["source"] == "/homing/api" and event["subject"] == "c-paris"
    assert event["datacontenttype"] == "application/json" and event["id"] and event["time"]
    assert event["data"]["actor"] == {"kind": "operator", "name": "alice", "role": "admin",
                                      "token_id": event["data"]["actor"]["token_id"]}
    assert not any(v.startswith("hop_") for v in json.dumps(event).split('"'))

    status, _, raw = homing.request("POST", "/v1/datacenters", PARIS, token=admin)
    assert status == 409 and json.loads(raw)["type"] == "urn:homing:problem:already-exists"


@pytest.mark.parametrize("change,pointer", [
    ({"lat": 91}, "/lat"), ({"lon": "2"}, "/lon"), ({"capacity_bytes": -1}, "/capacity_bytes"),
    ({"country_code": "fr"}, "/country_code"), ({"colour": "red"}, "/colour"),
    ({"id": "-bad"}, "/id"), ({"status": "sleeping"}, "/status"),
])
def test_bad_datacenters_are_refused_and_nothing_is_written(homing, db, admin, change, pointer):
    body = dict(PARIS, id="c-bad") | change
    status, headers, raw = homing.request("POST", "/v1/datacenters", body, token=admin)
    assert status == 422, raw
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(raw)["errors"][0]["pointer"] == pointer
    assert db.execute("SELECT count(*) FROM datacenters WHERE id LIKE 'c-bad%'"
                      " OR id = '-bad'").fetchone()[0] == 0


def test_if_match_keeps_two_operators_from_overwriting_each_other(homing, admin):
    _, headers = homing.json("GET", "/v1/datacenters/c-paris")
    etag = headers["ETag"]

    # Without If-Match a PATCH is refused: 428.
    status, _, _ = homing.request("PATCH", "/v1/datacenters/c-paris", {"name": "x"}, token=admin)
    assert status == 428

    # Operator A changes it with the ETag both read ...
    changed, headers = homing.json("PATCH", "/v1/datacenters/c-paris",
                                   {"capacity_bytes": 2 * 10 ** 12, "city": None}, token=admin,
                                   headers={"If-Match": etag})
    assert changed["capacity_bytes"] == 2 * 10 ** 12 and changed["city"] is None
    assert changed["name"] == "Paris 1"
    assert headers["ETag"] != etag

    # ... and operator B, with the same old ETag, is told: 412, and nothing changes.
    status, _, raw = homing.request("PATCH", "/v1/datacenters/c-paris", {"name": "B's"},
                                    token=admin, headers={"If-Match": etag})
    assert status == 412, raw
    assert json.loads(raw)["current_etag"] == headers["ETag"]
    assert homing.json("GET", "/v1/datacenters/c-paris")[0]["name"] == "Paris 1"


def test_draining_is_an_operator_action_with_its_event(homing, db):
    operator = homing.token("operator")
    drained, _ = homing.json("PUT", "/v1/datacenters/c-paris/status", {"status": "draining"},
                             token=operator)
    assert drained["status"] == "draining"
    listed, _ = homing.json("GET", "/v1/datacenters?status=draining")
    assert [d["id"] for d in listed["items"]] == ["c-paris"]
    event = audit_events(db, "c-paris")[-1]
    assert event["type"] == "io.homing.datacenter.status_changed"
    assert (event["data"]["from"], event["data"]["to"]) == ("active", "draining")
    assert event["data"]["actor"]["role"] == "operator"

    # Setting it again changes nothing and says nothing.
    homing.json("PUT", "/v1/datacenters/c-paris/status", {"status": "draining"}, token=operator)
    assert audit_events(db, "c-paris")[-1]["id"] == event["id"]
    # A draining datacenter is not offered as the nearest.
    near, _ = homing.json("GET", "/v1/datacenters/nearest?lat=48.86&lon=2.35&k=1")
    assert near["items"][0]["id"] == "t-paris"


def test_nearest_follows_the_catalog_as_it_changes(homing, admin):
    """The nearest come from geo's index, rebuilt when a datacenter changes: all
    the active ones, nearest first, and one added, moved or removed counts at once."""
    near = "/v1/datacenters/nearest?lat=-54.8&lon=-68.3&k=1000"
    every, _ = homing.json("GET", near)
    listed, _ = homing.json("GET", "/v1/datacenters?status=active&limit=500")
    assert sorted(d["id"] for d in every["items"]) == sorted(d["id"] for d in listed["items"])
    distances = [d["distance_m"] for d in every["items"]]
    assert distances == sorted(distances) and distances[0] > 0

    homing.json("POST", "/v1/datacenters", dict(PARIS, id="c-ushuaia", lat=-54.8, lon=-68.3),
                expect=201, token=admin)
    first, _ = homing.json("GET", near)
    assert (first["items"][0]["id"], first["items"][0]["distance_m"]) == ("c-ushuaia", 0)
    assert len(first["items"]) == len(every["items"]) + 1

    etag = homing.request("GET", "/v1/datacenters/c-ushuaia")[1]["ETag"]
    homing.json("PATCH", "/v1/datacenters/c-ushuaia", {"lat": 60.0}, token=admin,
                headers={"If-Match": etag})
    moved, _ = homing.json("GET", near)
    assert moved["items"][0] == every["items"][0]

    assert homing.request("DELETE", "/v1/datacenters/c-ushuaia", token=admin)[0] == 204
    assert homing.json("GET", near)[0] == every


def test_lists_are_paged_with_an_opaque_cursor(homing):
    seen, cursor = [], None
    while True:
        page, _ = homing.json("GET", "/v1/datacenters?limit=2" +
                              (f"&cursor={cursor}" if cursor else ""))
        assert len(page["items"]) <= 2
        seen += [d["id"] for d in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 6
    assert homing.get("/v1/datacenters?cursor=***")[0] == 400
    assert homing.get("/v1/datacenters?limit=0")[0] == 400
    assert homing.get("/v1/datacenters?status=asleep")[0] == 400


def test_a_datacenter_holding_snapshots_cannot_be_deleted(homing, db, admin):
    seed_snapshot(db, "u-held", "t-sydney")
    status, _, raw = homing.request("DELETE", "/v1/datacenters/t-sydney", token=admin)
    assert status == 409 and json.loads(raw)["type"] == "urn:homing:problem:datacenter-in-use"
    assert homing.json("GET", "/v1/datacenters/t-sydney")[0]["snapshots"] == 1


def test_an_unused_datacenter_is_deleted_with_if_match(homing, db, admin):
    homing.json("POST", "/v1/datacenters", dict(PARIS, id="c-spare"), expect=201, token=admin)
    status, _, _ = homing.request("DELETE", "/v1/datacenters/c-spare", token=admin,
                                  headers={"If-Match": '"7"'})
    assert status == 412
    status, _, _ = homing.request("DELETE", "/v1/datacenters/c-spare", token=admin,
                                  headers={"If-Match": '"1"'})
    assert status == 204
    assert homing.get("/v1/datacenters/c-spare")[0] == 404
    assert audit_events(db, "c-spare")[-1]["type"] == "io.homing.datacenter.deleted"


def test_templates_and_their_replicas(homing, db, admin):
    tpl, headers = homing.json("POST", "/v1/templates",
                               {"id": "tpl-new", "name": "New", "size_bytes": 4096},
                               expect=201, token=admin)
    assert tpl["replicas"] == []
    _, h2 = homing.json("PUT", "/v1/templates/tpl-new/replicas/t-tokyo", expect=201,
                        token=admin)
    assert h2["ETag"] != headers["ETag"]  # a replica changes the template
    again, _ = homing.json("PUT", "/v1/templates/tpl-new/replicas/t-tokyo", token=admin)
    assert again["replicas"] == ["t-tokyo"]
    assert homing.request("PUT", "/v1/templates/tpl-new/replicas/nowhere",
                          token=admin)[0] == 404
    replicas, _ = homing.json("GET", "/v1/templates/tpl-new/replicas")
    assert [r["datacenter_id"] for r in replicas["items"]] == ["t-tokyo"]
    assert homing.request("DELETE", "/v1/templates/tpl-new/replicas/t-tokyo",
                          token=admin)[0] == 204
    assert homing.json("GET", "/v1/templates/tpl-new")[0]["replicas"] == []

    # tpl-1 has snapshots: it stays.
    status, _, raw = homing.request("DELETE", "/v1/templates/tpl-1", token=admin)
    assert status == 409 and json.loads(raw)["type"] == "urn:homing:problem:template-in-use"
    assert homing.request("DELETE", "/v1/templates/tpl-new", token=admin)[0] == 204
    types = [e["type"] for e in audit_events(db, "tpl-new")]
    assert types == ["io.homing.template.created", "io.homing.template.replica_added",
                     "io.homing.template.replica_removed", "io.homing.template.deleted"]


SQUARE = {"type": "Polygon",
          "coordinates": [[[-10, 35], [30, 35], [30, 60], [-10, 60], [-10, 35]]]}


def test_zones_are_created_replaced_listed_and_deleted(homing, db, admin):
    zone, headers = homing.json("PUT", "/v1/zones/eu", {"name": "Europe", "geojson": SQUARE},
                                expect=201, token=admin)
    assert zone["geojson"] == SQUARE and headers["Location"] == "/v1/zones/eu"
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE["coordinates"]]}
    status, _, _ = homing.request("PUT", "/v1/zones/eu", {"name": "Europe", "geojson": multi},
                                  token=admin, headers={"If-Match": '"9"'})
    assert status == 412
    replaced, _ = homing.json("PUT", "/v1/zones/eu", {"name": "EU", "geojson": multi},
                              token=admin, headers={"If-Match": headers["ETag"]})
    assert replaced["name"] == "EU" and replaced["geojson"]["type"] == "MultiPolygon"
    assert [z["id"] for z in homing.json("GET", "/v1/zones")[0]["items"]] == ["eu"]
    assert [e["type"] for e in audit_events(db, "eu")] == ["io.homing.zone.created",
                                                           "io.homing.zone.replaced"]


@pytest.mark.parametrize("geojson", [
    {"type": "Point", "coordinates": [0, 0]},
    {"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]},
    {"type": "Polygon", "coordinates": "nope"},
    {"coordinates": []},
])
def test_a_zone_that_is_not_a_polygon_is_refused(homing, db, admin, geojson):
    status, _, raw = homing.request("PUT", "/v1/zones/bad", {"name": "x", "geojson": geojson},
                                    token=admin)
    assert status == 422, raw
    assert json.loads(raw)["errors"][0]["pointer"] == "/geojson"
    assert db.execute("SELECT count(*) FROM zones WHERE id = 'bad'").fetchone()[0] == 0


def test_snapshots_with_their_placement_history_and_decisions(homing, db, admin):
    body = {"id": "snap-api", "user_id": "u-api", "template_id": "tpl-1", "size_bytes": 700,
            "priority": 5, "allowed_zones": ["eu"], "datacenter_id": "t-frankfurt"}
    snap, headers = homing.json("POST", "/v1/snapshots", body, expect=201, token=admin)
    assert snap["placement"]["datacenter_id"] == "t-frankfurt"
    assert snap["allowed_zones"] == ["eu"] and snap["priority"] == 5

    bad = dict(body, id="snap-bad", allowed_zones=["atlantis"])
    assert homing.request("POST", "/v1/snapshots", bad, token=admin)[0] == 422
    bad = dict(body, id="snap-bad", template_id="tpl-none")
    status, _, raw = homing.request("POST", "/v1/snapshots", bad, token=admin)
    assert status == 422 and json.loads(raw)["errors"][0]["pointer"] == "/template_id"

    # The zone is in use now.
    status, _, raw = homing.request("DELETE", "/v1/zones/eu", token=admin)
    assert status == 409 and json.loads(raw)["type"] == "urn:homing:problem:zone-in-use"

    # Priority levels are 1 (most urgent) to 5.
    for level in (0, 6, 2.5, "1"):
        status, _, raw = homing.request("PATCH", "/v1/snapshots/snap-api", {"priority": level},
                                        token=admin, headers={"If-Match": headers["ETag"]})
        assert status == 422 and json.loads(raw)["errors"][0]["pointer"] == "/priority", raw
    patched, _ = homing.json("PATCH", "/v1/snapshots/snap-api",
                             {"priority": 1, "allowed_zones": []}, token=admin,
                             headers={"If-Match": headers["ETag"]})
    assert patched["priority"] == 1 and patched["allowed_zones"] == []
    assert homing.request("DELETE", "/v1/zones/eu", token=admin)[0] == 204

    # History: the scheduler moved it once (written here as it would).
    db.execute("UPDATE placements SET active = false, deactivated_at = now()"
               " WHERE snapshot_id = 'snap-api'")
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES ('snap-api', 't-paris', 1, true)")
    db.execute("INSERT INTO decisions (snapshot_id, user_id, device_id, outcome, reason,"
               " from_dc, to_dc, from_distance_m, to_distance_m, report_lat, report_lon,"
               " report_ts) VALUES ('snap-api', 'u-api', 'd-api', 'move', 'closer',"
               " 't-frankfurt', 't-paris', 480000, 2000, 48.85, 2.3, now())")
    active, _ = homing.json("GET", "/v1/snapshots/snap-api/placement")
    assert active["datacenter_id"] == "t-paris" and active["active"] is True
    history, _ = homing.json("GET", "/v1/snapshots/snap-api/placements?limit=1")
    assert [p["datacenter_id"] for p in history["items"]] == ["t-paris"]
    older, _ = homing.json("GET", "/v1/snapshots/snap-api/placements?limit=1&cursor=" +
                           history["next_cursor"])
    assert [p["datacenter_id"] for p in older["items"]] == ["t-frankfurt"]
    assert older["items"][0]["deactivated_at"] and older["next_cursor"] is None
    decisions, _ = homing.json("GET", "/v1/snapshots/snap-api/decisions")
    assert decisions["items"][0]["outcome"] == "move"
    assert decisions["items"][0]["to_dc"] == "t-paris"

    at_paris, _ = homing.json("GET", "/v1/snapshots?datacenter_id=t-paris")
    assert [s["id"] for s in at_paris["items"]] == ["snap-api"]
    by_user, _ = homing.json("GET", "/v1/snapshots?user_id=u-api")
    assert [s["id"] for s in by_user["items"]] == ["snap-api"]
    assert homing.get("/v1/snapshots/nope/decisions")[0] == 404

    assert homing.request("DELETE", "/v1/snapshots/snap-api", token=admin)[0] == 204
    assert homing.get("/v1/snapshots/snap-api")[0] == 404
    assert audit_events(db, "snap-api")[-1]["type"] == "io.homing.snapshot.deleted"


def test_a_write_that_fails_leaves_no_trace(homing, db, admin):
    before = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert homing.request("PATCH", "/v1/datacenters/nope", {"name": "x"}, token=admin,
                          headers={"If-Match": '"1"'})[0] == 404
    assert homing.request("POST", "/v1/datacenters", b"{not json", token=admin)[0] == 400
    assert homing.request("POST", "/v1/datacenters", PARIS, token=admin,
                          content_type="text/plain")[0] == 415
    assert db.execute("SELECT count(*) FROM outbox").fetchone()[0] == before
