"""Never two active, in PostgreSQL (migration 019): every switch of a
snapshot's active placement advances its epoch, whoever writes it; a
powered_on record is refused unless its epoch is current, its datacenter
holds the active placement and no other datacenter that is not down still
says it runs the VM — also when a switch and a report race. Then the same
fence through the API: desired power by PATCH, the agent's list of VMs and
its power reports."""
import threading
import time

import psycopg
import pytest

from conftest import homing_with_catalog, seed_snapshot


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "fencing", "serve",
                                   tmp_path_factory.mktemp("fencing"))


def epoch(db, snapshot):
    return db.execute("SELECT epoch FROM snapshots WHERE id = %s", (snapshot,)).fetchone()[0]


def active(db, snapshot):
    return db.execute("SELECT datacenter_id, epoch FROM placements"
                      " WHERE snapshot_id = %s AND active", (snapshot,)).fetchone()


def switch(db, snapshot, to_dc):
    """Moves the active placement as homing_transfer_succeeded does."""
    with db.transaction():
        db.execute("UPDATE placements SET active = false, deactivated_at = now()"
                   " WHERE snapshot_id = %s AND active", (snapshot,))
        db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                   " VALUES (%s, %s, 1, true)", (snapshot, to_dc))


def record(db, snapshot, dc, ep, state="powered_on"):
    db.execute("INSERT INTO power_records (snapshot_id, datacenter_id, epoch, state)"
               " VALUES (%s, %s, %s, %s)", (snapshot, dc, ep, state))


def test_every_switch_advances_the_epoch_whoever_writes_it(homing, db):
    snap = seed_snapshot(db, "u-epoch", "t-paris")
    assert epoch(db, snap) == 1 and active(db, snap) == ("t-paris", 1)

    # A transfer's success (the function of migration 016, untouched).
    tid = db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                     " template_present, reason, idempotency_key, bytes_total)"
                     " VALUES (%s, 't-paris', 't-tokyo', 'tpl-1', true, 'test', 'epoch-1', 500)"
                     " RETURNING id", (snap,)).fetchone()[0]
    assert db.execute("SELECT homing_transfer_succeeded(%s)", (tid,)).fetchone()[0] is True
    assert epoch(db, snap) == 2 and active(db, snap) == ("t-tokyo", 2)

    # A new version at the same datacenter is a switch too; an operator's psql as well.
    switch(db, snap, "t-tokyo")
    assert active(db, snap) == ("t-tokyo", 3)
    with db.transaction():
        db.execute("UPDATE placements SET active = false WHERE snapshot_id = %s AND active",
                   (snap,))
        db.execute("UPDATE placements SET active = true WHERE id = (SELECT min(id)"
                   " FROM placements WHERE snapshot_id = %s)", (snap,))
    assert active(db, snap) == ("t-paris", 4) and epoch(db, snap) == 4

    # Writes that switch nothing keep every epoch, nor can they forge one.
    db.execute("UPDATE placements SET evicted_at = now(), epoch = 99 WHERE snapshot_id = %s"
               " AND NOT active", (snap,))
    assert epoch(db, snap) == 4
    assert [r[0] for r in db.execute("SELECT epoch FROM placements WHERE snapshot_id = %s"
                                     " ORDER BY id", (snap,))] == [4, 2, 3]


def test_powered_on_needs_the_current_epoch_and_the_active_placement(homing, db):
    snap = seed_snapshot(db, "u-fence", "t-paris")
    switch(db, snap, "t-frankfurt")  # epoch 2 at Frankfurt
    with pytest.raises(psycopg.errors.CheckViolation, match="stale-epoch"):
        record(db, snap, "t-frankfurt", 1)
    with pytest.raises(psycopg.errors.CheckViolation, match="not-active-here"):
        record(db, snap, "t-paris", 2)
    with pytest.raises(psycopg.errors.CheckViolation, match="ahead"):
        record(db, snap, "t-frankfurt", 3, "powered_off")
    record(db, snap, "t-frankfurt", 2)
    # Off and failed are history, whatever the epoch they ran under.
    record(db, snap, "t-paris", 1, "powered_off")
    record(db, snap, "t-frankfurt", 2, "failed")
    with pytest.raises(psycopg.errors.CheckViolation, match="not rewritten"):
        db.execute("UPDATE power_records SET state = 'powered_on' WHERE snapshot_id = %s", (snap,))


def test_never_two_powered_on_until_the_old_site_is_off_or_down(homing, db):
    snap = seed_snapshot(db, "u-two", "t-paris")
    record(db, snap, "t-paris", 1)
    switch(db, snap, "t-tokyo")  # epoch 2: Paris has not said it stopped
    with pytest.raises(psycopg.errors.CheckViolation, match="powered-on-elsewhere:t-paris"):
        record(db, snap, "t-tokyo", 2)
    record(db, snap, "t-paris", 1, "powered_off")
    record(db, snap, "t-tokyo", 2)

    # Declared down, a site that never reported is no obstacle.
    switch(db, snap, "t-sydney")  # epoch 3; Tokyo's latest record says powered_on
    with pytest.raises(psycopg.errors.CheckViolation, match="powered-on-elsewhere:t-tokyo"):
        record(db, snap, "t-sydney", 3)
    db.execute("UPDATE datacenters SET status = 'down' WHERE id = 't-tokyo'")
    try:
        record(db, snap, "t-sydney", 3)
    finally:
        db.execute("UPDATE datacenters SET status = 'active' WHERE id = 't-tokyo'")
    running = db.execute("SELECT array_agg(datacenter_id ORDER BY datacenter_id) FROM"
                         " (SELECT DISTINCT ON (datacenter_id) datacenter_id, state"
                         "  FROM power_records WHERE snapshot_id = %s"
                         "  ORDER BY datacenter_id, id DESC) l WHERE state = 'powered_on'",
                         (snap,)).fetchone()[0]
    assert running == ["t-sydney", "t-tokyo"]  # Tokyo's agent demotes it when it comes back


def test_a_switch_and_a_report_that_race_cannot_make_two(homing, db, database):
    """Paris reports powered_on in a transaction that has not committed yet;
    meanwhile the placement switches to Tokyo and Tokyo reports. The switch
    waits for Paris's record, and Tokyo is then refused."""
    snap = seed_snapshot(db, "u-race", "t-paris")
    outcome = {}
    with psycopg.connect(database) as paris:
        record(paris, snap, "t-paris", 1)  # uncommitted: holds the snapshot's row

        def tokyo():
            with psycopg.connect(database, autocommit=True) as conn:
                try:
                    with conn.transaction():
                        switch(conn, snap, "t-tokyo")
                        record(conn, snap, "t-tokyo", 2)
                    outcome["tokyo"] = "powered_on"
                except psycopg.errors.CheckViolation as e:
                    outcome["tokyo"] = str(e)
        t = threading.Thread(target=tokyo)
        t.start()
        time.sleep(1)
        assert t.is_alive(), "the switch must wait for the report in flight"
        paris.commit()
        t.join(10)
    assert "powered-on-elsewhere:t-paris" in outcome["tokyo"]
    assert active(db, snap) == ("t-paris", 1)  # the refused transaction switched nothing


# ---- through the API ----------------------------------------------------------------------


def agent_token(homing, dc):
    key = ("agent", dc)
    if key not in homing.tokens:
        homing.tokens[key] = homing.homing("token", "agent", "--datacenter", dc)
    return homing.tokens[key]


def power(homing, dc, snap, ep, state="powered_on", expect=201, **extra):
    return homing.json("POST", f"/v1/agent/vms/{snap}/power",
                       {"epoch": ep, "state": state, **extra}, expect=expect,
                       token=agent_token(homing, dc))[0]


def test_operators_set_the_desired_power_and_the_agent_sees_its_vms(homing, db):
    admin = homing.token("admin")
    snap = seed_snapshot(db, "u-power", "t-virginia")
    doc, headers = homing.json("GET", f"/v1/snapshots/{snap}")
    assert (doc["power"], doc["epoch"], doc["placement"]["epoch"], doc["powered_on_at"]) == \
        ("off", 1, 1, [])
    status, _, raw = homing.request("PATCH", f"/v1/snapshots/{snap}", {"power": "up"},
                                    token=admin, headers={"If-Match": headers["ETag"]})
    assert status == 422 and b"/power" in raw
    vms = homing.json("GET", "/v1/agent/vms", token=agent_token(homing, "t-virginia"))[0]
    assert vms == {"datacenter_id": "t-virginia", "vms": [], "powered_on": [], "tests": []}

    doc, _ = homing.json("PATCH", f"/v1/snapshots/{snap}", {"power": "on"}, token=admin,
                         headers={"If-Match": headers["ETag"]})
    assert doc["power"] == "on"
    vms = homing.json("GET", "/v1/agent/vms", token=agent_token(homing, "t-virginia"))[0]
    assert vms["vms"] == [{"snapshot_id": snap, "version": 1, "epoch": 1,
                           "template_id": "tpl-1", "blocked_by": None}]
    # Another datacenter's agent sees none of it.
    assert homing.json("GET", "/v1/agent/vms",
                       token=agent_token(homing, "t-sydney"))[0]["vms"] == []

    rec = power(homing, "t-virginia", snap, 1)
    assert (rec["state"], rec["epoch"], rec["datacenter_id"]) == ("powered_on", 1, "t-virginia")
    vms = homing.json("GET", "/v1/agent/vms", token=agent_token(homing, "t-virginia"))[0]
    assert vms["powered_on"] == [{"snapshot_id": snap, "epoch": 1}]
    assert homing.json("GET", f"/v1/snapshots/{snap}")[0]["powered_on_at"] == ["t-virginia"]


def test_the_api_refuses_a_stale_or_second_power_on_and_says_why(homing, db):
    snap = seed_snapshot(db, "u-refused", "t-paris")
    db.execute("UPDATE snapshots SET power = 'on' WHERE id = %s", (snap,))
    power(homing, "t-paris", snap, 1)
    switch(db, snap, "t-frankfurt")

    problem = power(homing, "t-paris", snap, 1, expect=409)
    assert problem["type"].endswith("stale-epoch") and problem["current_epoch"] == 2
    problem = power(homing, "t-paris", snap, 2, expect=409)
    assert problem["type"].endswith("not-active-here")
    vms = homing.json("GET", "/v1/agent/vms", token=agent_token(homing, "t-frankfurt"))[0]
    assert vms["vms"][0]["blocked_by"] == "t-paris"
    problem = power(homing, "t-frankfurt", snap, 2, expect=409)
    assert problem["type"].endswith("powered-on-elsewhere")

    power(homing, "t-paris", snap, 1, "powered_off", reason="no longer active here")
    assert homing.json("GET", "/v1/agent/vms",
                       token=agent_token(homing, "t-frankfurt"))[0]["vms"][0]["blocked_by"] is None
    power(homing, "t-frankfurt", snap, 2)
    assert homing.json("GET", f"/v1/snapshots/{snap}")[0]["powered_on_at"] == ["t-frankfurt"]

    # Bad reports change nothing.
    before = db.execute("SELECT count(*) FROM power_records").fetchone()[0]
    assert "/state" in str(power(homing, "t-frankfurt", snap, 2, "on", expect=422))
    assert "/epoch" in str(power(homing, "t-frankfurt", snap, 7, "powered_off", expect=422))
    assert "/epoch" in str(power(homing, "t-frankfurt", snap, 0, expect=422))
    power(homing, "t-frankfurt", "snap-nobody", 1, expect=404)
    assert db.execute("SELECT count(*) FROM power_records").fetchone()[0] == before
