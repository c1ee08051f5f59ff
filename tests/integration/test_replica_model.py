"""Priority levels and replicas as PostgreSQL keeps them (migration 020):
a snapshot's level reaches its open transfers; protection policies per
level; `replicate` transfers beside the one open `move`, a replica that is
kept out of eviction and counted against its datacenter's capacity."""
import pytest

from conftest import Homing, seed_catalog, seed_snapshot


@pytest.fixture(scope="module")
def api(database, db, topics, tmp_path_factory):
    h = Homing(database, topics, "replica-model", "serve", tmp_path_factory.mktemp("rm"))
    h.migrate()
    seed_catalog(db)
    h.start()
    yield h
    h.stop()


def queue(db, snapshot, to_dc, kind=None, from_dc=None, key=None):
    cols = "snapshot_id, from_dc, to_dc, template_id, template_present, reason," \
           " idempotency_key, bytes_total, priority" + (", kind" if kind else "")
    vals = [snapshot, from_dc, to_dc, "tpl-1", True, "test", key or f"{snapshot}-{to_dc}-{kind}",
            500]
    sql = (f"INSERT INTO transfers ({cols}) SELECT %s, %s, %s, %s, %s, %s, %s, %s, s.priority"
           + (", %s" if kind else "") + " FROM snapshots s WHERE s.id = %s RETURNING id")
    return db.execute(sql, vals + ([kind] if kind else []) + [snapshot]).fetchone()[0]


def test_a_snapshots_new_priority_reaches_its_open_transfers_and_the_claim_order(api, db):
    low = seed_snapshot(db, "u-prio-low", "t-paris")
    high = seed_snapshot(db, "u-prio-high", "t-paris")
    t_high = queue(db, high, "t-sydney", from_dc="t-paris")
    t_low = queue(db, low, "t-sydney", from_dc="t-paris")
    admin = api.token("admin")
    snap, headers = api.json("GET", f"/v1/snapshots/{low}", token=admin)
    assert snap["priority"] == 3
    api.json("PATCH", f"/v1/snapshots/{low}", {"priority": 1}, token=admin,
             headers={"If-Match": headers["ETag"]})
    assert db.execute("SELECT priority FROM transfers WHERE id = %s", (t_low,)).fetchone()[0] == 1
    # Queued later, and now more urgent: claimed first.
    first = db.execute("SELECT id FROM homing_transfer_claim('t-sydney', 'o', 30, %s)",
                       ("a" * 64,)).fetchone()[0]
    assert first == t_low
    # An ended transfer keeps the level it ran at.
    db.execute("SELECT homing_transfer_ended(%s, 'cancelled', 'test')", (t_low,))
    snap, headers = api.json("GET", f"/v1/snapshots/{low}", token=admin)
    api.json("PATCH", f"/v1/snapshots/{low}", {"priority": 5}, token=admin,
             headers={"If-Match": headers["ETag"]})
    assert db.execute("SELECT priority FROM transfers WHERE id = %s", (t_low,)).fetchone()[0] == 1
    # Out of range is refused and changes nothing.
    snap, headers = api.json("GET", f"/v1/snapshots/{high}", token=admin)
    api.json("PATCH", f"/v1/snapshots/{high}", {"priority": 0}, token=admin, expect=422,
             headers={"If-Match": headers["ETag"]})
    assert db.execute("SELECT priority FROM transfers WHERE id = %s", (t_high,)).fetchone()[0] == 3
