"""A failback is a move like any other: it needs room at the returned site.
Four snapshots of levels 1 to 4 fail over from Paris to their replicas at
Frankfurt; Paris comes back with room for two of them. A failback then is
refused with a problem naming the two that do not fit, and changes nothing;
the operator chooses: the most urgent ones that fit, or all of them over the
capacity. Bad choices are 422 and change nothing either."""
import pytest

from conftest import Homing, seed_catalog, seed_snapshot
from test_audit_events import check_event

SNAPS = [("fb-1", 1), ("fb-2", 2), ("fb-3", 3), ("fb-4", 4)]
SIZE = 1000  # Paris holds the template: each move needs the snapshot's bytes alone


@pytest.fixture(scope="module")
def api(database, db, topics, tmp_path_factory):
    h = Homing(database, topics, "failback-capacity", "serve",
               tmp_path_factory.mktemp("failback-capacity"))
    h.migrate()
    seed_catalog(db)
    for snap, level in SNAPS:
        seed_snapshot(db, f"u-{snap}", "t-paris", snapshot=snap, size=SIZE)
        db.execute("UPDATE snapshots SET priority = %s WHERE id = %s", (level, snap))
        copy = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                          " VALUES (%s, 't-frankfurt', 1, false) RETURNING id",
                          (snap,)).fetchone()[0]
        db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
                   " VALUES (%s, 't-frankfurt', %s)", (snap, copy))
    h.start()
    yield h
    h.stop()


def failbacks(db):
    return db.execute("SELECT snapshot_id, from_dc, to_dc, bytes_total FROM transfers"
                      " WHERE reason = 'failback' ORDER BY snapshot_id").fetchall()


def room(db):
    return db.execute("SELECT capacity_bytes - used_bytes - reserved_bytes FROM datacenters"
                      " WHERE id = 't-paris'").fetchone()[0]


def events(db):
    return [r[0] for r in db.execute("SELECT payload FROM outbox WHERE payload->>'type' ="
                                     " 'io.homing.failover.failback_started' ORDER BY id")]


def test_a_failback_beyond_the_returned_sites_room_is_refused_or_chosen(api, db):
    operator = api.token("operator")
    api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "down"}, token=operator)
    assert db.execute("SELECT count(*) FROM placements WHERE datacenter_id = 't-frankfurt'"
                      " AND active").fetchone()[0] == 4
    api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "active"}, token=operator)
    fid = api.json("GET", "/v1/failovers?datacenter_id=t-paris")[0]["items"][0]["id"]
    # Paris is back with room for two and a half of them.
    db.execute("UPDATE datacenters SET capacity_bytes = used_bytes + reserved_bytes + 2500"
               " WHERE id = 't-paris'")
    path = f"/v1/failovers/{fid}/failback"

    # By default, refused: the problem names the two least urgent, which do not fit.
    doc, _ = api.json("POST", path, token=operator, expect=409)
    assert doc["type"].endswith("site-full")
    assert (doc["free_bytes"], doc["bytes_needed"], doc["snapshots"]) == \
        (2500, 4000, ["fb-3", "fb-4"])
    assert "2 of 4 snapshots do not fit (fb-3, fb-4)" in doc["detail"]
    assert "t-paris has 2500 bytes free" in doc["detail"]
    assert failbacks(db) == [] and room(db) == 2500 and events(db) == []

    # Bad choices, a viewer: 422 and 403, nothing changes.
    doc, _ = api.json("POST", path, {"when_full": "maybe"}, token=operator, expect=422)
    assert doc["errors"][0]["pointer"] == "/when_full"
    doc, _ = api.json("POST", path, {"when": "queue_all"}, token=operator, expect=422)
    assert doc["errors"][0]["pointer"] == "/when"
    api.json("POST", path, [], token=operator, expect=422)
    api.json("POST", path, {"when_full": "queue_all"}, token=api.token("viewer"), expect=403)
    assert failbacks(db) == [] and room(db) == 2500 and events(db) == []

    # The most urgent ones that fit: levels 1 and 2; the event names the rest.
    doc, _ = api.json("POST", path, {"when_full": "queue_what_fits"}, token=operator,
                      expect=202)
    assert [lv["failback_queued"] for lv in doc["levels"]] == [1, 1, 0, 0, 0]
    assert failbacks(db) == [("fb-1", "t-frankfurt", "t-paris", SIZE),
                             ("fb-2", "t-frankfurt", "t-paris", SIZE)]
    assert room(db) == 500
    (event,) = events(db)
    check_event(event)
    assert (event["data"]["transfers"], event["data"]["when_full"],
            event["data"]["not_queued"]) == (2, "queue_what_fits", ["fb-3", "fb-4"])

    # Asked again without a choice: the two left still do not fit in what is left.
    doc, _ = api.json("POST", path, token=operator, expect=409)
    assert (doc["free_bytes"], doc["bytes_needed"], doc["snapshots"]) == \
        (500, 2000, ["fb-3", "fb-4"])
    assert len(failbacks(db)) == 2 and room(db) == 500

    # The operator's choice to exceed it: all of them, reserved beyond the capacity.
    doc, _ = api.json("POST", path, {"when_full": "queue_all"}, token=operator, expect=202)
    assert [lv["failback_queued"] for lv in doc["levels"]] == [1, 1, 1, 1, 0]
    assert [r[0] for r in failbacks(db)] == ["fb-1", "fb-2", "fb-3", "fb-4"]
    assert room(db) == -1500
    event = events(db)[-1]
    assert (event["data"]["transfers"], event["data"]["when_full"],
            event["data"]["not_queued"]) == (2, "queue_all", [])

    # Nothing left to queue: nothing needs room, and an empty body is fine.
    doc, _ = api.json("POST", path, token=operator, expect=202)
    assert len(failbacks(db)) == 4 and room(db) == -1500
