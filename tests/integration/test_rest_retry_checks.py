"""An operator's retry is held to what the scheduler would check: the target
must have room for the transfer's bytes (409 target-full) and lie inside one
of the snapshot's allowed zones (409 target-outside-zones); a refused retry
changes nothing."""
import json
import time

import pytest

from conftest import Homing, seed_catalog, seed_snapshot

EUROPE = {"type": "Polygon",
          "coordinates": [[[-10, 35], [30, 35], [30, 60], [-10, 60], [-10, 35]]]}


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    h = Homing(database, topics, "test-retry-checks", "serve", tmp_path_factory.mktemp("retry"))
    h.migrate()
    seed_catalog(db)
    db.execute("INSERT INTO zones (id, name, geojson) VALUES ('eu', 'Europe', %s)",
               (json.dumps(EUROPE),))
    h.start()
    yield h
    h.stop()


def failed_transfer(db, snapshot, to_dc, from_dc):
    tid = db.execute(
        "INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,"
        " reason, idempotency_key, bytes_total) VALUES (%s, %s, %s, 'tpl-1', false,"
        " 'closer', %s, 1500) RETURNING id",
        (snapshot, from_dc, to_dc, f"{snapshot}/{to_dc}/{time.time()}")).fetchone()[0]
    db.execute("UPDATE transfers SET state = 'failed' WHERE id = %s", (tid,))
    return tid


def transfers_of(db, snapshot):
    return db.execute("SELECT count(*) FROM transfers WHERE snapshot_id = %s",
                      (snapshot,)).fetchone()[0]


def test_a_retry_to_a_full_target_is_refused(homing, db):
    operator = homing.token("operator")
    seed_snapshot(db, "u-full", "t-tokyo", size=500)
    tid = failed_transfer(db, "snap-u-full", "t-sydney", "t-tokyo")
    # 1500 bytes needed (the template is not there); leave 1000 free.
    db.execute("UPDATE datacenters SET capacity_bytes = 11000, used_bytes = 5000,"
               " reserved_bytes = 5000 WHERE id = 't-sydney'")
    status, _, raw = homing.request("POST", f"/v1/transfers/{tid}/retry", token=operator)
    assert status == 409, raw
    problem = json.loads(raw)
    assert problem["type"] == "urn:homing:problem:target-full"
    assert "1500" in problem["detail"] and "1000" in problem["detail"]
    assert transfers_of(db, "snap-u-full") == 1
    assert db.execute("SELECT reserved_bytes FROM datacenters WHERE id = 't-sydney'")\
        .fetchone()[0] == 5000
    # With room, the same retry goes through.
    db.execute("UPDATE datacenters SET capacity_bytes = 12000 WHERE id = 't-sydney'")
    homing.json("POST", f"/v1/transfers/{tid}/retry", expect=201, token=operator)


def test_a_retry_outside_the_snapshots_zones_is_refused(homing, db):
    operator = homing.token("operator")
    seed_snapshot(db, "u-eu", "t-frankfurt")
    db.execute("UPDATE snapshots SET allowed_zones = '{eu}' WHERE id = 'snap-u-eu'")
    tokyo = failed_transfer(db, "snap-u-eu", "t-tokyo", "t-frankfurt")
    status, _, raw = homing.request("POST", f"/v1/transfers/{tokyo}/retry", token=operator)
    assert status == 409, raw
    problem = json.loads(raw)
    assert problem["type"] == "urn:homing:problem:target-outside-zones"
    assert "eu" in problem["detail"]
    assert transfers_of(db, "snap-u-eu") == 1
    # Paris is in Europe: allowed.
    paris = failed_transfer(db, "snap-u-eu", "t-paris", "t-frankfurt")
    homing.json("POST", f"/v1/transfers/{paris}/retry", expect=201, token=operator)
