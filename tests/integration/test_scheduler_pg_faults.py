"""Nothing acknowledged is lost when PostgreSQL fails under the scheduler.

- PostgreSQL stops while reports keep coming: none of them is skipped when it
  is back (the scheduler holds its partitions and rewinds, rather than
  reading on and committing past what it dropped).
- Two users report with one device id in one batch: both are decided, and
  the partition goes on (device_locations is keyed by the device alone).
- A report whose effects fail on their own, every time, is set aside in
  dead_letters (with its audit event) and the reports around it are decided.
- A statement that fails between BEGIN and loading the users does not crash
  the scheduler; it waits, and decides everything once the database is
  repaired.
"""
import json
import time
import uuid

import psycopg
import pytest

from conftest import (SITES, Homing, delete_topics, new_topics, produce, seed_catalog, stack,
                      wait_for)

ENV = {"HOMING_BATCH_MAX": "50", "HOMING_BATCH_WAIT_MS": "100",
       "HOMING_CATALOG_REFRESH_S": "2", "HOMING_TOPIC_PARTITIONS": "3"}




def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".000Z"


def record(user, device, site_index, ts_ms):
    _, _, lat, lon = SITES[site_index]
    now = int(time.time() * 1000)
    return {"device_id": device, "user_id": user, "lat": lat, "lon": lon, "accuracy_m": 20.0,
            "ts": iso(ts_ms), "received_at": iso(now)}


@pytest.fixture(scope="module")
def prepared(database, tmp_path_factory):
    Homing(database, {"locations": "unused.l", "transfers": "unused.t", "audit": "unused.a"},
           "unused", "schedule", tmp_path_factory.mktemp("pgfaults")).migrate()
    with psycopg.connect(database, autocommit=True) as conn:
        seed_catalog(conn)
    return database


@pytest.fixture
def db(prepared):
    # Per test: the outage test's restart breaks every connection made before it.
    with psycopg.connect(prepared, autocommit=True) as conn:
        yield conn


@pytest.fixture
def scheduler(prepared, tmp_path):
    """A scheduler on topics and a group of its own; stopped (and checked) after."""
    tag = uuid.uuid4().hex[:8]
    topics = new_topics()
    h = Homing(prepared, topics, f"pgfaults-{tag}", "schedule", tmp_path, extra=ENV)
    h.migrate()  # creates this test's topics
    h.start()
    yield h
    h.stop()
    delete_topics(topics.values())


def processed(db, group):
    return db.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
                      " WHERE group_id = %s", (group,)).fetchone()[0]


def group_of(h):
    return h.env["HOMING_CONSUMER_GROUP"]


def seed_users(db, prefix, n):
    for i in range(n):
        db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
                   " VALUES (%s, %s, 'tpl-1', 500)", (f"snap-{prefix}-{i}", f"{prefix}-{i}"))
        db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                   " VALUES (%s, 't-paris', 1, true)", (f"snap-{prefix}-{i}",))


def test_a_postgresql_outage_skips_no_acknowledged_report(scheduler, db, tmp_path):
    users, group = 30, group_of(scheduler)
    topic = scheduler.env["HOMING_TOPIC_LOCATIONS"]
    seed_users(db, "out", users)
    # A second scheduler in the group: it dies during the outage, so the first
    # is given its partitions while their offsets cannot be read.
    second = Homing(scheduler.env["HOMING_PG_DSN"],
                    {"locations": topic, "transfers": scheduler.env["HOMING_TOPIC_TRANSFERS"],
                     "audit": scheduler.env["HOMING_TOPIC_AUDIT"]},
                    group, "schedule", tmp_path, extra=ENV).start()
    t0 = (int(time.time()) - 3 * 3600) * 1000
    produce(topic, [record(f"out-{i}", f"d-out-{i}", 0, t0) for i in range(users)])
    wait_for(lambda: processed(db, group) == users, what="the first round")

    stack("pg-down")
    try:
        # Reports keep coming while PostgreSQL is away; the schedulers see them.
        produce(topic, [record(f"out-{i}", f"d-out-{i}", 1, t0 + 3600_000)
                        for i in range(users)])
        time.sleep(2)
        second.proc.kill()
        second.proc.wait()
        second.log.close()
        # The group's session timeout (6 s), then the rebalance; a rewind's seek
        # into partitions being revoked can hold the survivor's loop 5 s a try.
        wait_for(lambda: "holding them until PostgreSQL answers" in scheduler.log_text(),
                 timeout=90, what="the survivor to take the partitions, held")
        assert scheduler.proc.poll() is None, "the scheduler died with PostgreSQL"
    finally:
        stack("pg-up")
    db = psycopg.connect(scheduler.env["HOMING_PG_DSN"], autocommit=True)
    # And more once it is back: committing these must not jump over the others.
    produce(topic, [record(f"out-{i}", f"d-late-{i}", 1, t0 + 7200_000) for i in range(users)])

    wait_for(lambda: processed(db, group) == 3 * users, timeout=60,
             what="every report to be processed")
    rows = dict(db.execute("SELECT device_id, round(extract(epoch FROM reported_at) * 1000)"
                           " FROM device_locations WHERE device_id LIKE 'd-out-%'").fetchall())
    missed = [d for d, ts in rows.items() if int(ts) != t0 + 3600_000]
    assert len(rows) == users and not missed, f"reports sent during the outage were skipped: {missed}"
    late = db.execute("SELECT count(*) FROM device_locations WHERE device_id LIKE 'd-late-%'"
                      ).fetchone()[0]
    assert late == users
    assert "resume from the offsets PostgreSQL holds" in scheduler.log_text()


def test_two_users_sharing_a_device_id_do_not_wedge_their_partition(scheduler, db):
    group, topic = group_of(scheduler), scheduler.env["HOMING_TOPIC_LOCATIONS"]
    seed_users(db, "share", 2)
    ts = int(time.time() * 1000) - 600_000
    produce(topic, [record("share-0", "d-shared", 0, ts), record("share-1", "d-shared", 2, ts + 1000),
                    record("share-0", "d-own", 0, ts + 2000)])
    wait_for(lambda: processed(db, group) == 3, timeout=30, what="all three reports")
    # The last fix of the device wins, whoever's it is.
    user, lat = db.execute("SELECT user_id, lat FROM device_locations WHERE device_id = 'd-shared'"
                           ).fetchone()
    assert (user, lat) == ("share-1", SITES[2][2])
    assert db.execute("SELECT count(*) FROM dead_letters").fetchone()[0] == 0


def test_a_report_that_always_fails_is_quarantined_and_the_rest_decided(scheduler, db):
    group, topic = group_of(scheduler), scheduler.env["HOMING_TOPIC_LOCATIONS"]
    seed_users(db, "poison", 3)
    db.execute("""
        CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.device_id = 'd-poison' THEN RAISE EXCEPTION 'this device is poison'; END IF;
            RETURN NEW;
        END $$""")
    db.execute("CREATE TRIGGER test_refuse_poison BEFORE INSERT OR UPDATE ON device_locations"
               " FOR EACH ROW EXECUTE FUNCTION test_refuse_poison()")
    try:
        ts = int(time.time() * 1000) - 600_000
        produce(topic, [record("poison-0", "d-p0", 0, ts), record("poison-1", "d-poison", 0, ts),
                        record("poison-2", "d-p2", 0, ts), record("poison-0", "d-p0", 1, ts + 1000)])
        wait_for(lambda: processed(db, group) == 4, timeout=60, what="the partition to go on")
    finally:
        db.execute("DROP TRIGGER test_refuse_poison ON device_locations")
        db.execute("DROP FUNCTION test_refuse_poison()")
    devices = {r[0] for r in db.execute("SELECT device_id FROM device_locations"
                                        " WHERE device_id IN ('d-p0', 'd-p2', 'd-poison')")}
    assert devices == {"d-p0", "d-p2"}
    letters = db.execute("SELECT id, topic, payload, error FROM dead_letters").fetchall()
    assert len(letters) == 1
    dl_id, dl_topic, payload, error = letters[0]
    assert dl_topic == topic and json.loads(bytes(payload))["device_id"] == "d-poison"
    assert error.startswith("P0001") and "poison" in error
    event = db.execute("SELECT payload FROM outbox WHERE payload->>'type' ="
                       " 'io.homing.report.quarantined'").fetchone()[0]
    assert event["id"] == f"dead-letter-{dl_id}" and event["data"]["device_id"] == "d-poison"
    assert "quarantined in dead_letters" in scheduler.log_text()


def test_a_failure_between_begin_and_loading_users_does_not_crash(scheduler, db):
    group, topic = group_of(scheduler), scheduler.env["HOMING_TOPIC_LOCATIONS"]
    seed_users(db, "broken", 2)
    # The user-loading query reads snapshot_policy_state: take it away.
    db.execute("ALTER TABLE snapshot_policy_state RENAME TO test_policy_state_away")
    try:
        ts = int(time.time() * 1000) - 600_000
        produce(topic, [record("broken-0", "d-b0", 0, ts), record("broken-1", "d-b1", 0, ts)])
        time.sleep(3)
        assert scheduler.proc.poll() is None, "the scheduler crashed"
        assert processed(db, group) == 0
    finally:
        db.execute("ALTER TABLE test_policy_state_away RENAME TO snapshot_policy_state")
    wait_for(lambda: processed(db, group) == 2, timeout=30, what="the reports after the repair")
    # Not the reports' fault: none of them was set aside.
    assert db.execute("SELECT count(*) FROM dead_letters WHERE topic = %s", (topic,)
                      ).fetchone()[0] == 0
