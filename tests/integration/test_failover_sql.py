"""A site set down outside the API (an UPDATE by psql) fails over all the
same: the scheduler notices it at its catalog reload and runs the failover
the API's status change runs, exactly once although two schedulers look;
set back by psql, its failover ends. A site the API set down is not failed
over a second time by the schedulers."""
import time

import pytest

from conftest import Homing, seed_catalog, seed_snapshot, wait_for
from test_audit_events import check_event


@pytest.fixture(scope="module")
def schedulers(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failover-sql")
    seeded = False
    procs = []
    for n in range(2):
        h = Homing(database, topics, "failover-sql", "standalone", tmp,
                   extra={"HOMING_CATALOG_REFRESH_S": "1"})
        if not seeded:
            h.migrate()
            seed_catalog(db)
            for snap, dc, level, replica in (("fs-1", "t-paris", 1, "t-frankfurt"),
                                             ("fs-2", "t-paris", 3, None),
                                             ("fs-3", "t-tokyo", 1, "t-sydney")):
                seed_snapshot(db, f"u-{snap}", dc, snapshot=snap)
                db.execute("UPDATE snapshots SET priority = %s WHERE id = %s", (level, snap))
                if replica:
                    copy = db.execute("INSERT INTO placements (snapshot_id, datacenter_id,"
                                      " version, active) VALUES (%s, %s, 1, false)"
                                      " RETURNING id", (snap, replica)).fetchone()[0]
                    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
                               " VALUES (%s, %s, %s)", (snap, replica, copy))
            seeded = True
        h.start()
        procs.append(h)
    yield procs
    for h in procs:
        h.stop()


def failovers(db, dc):
    return db.execute("SELECT id, ended_at IS NOT NULL FROM failovers WHERE datacenter_id = %s"
                      " ORDER BY id", (dc,)).fetchall()


def events(db, kind, key):
    return [r[0] for r in db.execute("SELECT payload FROM outbox WHERE key = %s AND"
                                     " payload->>'type' = %s ORDER BY id", (key, kind))]


def test_a_site_set_down_by_psql_fails_over_once_and_ends_when_set_back(schedulers, db):
    db.execute("UPDATE datacenters SET status = 'down' WHERE id = 't-paris'")
    wait_for(lambda: failovers(db, "t-paris"), timeout=30, what="the failover of Paris")
    time.sleep(3)  # both schedulers reloaded their catalog a few times since
    ((fid, ended),) = failovers(db, "t-paris")
    assert not ended
    items = db.execute("SELECT snapshot_id, outcome, to_dc, epoch FROM failover_items"
                       " WHERE failover_id = %s ORDER BY snapshot_id", (fid,)).fetchall()
    assert items == [("fs-1", "failed_over", "t-frankfurt", 2), ("fs-2", "unrecoverable", None,
                                                                   None)]
    assert db.execute("SELECT datacenter_id FROM placements WHERE snapshot_id = 'fs-1'"
                      " AND active").fetchall() == [("t-frankfurt",)]
    # Said by the scheduler, once: the failover, and each snapshot's outcome.
    (started,) = events(db, "io.homing.failover.started", "t-paris")
    check_event(started)
    assert started["source"] == "/homing/scheduler"
    assert started["data"] == {"failover_id": fid, "datacenter_id": "t-paris",
                               "actor": {"kind": "scheduler"}, "failed_over": 1,
                               "unrecoverable": 1}
    (moved,) = events(db, "io.homing.snapshot.failed_over", "fs-1")
    (lost,) = events(db, "io.homing.snapshot.unrecoverable", "fs-2")
    for e in (moved, lost):
        check_event(e)
        assert e["source"] == "/homing/scheduler" and e["data"]["failover_id"] == fid
    logs = [h.log_text() for h in schedulers]
    assert sum("t-paris was set down outside the API" in t for t in logs) == 1, logs
    # The API reads it as any failover.
    doc, _ = schedulers[0].json("GET", "/v1/snapshots/fs-2/restore")
    assert doc["state"] == "unrecoverable"

    # Set back by psql: the failover ends, the unrecoverable one is recovered.
    db.execute("UPDATE datacenters SET status = 'active' WHERE id = 't-paris'")
    wait_for(lambda: failovers(db, "t-paris") == [(fid, True)], timeout=30,
             what="the failover's end")
    time.sleep(2)
    assert failovers(db, "t-paris") == [(fid, True)]
    assert db.execute("SELECT recovered_at IS NOT NULL FROM failover_items WHERE snapshot_id"
                      " = 'fs-2'").fetchone()[0] is True
    (ended,) = events(db, "io.homing.failover.ended", "t-paris")
    check_event(ended)
    assert ended["data"]["recovered"] == 1 and ended["data"]["failover_id"] == fid
    doc, _ = schedulers[1].json("GET", "/v1/snapshots/fs-2/restore")
    assert (doc["state"], doc["datacenter_id"]) == ("active", "t-paris")


def test_a_site_the_api_set_down_is_not_failed_over_again(schedulers, db):
    operator = schedulers[0].token("operator")
    schedulers[0].json("PUT", "/v1/datacenters/t-tokyo/status", {"status": "down"},
                       token=operator)
    ((fid, _),) = failovers(db, "t-tokyo")
    time.sleep(3)
    assert failovers(db, "t-tokyo") == [(fid, False)]
    assert len(events(db, "io.homing.snapshot.failed_over", "fs-3")) == 1
    assert events(db, "io.homing.failover.started", "t-tokyo") == []
    schedulers[1].json("PUT", "/v1/datacenters/t-tokyo/status", {"status": "active"},
                       token=operator)
    time.sleep(2)
    assert failovers(db, "t-tokyo") == [(fid, True)]
    assert events(db, "io.homing.failover.ended", "t-tokyo") == []
