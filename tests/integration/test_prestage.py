"""The live scheduler pre-stages (scheduler/prestage.c): an announced trip
gets a warm copy at the eligible site nearest its destination before the
arrival, by a replicate transfer; the replica pass neither counts nor
releases it; it is released when the trip is over or withdrawn; a trip that
no site inside the snapshot's zones would serve stages nothing; the move on
arrival onto the copy costs only what the copy lacks. Judged from PostgreSQL
and the API."""
import json
import time

import pytest

from conftest import (Homing, now_rfc3339, report, seed_catalog, seed_snapshot, user_at,
                      wait_for)
from test_audit_events import check_event

EUROPE = {"type": "Polygon",
          "coordinates": [[[-10, 35], [30, 35], [30, 60], [-10, 60], [-10, 35]]]}
TOKYO = (35.68, 139.69)


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    h = Homing(database, topics, "prestage", "standalone", tmp_path_factory.mktemp("ps"),
               extra={"HOMING_CATALOG_REFRESH_S": "1", "HOMING_REPLICA_PASS_S": "1",
                      "HOMING_PRESTAGE_PASS_S": "1",
                      # a GiB must save 100 km: Paris to Tokyo (9,700 km) does not
                      # pay for a whole 100 GiB snapshot
                      "HOMING_KM_PER_GIB": "100"})
    h.migrate()
    seed_catalog(db)
    db.execute("INSERT INTO zones (id, name, geojson) VALUES ('eu', 'Europe', %s)",
               (json.dumps(EUROPE),))
    # Only level 1 asks for a protection replica here.
    db.execute("UPDATE protection_policies SET replicas = 0, rpo_s = NULL WHERE level > 1")
    h.start()
    yield h
    h.stop()
    assert "pre-staging pass failed" not in h.log_text()
    assert "replica pass failed" not in h.log_text()


def announce(homing, user, lat, lon, arrive_s, back_s=None):
    body = {"lat": lat, "lon": lon, "arrive_at": now_rfc3339(arrive_s)}
    if back_s is not None:
        body["return_at"] = now_rfc3339(back_s)
    got, _ = homing.json("POST", "/v1/trips", body, expect=201,
                         token=homing.device_token(f"d-{user}", user))
    return got["id"]


def designated(db, snapshot):
    return db.execute("SELECT datacenter_id, reason, trip_id FROM replicas"
                      " WHERE snapshot_id = %s ORDER BY datacenter_id", (snapshot,)).fetchall()


def replicates(db, snapshot, states=("queued", "running")):
    return db.execute("SELECT id, from_dc, to_dc, reason FROM transfers WHERE snapshot_id = %s"
                      " AND kind = 'replicate' AND state = ANY(%s) ORDER BY id",
                      (snapshot, list(states))).fetchall()


def event(db, snapshot, kind):
    row = db.execute("SELECT payload FROM outbox WHERE key = %s AND payload->>'type' = %s"
                     " ORDER BY id DESC LIMIT 1", (snapshot, kind)).fetchone()
    return row and row[0]


def test_an_announced_trip_stages_a_copy_at_the_site_nearest_the_destination(homing, db):
    snap = seed_snapshot(db, "u-ps-1", "t-paris")
    db.execute("UPDATE snapshots SET priority = 1 WHERE id = %s", (snap,))
    user_at(db, "u-ps-1", 48.9, 2.4)
    wait_for(lambda: designated(db, snap) == [("t-frankfurt", "protection", None)],
             what="the protection replica at Frankfurt")
    # Lands in Tokyo in 30 minutes, back in two days: due now (a transfer's
    # time and the hour's lead before the arrival).
    trip = announce(homing, "u-ps-1", *TOKYO, 1800, 2 * 86400)
    wait_for(lambda: ("t-tokyo", "prestage", trip) in designated(db, snap),
             what="a copy pre-staged at Tokyo")
    rows = wait_for(lambda: [r for r in replicates(db, snap) if r[2] == "t-tokyo"],
                    what="a replicate to Tokyo")
    assert [r[1:] for r in rows] == [("t-paris", "t-tokyo", "prestage")]
    staged = event(db, snap, "io.homing.prestage.staged")
    check_event(staged)
    assert (staged["data"]["datacenter_id"], staged["data"]["trip_id"],
            staged["data"]["active_dc"], staged["data"]["has_copy"]) == \
        ("t-tokyo", trip, "t-paris", False)
    # The copy arrives; the replica pass, passing by, counts it neither towards
    # level 1's one replica nor as surplus: both stay.
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (rows[0][0],)).fetchone()[0]
    time.sleep(3)  # passes of both
    assert designated(db, snap) == [("t-frankfurt", "protection", None),
                                    ("t-tokyo", "prestage", trip)]
    assert event(db, snap, "io.homing.replica.released") is None
    assert [r for r in replicates(db, snap) if r[2] == "t-tokyo"] == []  # current: no refresh
    # The API says what it is; it has no RPO.
    got, _ = homing.json("GET", f"/v1/snapshots/{snap}", token=homing.token("viewer"))
    tokyo = [r for r in got["replicas"] if r["datacenter_id"] == "t-tokyo"][0]
    assert (tokyo["reason"], tokyo["trip_id"], tokyo["rpo_s"], tokyo["rpo_breached"],
            tokyo["version"]) == ("prestage", trip, None, False, 1)
    assert tokyo["ends_at"] is not None
    # The trip is over (its return passed): released, the copy a cached one.
    db.execute("UPDATE trips SET arrive_at = now() - interval '2 hours',"
               " return_at = now() - interval '1 second' WHERE id = %s", (trip,))
    wait_for(lambda: designated(db, snap) == [("t-frankfurt", "protection", None)],
             what="the pre-staged copy released")
    released = event(db, snap, "io.homing.prestage.released")
    check_event(released)
    assert (released["data"]["datacenter_id"], released["data"]["trip_id"],
            released["data"]["reason"]) == ("t-tokyo", trip, "trip_over")
    assert db.execute("SELECT count(*) FROM placements WHERE snapshot_id = %s"
                      " AND datacenter_id = 't-tokyo' AND NOT active AND evicted_at IS NULL",
                      (snap,)).fetchone()[0] == 1
    time.sleep(2.5)  # not staged again for a trip that is over
    assert designated(db, snap) == [("t-frankfurt", "protection", None)]


def test_a_trip_far_ahead_waits_and_a_withdrawn_one_is_released(homing, db):
    snap = seed_snapshot(db, "u-ps-2", "t-paris")
    user_at(db, "u-ps-2", 48.9, 2.4)
    later = announce(homing, "u-ps-2", -33.9, 151.2, 3 * 86400, 5 * 86400)  # Sydney, in 3 days
    time.sleep(2.5)
    assert designated(db, snap) == [] and replicates(db, snap) == []
    soon = announce(homing, "u-ps-2", 39.0, -77.5, 600)  # Ashburn in 10 minutes, one way
    wait_for(lambda: designated(db, snap) == [("t-virginia", "prestage", soon)],
             what="a copy pre-staged at Ashburn")
    # The copy follows the soonest trip only.
    assert later != soon and [r[2] for r in replicates(db, snap)] == ["t-virginia"]
    token = homing.device_token("d-u-ps-2", "u-ps-2")
    assert homing.request("DELETE", f"/v1/trips/{soon}", token=token)[0] == 204
    wait_for(lambda: designated(db, snap) == [], what="the copy of a withdrawn trip released")
    released = event(db, snap, "io.homing.prestage.released")
    check_event(released)
    assert (released["data"]["reason"], released["data"]["trip_id"]) == ("trip_withdrawn", None)
    assert replicates(db, snap) == []
    assert db.execute("SELECT error FROM transfers WHERE snapshot_id = %s AND state = 'cancelled'",
                      (snap,)).fetchone()[0] == "the pre-staged copy at t-virginia was released"


def test_a_move_onto_the_copy_ends_its_designation(homing, db):
    snap = seed_snapshot(db, "u-ps-3", "t-paris")
    user_at(db, "u-ps-3", 48.9, 2.4)
    trip = announce(homing, "u-ps-3", *TOKYO, 600, 86400)
    wait_for(lambda: designated(db, snap) == [("t-tokyo", "prestage", trip)], what="staged")
    (rep,) = wait_for(lambda: replicates(db, snap), what="its replicate")
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (rep[0],)).fetchone()[0]
    # The user lands, and the move on arrival goes onto the copy.
    user_at(db, "u-ps-3", *TOKYO)
    tid = db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                     " template_present, reason, idempotency_key, bytes_total)"
                     " VALUES (%s, 't-paris', 't-tokyo', 'tpl-1', true, 'closer', 'ps-3', 500)"
                     " RETURNING id", (snap,)).fetchone()[0]
    time.sleep(2.5)  # kept while the move is in flight
    assert designated(db, snap) == [("t-tokyo", "prestage", trip)]
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (tid,)).fetchone()[0]
    assert designated(db, snap) == []  # the active site is no copy of itself
    time.sleep(2.5)
    assert designated(db, snap) == [] and replicates(db, snap) == []


def test_a_trip_outside_the_zones_stages_nothing(homing, db):
    # Confined to Europe: the nearest site inside it to Tokyo is Frankfurt,
    # which a report in Tokyo would not move to (no nearer by a fifth).
    snap = seed_snapshot(db, "u-ps-eu", "t-paris")
    db.execute("UPDATE snapshots SET allowed_zones = '{eu}' WHERE id = %s", (snap,))
    user_at(db, "u-ps-eu", 48.9, 2.4)
    announce(homing, "u-ps-eu", *TOKYO, 600, 86400)
    time.sleep(3.5)  # three passes
    assert designated(db, snap) == [] and replicates(db, snap) == []
    assert event(db, snap, "io.homing.prestage.staged") is None


def ends_at_in(db, snapshot):
    """Seconds from now to the pre-staged copy's end."""
    return db.execute("SELECT extract(epoch FROM ends_at - now()) FROM replicas"
                      " WHERE snapshot_id = %s AND reason = 'prestage'", (snapshot,)).fetchone()[0]


def test_without_a_return_the_copy_lasts_a_day_past_the_last_fix_near_it(homing, db):
    snap = seed_snapshot(db, "u-ps-4", "t-paris")
    user_at(db, "u-ps-4", 48.9, 2.4)
    trip = announce(homing, "u-ps-4", *TOKYO, 600)
    wait_for(lambda: designated(db, snap) == [("t-tokyo", "prestage", trip)], what="staged")
    assert 86400 < ends_at_in(db, snap) <= 86400 + 600  # a day after the arrival
    # Landed a day ago, and the day is nearly out; the user's last fix is in
    # Tokyo now: the copy lasts a day from it.
    db.execute("UPDATE trips SET arrive_at = now() - interval '23 hours 59 minutes'"
               " WHERE id = %s", (trip,))
    user_at(db, "u-ps-4", 35.7, 139.7)
    wait_for(lambda: ends_at_in(db, snap) > 86400 - 60, what="the end moved on")
    # The user leaves; the end already moved on is kept.
    user_at(db, "u-ps-4", 48.9, 2.4)
    time.sleep(2.5)
    assert designated(db, snap) == [("t-tokyo", "prestage", trip)]
    assert ends_at_in(db, snap) > 86400 - 120


def test_a_copy_whose_site_is_drained_is_released(homing, db):
    snap = seed_snapshot(db, "u-ps-5", "t-paris")
    user_at(db, "u-ps-5", 48.9, 2.4)
    trip = announce(homing, "u-ps-5", -33.9, 151.2, 600, 86400)  # Sydney
    wait_for(lambda: designated(db, snap) == [("t-sydney", "prestage", trip)], what="staged")
    db.execute("UPDATE datacenters SET status = 'draining' WHERE id = 't-sydney'")
    try:
        # Released; Tokyo, the next nearest to Sydney, is nearer it than Paris
        # by both margins: the copy goes there instead.
        wait_for(lambda: designated(db, snap) == [("t-tokyo", "prestage", trip)],
                 what="the copy at Tokyo instead")
        released = event(db, snap, "io.homing.prestage.released")
        check_event(released)
        assert (released["data"]["datacenter_id"], released["data"]["reason"]) == \
            ("t-sydney", "not_eligible")
    finally:
        db.execute("UPDATE datacenters SET status = 'active' WHERE id = 't-sydney'")


def test_the_replica_pass_may_take_a_pre_staged_copy_as_its_replica(homing, db):
    snap = seed_snapshot(db, "u-ps-6", "t-paris")
    user_at(db, "u-ps-6", 48.9, 2.4)
    trip = announce(homing, "u-ps-6", *TOKYO, 600, 86400)
    wait_for(lambda: designated(db, snap) == [("t-tokyo", "prestage", trip)], what="staged")
    (rep,) = wait_for(lambda: replicates(db, snap), what="its replicate")
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (rep[0],)).fetchone()[0]
    # The user is in Tokyo when the level comes to want a replica: the copy
    # there is the nearest holder, and becomes the protection replica, kept.
    user_at(db, "u-ps-6", *TOKYO)
    db.execute("UPDATE snapshots SET priority = 1 WHERE id = %s", (snap,))
    wait_for(lambda: designated(db, snap) == [("t-tokyo", "protection", None)],
             what="the copy a protection replica")
    assert event(db, snap, "io.homing.replica.designated")["data"]["has_copy"] is True
    time.sleep(2.5)
    assert designated(db, snap) == [("t-tokyo", "protection", None)]
    assert event(db, snap, "io.homing.prestage.released") is None
    assert replicates(db, snap) == []


GIB = 1 << 30


def post_reports(homing, device, user, fixes):
    """Reports of one device: (lat, lon, seconds from now) each."""
    body = [report(user, device, lat, lon, ts=now_rfc3339(ago)) for lat, lon, ago in fixes]
    status, _, raw = homing.post("/v1/locations", body)
    assert status == 202, raw


def policy_state(db, snapshot):
    return db.execute("SELECT last_outcome, last_reason FROM snapshot_policy_state"
                      " WHERE snapshot_id = %s", (snapshot,)).fetchone()


# Twelve hours ago in Paris (far enough back for the flight at 300 m/s), then
# the half-hour dwell and three reports in Tokyo.
PARIS_AGO = [(48.86, 2.35, -12 * 3600)]
TOKYO_DWELL = [(*TOKYO, -40 * 60), (*TOKYO, -20 * 60), (*TOKYO, -60)]


def test_the_move_on_arrival_onto_the_pre_staged_copy_pays_for_what_it_lacks_only(homing, db):
    # Two 100 GiB snapshots in Paris; at 100 km a GiB a move to Tokyo in
    # full (10,000 km) does not pay. u-ps-8 flies without a copy: it stays.
    plain = seed_snapshot(db, "u-ps-8", "t-paris", size=100 * GIB)
    post_reports(homing, "p-u-ps-8", "u-ps-8", PARIS_AGO + TOKYO_DWELL)
    wait_for(lambda: policy_state(db, plain) == ("stay", "not_worth_it"),
             what="the whole snapshot not worth the flight")

    # u-ps-9 announces the trip: its copy is pre-staged in Tokyo and lands.
    snap = seed_snapshot(db, "u-ps-9", "t-paris", size=100 * GIB)
    user_at(db, "u-ps-9", 48.9, 2.4)
    post_reports(homing, "p-u-ps-9", "u-ps-9", PARIS_AGO)  # the scheduler knows the user
    wait_for(lambda: policy_state(db, snap) == ("stay", "already_nearest"),
             what="the user loaded in Paris")
    trip = announce(homing, "u-ps-9", *TOKYO, 1800, 2 * 86400)
    wait_for(lambda: designated(db, snap) == [("t-tokyo", "prestage", trip)], what="staged")
    (rep,) = wait_for(lambda: replicates(db, snap), what="its replicate")
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (rep[0],)).fetchone()[0]
    time.sleep(2.5)  # the scheduler hears of the copy (it looks every catalog refresh, 1 s)
    # The what-if, from PostgreSQL, already says so.
    answer, _ = homing.json("GET", "/v1/users/u-ps-9/what-if?lat=35.68&lon=139.69")
    settled = answer["snapshots"][0]["once_settled"]
    assert (settled["outcome"], settled["target_dc"], settled["copy_present"],
            settled["bytes_to_send"], settled["bytes"]) == ("move", "t-tokyo", True, 0, 100 * GIB)

    # It lands and stays: the move goes onto the copy, which lacks nothing.
    post_reports(homing, "p-u-ps-9", "u-ps-9", TOKYO_DWELL)
    row = wait_for(lambda: db.execute(
        "SELECT d.to_dc, d.details, t.bytes_total FROM decisions d"
        " JOIN transfers t ON t.id = d.transfer_id"
        " WHERE d.snapshot_id = %s AND d.outcome = 'move'", (snap,)).fetchone(),
        what="the move on arrival")
    to_dc, details, bytes_total = row
    assert to_dc == "t-tokyo"
    assert (details["copy_present"], details["bytes_to_send"], details["bytes"]) == \
        (True, 0, 100 * GIB)
    assert bytes_total == 100 * GIB  # the whole snapshot lands there: reserved in full
    queued = event(db, snap, "io.homing.placement.decided")
    check_event(queued)
    assert queued["data"]["details"]["bytes_to_send"] == 0
    # The plain one still stays.
    assert policy_state(db, plain) == ("stay", "not_worth_it")


def test_a_copy_evicted_after_the_user_was_loaded_no_longer_cheapens_the_move(homing, db):
    # A cached copy at Tokyo (a trip's copy released, say) when the user is loaded...
    snap = seed_snapshot(db, "u-ps-10", "t-paris", size=100 * GIB)
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, 't-tokyo', 1, false)", (snap,))
    # The look for changed users reaches 30 s back: past that, rows just made
    # no longer make the scheduler forget the user, and only the eviction can.
    time.sleep(33)
    post_reports(homing, "p-u-ps-10", "u-ps-10", PARIS_AGO)
    wait_for(lambda: policy_state(db, snap) == ("stay", "already_nearest"),
             what="the user loaded in Paris")
    # ...then evicted: the scheduler forgets what it knew, and the flight does
    # not pay for the whole snapshot.
    db.execute("UPDATE placements SET evicted_at = now() WHERE snapshot_id = %s"
               " AND datacenter_id = 't-tokyo'", (snap,))
    time.sleep(2.5)  # the scheduler's look for changed users (every catalog refresh, 1 s)
    post_reports(homing, "p-u-ps-10", "u-ps-10", TOKYO_DWELL)
    wait_for(lambda: policy_state(db, snap) == ("stay", "not_worth_it"),
             what="the whole snapshot not worth the flight")
    assert db.execute("SELECT count(*) FROM decisions WHERE snapshot_id = %s"
                      " AND outcome = 'move'", (snap,)).fetchone()[0] == 0
