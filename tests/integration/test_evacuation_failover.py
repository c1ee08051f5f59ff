"""A site declared down during its evacuation: the items the evacuation had
not switched over yet are handed to the failover. Without agents: Paris,
drained, runs its VMs and is being evacuated; level 1 waits for its VMs to
be powered off (one at its warm replica's site) and for a bulk copy (one
without a replica), level 2 has not started. Paris goes down: the failover
activates the replicas, the one without is unrecoverable, and the
evacuation's items end skipped saying so; the bulk copy is cancelled, the
room the evacuation held is given back, and the evacuation completes
instead of waiting for power-off records that will never come."""
import pytest

from conftest import homing_with_catalog, wait_for
from test_audit_events import check_event


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "evac-failover", "standalone",
                                   tmp_path_factory.mktemp("evac-failover"),
                                   extra={"HOMING_REPLICA_PASS_S": "0",
                                          "HOMING_CATALOG_REFRESH_S": "1"},
                                   log_lacks=("evacuation step failed",))


def add(db, snap, priority, replica=None):
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority, power)"
               " VALUES (%s, %s, 'tpl-1', 1000, %s, 'on')", (snap, f"u-{snap}", priority))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
               " content_sha256) VALUES (%s, 't-paris', 1, true, repeat('a', 64))", (snap,))
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size, datacenter_id) VALUES (%s, 1, repeat('a', 64), 1000, 1000,"
               " 't-paris')", (snap,))
    db.execute("INSERT INTO power_records (snapshot_id, datacenter_id, epoch, state)"
               " VALUES (%s, 't-paris', 1, 'powered_on')", (snap,))
    if replica:
        copy = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
                          " content_sha256) VALUES (%s, %s, 1, false, repeat('a', 64))"
                          " RETURNING id", (snap, replica)).fetchone()[0]
        db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
                   " VALUES (%s, %s, %s)", (snap, replica, copy))


def items(db, evac):
    return dict((r[0], r[1:]) for r in db.execute(
        "SELECT snapshot_id, state, error FROM evacuation_items WHERE evacuation_id = %s",
        (evac,)))


def test_a_site_down_mid_evacuation_hands_its_waiting_items_to_the_failover(homing, db):
    add(db, "ef-1", 1, replica="t-frankfurt")  # its copy is current: waits for the power-off
    add(db, "ef-2", 1)                          # no replica: a bulk copy first
    add(db, "ef-3", 2, replica="t-tokyo")       # level 2: waits for level 1
    reserved_before = dict(db.execute("SELECT id, reserved_bytes FROM datacenters").fetchall())
    operator = homing.token("operator")
    homing.json("PUT", "/v1/datacenters/t-paris/status", {"status": "draining"}, token=operator)
    plan = homing.json("POST", "/v1/datacenters/t-paris/evacuations", {"dry_run": True},
                       expect=201, token=operator)[0]
    evac = plan["id"]
    homing.json("POST", f"/v1/evacuations/{evac}/execute", token=operator)
    wait_for(lambda: {k: v[0] for k, v in items(db, evac).items()} ==
             {"ef-1": "stopping", "ef-2": "copying", "ef-3": "pending"}, timeout=30,
             what="level 1 under way, level 2 waiting")
    bulk = db.execute("SELECT bulk_transfer FROM evacuation_items WHERE snapshot_id = 'ef-2'"
                      ).fetchone()[0]
    assert db.execute("SELECT state FROM transfers WHERE id = %s", (bulk,)).fetchone()[0] == \
        "queued"
    held = db.execute("SELECT sum(reserved_bytes) FROM datacenters").fetchone()[0]
    assert held > sum(reserved_before.values())

    homing.json("PUT", "/v1/datacenters/t-paris/status", {"status": "down"}, token=operator)
    fid = homing.json("GET", "/v1/failovers?datacenter_id=t-paris")[0]["items"][0]["id"]
    # Handed over in the status change's transaction.
    assert items(db, evac) == {
        "ef-1": ("skipped", f"t-paris went down: handed to failover {fid}, failed over to"
                            " t-frankfurt"),
        "ef-2": ("skipped", f"t-paris went down: handed to failover {fid}, unrecoverable until"
                            " the site returns"),
        "ef-3": ("skipped", f"t-paris went down: handed to failover {fid}, failed over to"
                            " t-tokyo")}
    assert db.execute("SELECT state, error FROM transfers WHERE id = %s", (bulk,)).fetchone() == \
        ("cancelled", "failover of t-paris")
    assert dict(db.execute("SELECT id, reserved_bytes FROM datacenters").fetchall()) == \
        reserved_before
    assert db.execute("SELECT snapshot_id, datacenter_id FROM placements WHERE active"
                      " ORDER BY snapshot_id").fetchall() == \
        [("ef-1", "t-frankfurt"), ("ef-2", "t-paris"), ("ef-3", "t-tokyo")]
    # The evacuation completes: nothing of it is left waiting.
    wait_for(lambda: homing.json("GET", f"/v1/evacuations/{evac}")[0]["state"] == "done",
             timeout=30, what="the evacuation to complete")
    doc = homing.json("GET", f"/v1/evacuations/{evac}")[0]
    assert [(lv["level"], lv["skipped"], lv["done"]) for lv in doc["levels"]] == \
        [(1, 2, 0), (2, 1, 0)]
    (completed,) = [r[0] for r in db.execute(
        "SELECT payload FROM outbox WHERE payload->>'type' = 'io.homing.evacuation.completed'")]
    check_event(completed)
    assert (completed["data"]["skipped"], completed["data"]["done"]) == (3, 0)
