"""A transfer's life seen from PostgreSQL: queued with a reservation; on
success the template replica, the placement swap (never two active copies)
and the bytes; the scheduler then decides from the new place; a closer
target supersedes a transfer in flight, and a user who comes back before
it ends withdraws it."""
import time

import psycopg
import pytest

from conftest import homing_with_catalog, report, seed_snapshot, wait_for


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "lifecycle", "standalone",
                                   tmp_path_factory.mktemp("life"),
                                   extra={"HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "1",
                                          "HOMING_COOLDOWN_S": "0",
                                          "HOMING_CATALOG_REFRESH_S": "1"})


def transfers(db, snapshot):
    return db.execute("SELECT id, from_dc, to_dc, state, template_present, bytes_total"
                      " FROM transfers WHERE snapshot_id = %s ORDER BY id", (snapshot,)).fetchall()


def dc_bytes(db, dc):
    return db.execute("SELECT used_bytes, reserved_bytes FROM datacenters WHERE id = %s",
                      (dc,)).fetchone()


def test_a_transfer_lives_queued_then_succeeds_then_the_scheduler_follows(homing, db):
    snap = seed_snapshot(db, "u-life", "t-tokyo")
    assert homing.post("/v1/locations", report(user="u-life", device="d-1", lat=50.1,
                                               lon=8.7, ts=None))[0] == 202
    rows = wait_for(lambda: transfers(db, snap), what="a transfer")
    tid, src, dst, state, present, total = rows[0]
    assert (src, dst, state, present, total) == ("t-tokyo", "t-frankfurt", "queued", False, 1500)
    assert dc_bytes(db, "t-frankfurt") == (0, 1500)

    # The agent reports success: the template is there, then the copy moves.
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (tid,)).fetchone()[0] is True
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (tid,)).fetchone()[0] is False
    placements = db.execute("SELECT datacenter_id, active, deactivated_at IS NOT NULL"
                            " FROM placements WHERE snapshot_id = %s ORDER BY id",
                            (snap,)).fetchall()
    assert placements == [("t-tokyo", False, True), ("t-frankfurt", True, False)]
    assert db.execute("SELECT count(*) FROM template_replicas WHERE template_id = 'tpl-1'"
                      " AND datacenter_id = 't-frankfurt'").fetchone()[0] == 1
    assert dc_bytes(db, "t-frankfurt") == (1500, 0)

    # The database refuses a second active copy.
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                   " VALUES (%s, 't-paris', 1, true)", (snap,))

    # The scheduler learns where the snapshot is now: from Frankfurt to Tokyo.
    def moved_back():
        homing.post("/v1/locations", report(user="u-life", device="d-2", lat=35.7, lon=139.7))
        return [r for r in transfers(db, snap) if r[3] == "queued"]
    row = wait_for(moved_back, interval=1.5, what="a transfer from the new place")[0]
    assert (row[1], row[2], row[4]) == ("t-frankfurt", "t-tokyo", True)


def test_a_closer_target_supersedes_the_transfer_in_flight(homing, db):
    snap = seed_snapshot(db, "u-restless", "t-virginia")
    assert homing.post("/v1/locations", report(user="u-restless", device="d-3", lat=35.7,
                                               lon=139.7))[0] == 202
    first = wait_for(lambda: transfers(db, snap), what="a transfer")[0]
    assert first[2] == "t-tokyo"
    assert dc_bytes(db, "t-tokyo")[1] >= 500

    reserved_before = dc_bytes(db, "t-tokyo")[1]
    assert homing.post("/v1/locations", report(user="u-restless", device="d-4", lat=-33.9,
                                               lon=151.2))[0] == 202
    rows = wait_for(lambda: len(transfers(db, snap)) == 2 and transfers(db, snap),
                    what="the superseding transfer")
    assert [(r[2], r[3]) for r in rows] == [("t-tokyo", "cancelled"), ("t-sydney", "queued")]
    assert dc_bytes(db, "t-tokyo")[1] == reserved_before - first[5]
    reasons = db.execute("SELECT reason, outcome FROM decisions WHERE snapshot_id = %s"
                         " ORDER BY id", (snap,)).fetchall()
    assert reasons == [("closer", "move"), ("closer", "move")]


def test_a_user_back_before_the_move_ends_withdraws_it(homing, db):
    snap = seed_snapshot(db, "u-homesick", "t-virginia")
    assert homing.post("/v1/locations", report(user="u-homesick", device="d-hs-1", lat=35.7,
                                               lon=139.7))[0] == 202
    first = wait_for(lambda: transfers(db, snap), what="a transfer")[0]
    assert (first[2], first[3]) == ("t-tokyo", "queued")
    reserved = dc_bytes(db, "t-tokyo")[1]
    # Home again (near Virginia) while the copy to Tokyo is still queued.
    assert homing.post("/v1/locations", report(user="u-homesick", device="d-hs-2", lat=38.9,
                                               lon=-77.0))[0] == 202
    wait_for(lambda: transfers(db, snap)[0][3] == "cancelled", what="the withdrawal")
    assert len(transfers(db, snap)) == 1  # nothing queued back: the copy never left
    assert dc_bytes(db, "t-tokyo")[1] == reserved - first[5]
    error = db.execute("SELECT error FROM transfers WHERE id = %s", (first[0],)).fetchone()[0]
    assert error.startswith("returned:"), error
    reasons = db.execute("SELECT outcome, reason FROM decisions WHERE snapshot_id = %s"
                         " ORDER BY id", (snap,)).fetchall()
    assert reasons == [("move", "closer"), ("stay", "returned")]
    active = db.execute("SELECT datacenter_id FROM placements WHERE snapshot_id = %s AND active",
                        (snap,)).fetchall()
    assert active == [("t-virginia",)]


def queue_transfer(db, snap, src, dst, total=500):
    return db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                      " template_present, reason, idempotency_key, bytes_total)"
                      " VALUES (%s, %s, %s, 'tpl-1', true, 'test', %s, %s) RETURNING id",
                      (snap, src, dst, f"test-{snap}-{src}-{dst}", total)).fetchone()[0]


def test_every_writer_keeps_the_state_machine(homing, db):
    snap = seed_snapshot(db, "u-machine", "t-sydney")
    with pytest.raises(psycopg.errors.CheckViolation, match="starts queued"):
        db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                   " template_present, reason, idempotency_key, state)"
                   " VALUES (%s, 't-sydney', 't-paris', 'tpl-1', true, 'test', 'x', 'running')",
                   (snap,))
    tid = queue_transfer(db, snap, "t-sydney", "t-paris")
    db.execute("UPDATE transfers SET state = 'running' WHERE id = %s", (tid,))
    db.execute("UPDATE transfers SET state = 'queued' WHERE id = %s", (tid,))  # requeued
    assert db.execute("SELECT homing_transfer_ended(%s, 'cancelled', 'test')",
                      (tid,)).fetchone()[0] is True
    # Ended is ended: no writer brings it back, nor calls it a success.
    for state in ("queued", "running", "succeeded", "failed"):
        with pytest.raises(psycopg.errors.CheckViolation, match="cancelled cannot become"):
            db.execute("UPDATE transfers SET state = %s WHERE id = %s", (state, tid))
    assert db.execute("SELECT state FROM transfers WHERE id = %s", (tid,)).fetchone()[0] == \
        "cancelled"
    # Other columns of an ended transfer may still be written (bytes, errors).
    db.execute("UPDATE transfers SET error = 'noted' WHERE id = %s", (tid,))


def test_success_takes_the_bytes_off_where_the_copy_really_was(homing, db):
    """The scheduler queued Sydney → Paris; meanwhile the snapshot became
    active at Ashburn. The old copy's bytes leave Ashburn, not Sydney."""
    snap = seed_snapshot(db, "u-stale", "t-sydney", size=700)
    db.execute("UPDATE datacenters SET used_bytes = 10000 WHERE id IN ('t-sydney', 't-virginia')")
    tid = queue_transfer(db, snap, "t-sydney", "t-paris", total=700)
    db.execute("UPDATE placements SET active = false WHERE snapshot_id = %s", (snap,))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, 't-virginia', 1, true)", (snap,))
    paris_before = dc_bytes(db, "t-paris")[0]
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (tid,)).fetchone()[0] is True
    assert dc_bytes(db, "t-sydney")[0] == 10000
    assert dc_bytes(db, "t-virginia")[0] == 10000 - 700
    assert dc_bytes(db, "t-paris")[0] == paris_before + 700
    assert db.execute("SELECT datacenter_id FROM placements WHERE snapshot_id = %s AND active",
                      (snap,)).fetchone()[0] == "t-paris"


def test_success_refuses_a_copy_that_is_not_the_registered_version(homing, db):
    snap = seed_snapshot(db, "u-digest", "t-sydney")
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, size_bytes, virtual_size,"
               " content_sha256) VALUES (%s, 1, 500, 65536, %s)", (snap, "a" * 64))
    tid = queue_transfer(db, snap, "t-sydney", "t-tokyo")
    with pytest.raises(psycopg.errors.DataException, match="is not version 1"):
        db.execute("SELECT homing_transfer_succeeded(%s, %s)", (tid, "b" * 64))
    assert db.execute("SELECT state FROM transfers WHERE id = %s", (tid,)).fetchone()[0] == "queued"
    assert db.execute("SELECT datacenter_id FROM placements WHERE snapshot_id = %s AND active",
                      (snap,)).fetchone()[0] == "t-sydney"
    assert db.execute("SELECT homing_transfer_succeeded(%s, %s)", (tid, "a" * 64)).fetchone()[0]


EUROPE = {"type": "Polygon",
          "coordinates": [[[-10, 35], [30, 35], [30, 60], [-10, 60], [-10, 35]]]}


def test_a_transfer_the_narrowed_zones_forbid_is_cancelled_and_the_next_report_stays(homing, db):
    homing.json("PUT", "/v1/zones/europe", {"name": "Europe", "geojson": EUROPE}, expect=201,
                token=homing.token("admin"))
    snap = seed_snapshot(db, "u-resident", "t-paris")
    assert homing.post("/v1/locations", report(user="u-resident", device="d-res-1", lat=35.7,
                                               lon=139.7))[0] == 202
    tid, _, dst, state, _, total = wait_for(lambda: transfers(db, snap), what="a transfer")[0]
    assert (dst, state) == ("t-tokyo", "queued")
    reserved = dc_bytes(db, "t-tokyo")[1]

    # Any writer narrows the zones (here psql, not the API): the running
    # scheduler learns it, and the move it had queued may no longer happen.
    db.execute("UPDATE snapshots SET allowed_zones = '{europe}' WHERE id = %s", (snap,))
    row = wait_for(lambda: db.execute("SELECT state, error FROM transfers WHERE id = %s AND"
                                      " state = 'cancelled'", (tid,)).fetchone(),
                   timeout=15, what="the transfer outside the zones to be cancelled")
    assert "outside the snapshot's zones" in row[1]
    assert dc_bytes(db, "t-tokyo")[1] == reserved - total
    event = db.execute("SELECT payload FROM outbox WHERE payload->>'id' = %s",
                       (f"transfer-{tid}-cancelled",)).fetchone()[0]
    assert event["source"] == "/homing/scheduler"
    assert event["data"]["reason"] == "outside_zones" and event["data"]["to_dc"] == "t-tokyo"

    # Still in Tokyo: the scheduler decides with the new zones and stays.
    def stayed():
        homing.post("/v1/locations", report(user="u-resident", device="d-res-2", lat=35.7,
                                            lon=139.7))
        return db.execute("SELECT reason FROM decisions WHERE snapshot_id = %s"
                          " AND outcome = 'stay' ORDER BY id DESC LIMIT 1", (snap,)).fetchone()
    assert wait_for(stayed, interval=1.5, what="a stay")[0] == "zone"
    assert [t[3] for t in transfers(db, snap)] == ["cancelled"]


def test_an_operator_retry_is_known_to_the_scheduler_before_its_next_report(homing, db):
    # A snapshot placed an hour ago: nothing about it is news to the scheduler.
    snap = "snap-u-retried"
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, created_at,"
               " updated_at) VALUES (%s, 'u-retried', 'tpl-1', 500, now() - interval '1 hour',"
               " now() - interval '1 hour')", (snap,))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active, created_at)"
               " VALUES (%s, 't-paris', 1, true, now() - interval '1 hour')", (snap,))
    tid = queue_transfer(db, snap, "t-paris", "t-tokyo")
    db.execute("SELECT homing_transfer_ended(%s, 'failed', 'the source went away')", (tid,))
    db.execute("UPDATE transfers SET updated_at = now() - interval '1 hour' WHERE id = %s", (tid,))
    # The scheduler has the user in memory: a report from home.
    assert homing.post("/v1/locations", report(user="u-retried", device="d-ret-0", lat=48.86,
                                               lon=2.35))[0] == 202
    wait_for(lambda: db.execute("SELECT 1 FROM device_locations WHERE device_id = 'd-ret-0'"
                                ).fetchone(), what="the first report")
    retry, _ = homing.json("POST", f"/v1/transfers/{tid}/retry", expect=201,
                           token=homing.token("operator"))
    time.sleep(2.5)  # a catalog reload (1 s here) looks at what changed
    # The user reports from Tokyo, where the retry goes: nothing new to queue,
    # and no batch had to roll back over the retry it did not know of.
    assert homing.post("/v1/locations", report(user="u-retried", device="d-ret-1", lat=35.7,
                                               lon=139.7))[0] == 202
    decided = wait_for(lambda: db.execute("SELECT outcome, reason FROM decisions"
                                          " WHERE snapshot_id = %s AND device_id = 'd-ret-1'",
                                          (snap,)).fetchall(),
                       what="the decision")
    assert decided == [("stay", "transfer_pending")]
    assert [(t[0], t[3]) for t in transfers(db, snap)] == [(tid, "failed"), (retry["id"], "queued")]
    assert "rolled back" not in homing.log_text()
