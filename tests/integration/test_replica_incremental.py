"""The incremental replica pass (scheduler/replicas.c): after its first full
pass it plans only the snapshots whose inputs changed, and still acts on
every change — a new version refreshed, a user who moved past the gap
between the nearest holder and the next given the nearer copy, a
datacenter out of service left (a catalog change: a full pass)."""
import time

import pytest

from conftest import Homing, seed_catalog, seed_snapshot, wait_for
from test_replica_placement import level, open_replicates, replicas, user_at


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    h = Homing(database, topics, "replica-incremental", "standalone",
               tmp_path_factory.mktemp("ri"),
               extra={"HOMING_CATALOG_REFRESH_S": "1", "HOMING_REPLICA_PASS_S": "1",
                      "HOMING_LOG_LEVEL": "debug"})
    h.migrate()
    seed_catalog(db)
    db.execute("UPDATE protection_policies SET replicas = 0, rpo_s = NULL WHERE level > 2")
    db.execute("UPDATE protection_policies SET rpo_s = 25 WHERE level = 2")
    h.start()
    wait_for(lambda: passes(h, "incremental"), what="an incremental pass")
    yield h
    h.stop()
    assert "replica pass failed" not in h.log_text()


def passes(h, kind):
    return h.log_text().count(f'"msg":"replica pass ({kind})')


def replica_at(db, snap, user, where, at_level=1):
    seed_snapshot(db, user, "t-paris", snapshot=snap)
    user_at(db, user, 48.9, 2.4)
    level(db, snap, at_level)
    wait_for(lambda: replicas(db, snap) == [where], what=f"a replica at {where}")


def test_a_new_version_is_refreshed_by_an_incremental_pass(homing, db):
    snap = "snap-ri-version"
    replica_at(db, snap, "u-ri-version", "t-frankfurt")
    rep = wait_for(lambda: db.execute("SELECT id FROM transfers WHERE snapshot_id = %s",
                                      (snap,)).fetchone(), what="a replicate")[0]
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (rep,)).fetchone()[0]
    full = passes(homing, "full")
    done = passes(homing, "incremental")
    wait_for(lambda: passes(homing, "incremental") >= done + 2, what="two passes")
    assert open_replicates(db, snap) == []  # the copy is current
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
               " size_bytes, virtual_size) VALUES (%s, 2, %s, 500, 4096)", (snap, "d" * 64))
    db.execute("UPDATE snapshots SET version = 2 WHERE id = %s", (snap,))
    rows = wait_for(lambda: open_replicates(db, snap), what="a refresh")
    assert rows == [("t-paris", "t-frankfurt", "replica-behind")]
    assert passes(homing, "full") == full  # no full pass did it


def test_a_replica_falling_behind_is_marked_at_its_rpo_with_nothing_else_changed(homing, db):
    snap = "snap-ri-rpo"
    replica_at(db, snap, "u-ri-rpo", "t-frankfurt", at_level=2)  # RPO 25 s
    rep = wait_for(lambda: db.execute("SELECT id FROM transfers WHERE snapshot_id = %s",
                                      (snap,)).fetchone(), what="a replicate")[0]
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (rep,)).fetchone()[0]
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
               " size_bytes, virtual_size) VALUES (%s, 2, %s, 500, 4096)", (snap, "e" * 64))
    db.execute("UPDATE snapshots SET version = 2 WHERE id = %s", (snap,))
    written = time.time()
    full = passes(homing, "full")
    # The refresh is queued and never runs (no agents): from about 11 s on
    # (the look back) no pass sees anything of this snapshot changed, and
    # the lag grows alone.
    wait_for(lambda: open_replicates(db, snap), what="a refresh")
    wait_for(lambda: db.execute("SELECT rpo_breached_at IS NOT NULL FROM replicas"
                                " WHERE snapshot_id = %s", (snap,)).fetchone()[0],
             timeout=60, what="the replica marked beyond its RPO")
    assert time.time() - written >= 25
    assert passes(homing, "full") == full


def test_a_user_who_moves_past_the_gap_gets_the_nearer_copy(homing, db):
    snap = "snap-ri-move"
    replica_at(db, snap, "u-ri-move", "t-frankfurt")
    # A copy left at Ashburn: Frankfurt stays, nearer the user in Paris.
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, 't-virginia', 1, false)", (snap,))
    done = passes(homing, "incremental")
    wait_for(lambda: passes(homing, "incremental") >= done + 2, what="two passes")
    full = passes(homing, "full")
    user_at(db, "u-ri-move", 48.91, 2.4)  # a kilometre: well inside the gap
    time.sleep(2.5)
    assert replicas(db, snap) == ["t-frankfurt"]
    user_at(db, "u-ri-move", 40.7, -74.0)  # New York: Ashburn's copy is nearer now
    wait_for(lambda: replicas(db, snap) == ["t-virginia"], what="the replica at Ashburn")
    assert passes(homing, "full") == full
    why = db.execute("SELECT payload->'data'->>'reason' FROM outbox WHERE key = %s AND"
                     " payload->>'type' = 'io.homing.replica.released'", (snap,)).fetchone()[0]
    assert why == "not_wanted"



def test_a_device_that_changes_hands_moves_its_old_user(homing, db):
    snap = "snap-ri-hands"
    user = "u-ri-hands"
    replica_at(db, snap, user, "t-frankfurt")
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, 't-virginia', 1, false)", (snap,))
    # An older fix of another of the user's devices, in New York: the user
    # is in Paris while the phone there is theirs.
    # Written an hour ago: no pass takes it for a new fix of the user.
    db.execute("INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
               " reported_at, received_at, updated_at) VALUES ('d-ri-hands-old', %s, 40.7,"
               " -74.0, 10, now() - interval '1 hour', now() - interval '1 hour',"
               " now() - interval '1 hour')", (user,))
    # Past the passes' look back (10 s), nothing of the user's is new.
    time.sleep(11)
    assert replicas(db, snap) == ["t-frankfurt"]
    full = passes(homing, "full")
    # The Paris phone reports for someone else now: its old user is back to
    # the New York fix, where Ashburn's copy is the nearer.
    db.execute("UPDATE device_locations SET user_id = 'u-ri-hands-new' WHERE device_id = %s",
               (f"d-{user}",))
    wait_for(lambda: replicas(db, snap) == ["t-virginia"], what="the replica at Ashburn")
    assert passes(homing, "full") == full
    # Seen, the note is forgotten by a later pass.
    wait_for(lambda: db.execute("SELECT count(*) FROM device_user_changes WHERE user_id = %s",
                                (user,)).fetchone()[0] == 0, what="the note forgotten")

def test_a_datacenter_out_of_service_is_left_by_a_full_pass(homing, db):
    snap = "snap-ri-drain"
    replica_at(db, snap, "u-ri-drain", "t-frankfurt")
    full = passes(homing, "full")
    db.execute("UPDATE datacenters SET status = 'draining' WHERE id = 't-frankfurt'")
    try:
        wait_for(lambda: replicas(db, snap) == ["t-virginia"], what="the replica at Ashburn")
        assert passes(homing, "full") > full
        why = db.execute("SELECT payload->'data'->>'reason' FROM outbox WHERE key = %s AND"
                         " payload->>'type' = 'io.homing.replica.released'",
                         (snap,)).fetchone()[0]
        assert why == "not_eligible"
    finally:
        db.execute("UPDATE datacenters SET status = 'active' WHERE id = 't-frankfurt'")
