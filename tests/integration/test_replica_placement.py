"""Where the scheduler's replica pass puts warm replicas, and when it queues
their refreshes (scheduler/replicas.c), judged from PostgreSQL: the nearest
eligible site to the user other than the active one, outside its failure
domain, inside the zones; none for a level that wants none; released when
the policy changes; re-chosen when the active site changes, the old active
site first. A move onto a warm replica is weighed at what its copy lacks."""
import time

import pytest

from conftest import (Homing, now_rfc3339, report, seed_catalog, seed_snapshot, user_at,
                      wait_for)
from test_audit_events import check_event


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    h = Homing(database, topics, "replica-placement", "standalone",
               tmp_path_factory.mktemp("rp"),
               extra={"HOMING_CATALOG_REFRESH_S": "1", "HOMING_REPLICA_PASS_S": "1"})
    h.migrate()
    seed_catalog(db)
    # Nobody but these tests' snapshots asks for replicas.
    db.execute("UPDATE protection_policies SET replicas = 0, rpo_s = NULL WHERE level > 2")
    h.start()
    yield h
    h.stop()
    assert "replica pass failed" not in h.log_text()


def replicas(db, snapshot):
    return sorted(r[0] for r in db.execute("SELECT datacenter_id FROM replicas"
                                           " WHERE snapshot_id = %s", (snapshot,)))


def open_replicates(db, snapshot):
    return db.execute("SELECT from_dc, to_dc, reason FROM transfers WHERE snapshot_id = %s"
                      " AND kind = 'replicate' AND state IN ('queued', 'running') ORDER BY id",
                      (snapshot,)).fetchall()


def level(db, snapshot, n):
    db.execute("UPDATE snapshots SET priority = %s WHERE id = %s", (n, snapshot))


def test_a_level_1_snapshot_gets_its_replica_nearest_the_user_and_a_replicate(homing, db):
    snap = seed_snapshot(db, "u-rp-1", "t-paris")
    user_at(db, "u-rp-1", 48.9, 2.4)  # in Paris: the next nearest is Frankfurt
    level(db, snap, 1)
    wait_for(lambda: replicas(db, snap) == ["t-frankfurt"], what="a replica at Frankfurt")
    rows = wait_for(lambda: open_replicates(db, snap), what="a replicate transfer")
    assert rows == [("t-paris", "t-frankfurt", "replica-missing")]
    transfer = homing.json("GET", f"/v1/transfers?snapshot_id={snap}")[0]["items"][0]
    assert (transfer["kind"], transfer["priority"], transfer["bytes_total"]) == \
        ("replicate", 1, 500 + 1000)  # Frankfurt lacks the template
    # The active placement stays where it is; the event says where the replica went.
    assert db.execute("SELECT datacenter_id FROM placements WHERE snapshot_id = %s AND active",
                      (snap,)).fetchone()[0] == "t-paris"
    event = db.execute("SELECT payload FROM outbox WHERE key = %s AND payload->>'type'"
                       " = 'io.homing.replica.designated'", (snap,)).fetchone()[0]
    check_event(event)
    assert event["data"]["datacenter_id"] == "t-frankfurt"
    # A level that wants none gets none.
    other = seed_snapshot(db, "u-rp-5", "t-paris")
    level(db, other, 5)
    user_at(db, "u-rp-5", 48.9, 2.4)
    time.sleep(2.5)  # two passes
    assert replicas(db, other) == [] and open_replicates(db, other) == []


def test_the_failure_domain_and_the_zones_send_the_replica_further(homing, db):
    db.execute("UPDATE datacenters SET failure_domain = 'eu-west' WHERE id IN"
               " ('t-paris', 't-frankfurt')")
    try:
        snap = seed_snapshot(db, "u-rp-fd", "t-paris")
        user_at(db, "u-rp-fd", 48.9, 2.4)
        level(db, snap, 2)
        # Frankfurt shares Paris's domain: the next nearest, Ashburn.
        wait_for(lambda: replicas(db, snap) == ["t-virginia"], what="a replica at Ashburn")
    finally:
        db.execute("UPDATE datacenters SET failure_domain = NULL")


def test_a_policy_that_wants_none_releases_the_replica_and_cancels_its_transfer(homing, db):
    snap = seed_snapshot(db, "u-rp-off", "t-tokyo")
    user_at(db, "u-rp-off", 35.7, 139.7)
    level(db, snap, 1)
    wait_for(lambda: open_replicates(db, snap), what="a replicate transfer")
    (to_dc,) = replicas(db, snap)
    reserved = db.execute("SELECT reserved_bytes FROM datacenters WHERE id = %s",
                          (to_dc,)).fetchone()[0]
    level(db, snap, 4)
    wait_for(lambda: replicas(db, snap) == [], what="the replica released")
    assert open_replicates(db, snap) == []
    assert db.execute("SELECT state, error FROM transfers WHERE snapshot_id = %s",
                      (snap,)).fetchone() == ("cancelled", f"the replica at {to_dc} was released")
    assert db.execute("SELECT reserved_bytes FROM datacenters WHERE id = %s",
                      (to_dc,)).fetchone()[0] < reserved
    event = db.execute("SELECT payload FROM outbox WHERE key = %s AND payload->>'type'"
                       " = 'io.homing.replica.released'", (snap,)).fetchone()[0]
    check_event(event)
    assert event["data"]["reason"] == "not_wanted"


def move(db, snap, src, dst, key):
    tid = db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                     " template_present, reason, idempotency_key, bytes_total)"
                     " VALUES (%s, %s, %s, 'tpl-1', true, 'test', %s, 500) RETURNING id",
                     (snap, src, dst, key)).fetchone()[0]
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (tid,)).fetchone()[0]


def test_when_the_active_site_changes_the_old_ones_copy_becomes_the_replica(homing, db):
    snap = seed_snapshot(db, "u-rp-move", "t-paris")
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
               " size_bytes, virtual_size) VALUES (%s, 1, %s, 500, 4096)", (snap, "a" * 64))
    user_at(db, "u-rp-move", 48.9, 2.4)
    level(db, snap, 1)
    wait_for(lambda: open_replicates(db, snap), what="a replicate transfer")
    rep = db.execute("SELECT id FROM transfers WHERE snapshot_id = %s", (snap,)).fetchone()[0]
    db.execute("SELECT homing_transfer_succeeded(%s)", (rep,))
    assert replicas(db, snap) == ["t-frankfurt"]
    # The user settles at Frankfurt and the snapshot follows, onto its replica.
    user_at(db, "u-rp-move", 50.1, 8.7)
    move(db, snap, "t-paris", "t-frankfurt", "rp-move-1")
    assert replicas(db, snap) == []  # the active site is no replica of itself
    # Paris, which the snapshot just left, holds a current copy: the new replica,
    # designated with that copy, and nothing to send.
    wait_for(lambda: replicas(db, snap) == ["t-paris"], what="Paris as the replica")
    event = db.execute("SELECT payload FROM outbox WHERE key = %s AND payload->>'type'"
                       " = 'io.homing.replica.designated' ORDER BY id DESC LIMIT 1",
                       (snap,)).fetchone()[0]
    assert event["data"]["has_copy"] is True and event["data"]["active_dc"] == "t-frankfurt"
    time.sleep(2.5)  # two passes
    assert open_replicates(db, snap) == []


def test_a_copy_left_behind_is_preferred_to_a_nearer_empty_site(homing, db):
    # A level-3 snapshot (no replicas here) moved from Paris to Tokyo with its user.
    snap = seed_snapshot(db, "u-rp-left", "t-paris")
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
               " size_bytes, virtual_size) VALUES (%s, 1, %s, 500, 4096)", (snap, "b" * 64))
    user_at(db, "u-rp-left", 35.7, 139.7)
    move(db, snap, "t-paris", "t-tokyo", "rp-left-1")
    # Raised to level 1: Sydney is nearer the user, but Paris has the copy already.
    level(db, snap, 1)
    wait_for(lambda: replicas(db, snap) == ["t-paris"], what="Paris as the replica")
    assert open_replicates(db, snap) == []
    # A newer version written at Tokyo: the replica is behind, a refresh goes.
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
               " size_bytes, virtual_size) VALUES (%s, 2, %s, 500, 4096)", (snap, "c" * 64))
    db.execute("UPDATE snapshots SET version = 2 WHERE id = %s", (snap,))
    rows = wait_for(lambda: open_replicates(db, snap), what="a refresh")
    assert rows == [("t-tokyo", "t-paris", "replica-behind")]


GIB = 1 << 30


def test_a_move_onto_the_warm_replica_is_weighed_at_what_its_copy_lacks(homing, db):
    """A 200 GiB snapshot in Paris whose replica at Frankfurt holds version 1
    of 3: version 2 changed 10 GiB (as recorded), version 3 did not say, so
    counts 2 % of its 200 GiB. At the default 5 km a GiB the whole snapshot
    would need 1,000 km saved; Paris to Frankfurt saves about 480, enough
    for the 14 GiB the copy lacks."""
    snap = seed_snapshot(db, "u-rp-9", "t-paris", size=200 * GIB)
    user_at(db, "u-rp-9", 48.9, 2.4)
    level(db, snap, 1)
    wait_for(lambda: replicas(db, snap) == ["t-frankfurt"], what="a replica at Frankfurt")
    (rep,) = wait_for(lambda: db.execute(
        "SELECT id FROM transfers WHERE snapshot_id = %s AND kind = 'replicate'"
        " AND state = 'queued'", (snap,)).fetchall(), what="its replicate")
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (rep[0],)).fetchone()[0]
    for version, changed in ((1, None), (2, 10 * GIB), (3, None)):
        db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
                   " size_bytes, virtual_size, changed_bytes) VALUES (%s, %s, %s, %s, %s, %s)",
                   (snap, version, f"{version:064x}", 200 * GIB, 200 * GIB, changed))
    db.execute("UPDATE snapshots SET version = 3 WHERE id = %s", (snap,))
    time.sleep(2.5)  # the catalog knows Frankfurt holds the template now
    # The user flies to Frankfurt and stays half an hour.
    body = [report("u-rp-9", "p-u-rp-9", 50.11, 8.68, ts=now_rfc3339(ago))
            for ago in (-40 * 60, -20 * 60, -60)]
    status, _, raw = homing.post("/v1/locations", body)
    assert status == 202, raw
    to_dc, details = wait_for(lambda: db.execute(
        "SELECT to_dc, details FROM decisions WHERE snapshot_id = %s AND outcome = 'move'",
        (snap,)).fetchone(), what="the move onto the replica")
    assert to_dc == "t-frankfurt"
    assert (details["copy_present"], details["bytes_to_send"], details["bytes"]) == \
        (True, 10 * GIB + 200 * GIB // 50, 200 * GIB)
