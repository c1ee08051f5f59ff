"""A batch whose partition another process advanced commits nothing.

The scheduler sends a batch's writes, its offsets and its COMMIT together
(one round trip), so the offsets' check is made by PostgreSQL
(homing_advance_offsets, SQLSTATE HM409): when the stored offset is not
the one this process read, the whole batch rolls back, and the scheduler
resumes from the offset PostgreSQL holds.
"""
import time
import uuid

import psycopg
import pytest

from conftest import SITES, Homing, delete_topics, new_topics, produce, seed_catalog, wait_for

ENV = {"HOMING_BATCH_MAX": "50", "HOMING_BATCH_WAIT_MS": "300",
       "HOMING_TOPIC_PARTITIONS": "1"}


def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".000Z"


def record(user, device, site_index, ts_ms):
    _, _, lat, lon = SITES[site_index]
    return {"device_id": device, "user_id": user, "lat": lat, "lon": lon, "accuracy_m": 20.0,
            "ts": iso(ts_ms), "received_at": iso(int(time.time() * 1000))}


@pytest.fixture
def scheduler(database, tmp_path):
    tag = uuid.uuid4().hex[:8]
    topics = new_topics()
    h = Homing(database, topics, f"offsets-{tag}", "schedule", tmp_path, extra=ENV)
    h.migrate()  # the schema, and this test's topics
    with psycopg.connect(database, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM datacenters LIMIT 1").fetchone():
            seed_catalog(conn)
        conn.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
                     " VALUES (%s, %s, 'tpl-1', 500)", (f"snap-{tag}", f"u-{tag}"))
        conn.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                     " VALUES (%s, 't-paris', 1, true)", (f"snap-{tag}",))
    h.start()
    yield h, tag
    h.stop()
    delete_topics(topics.values())


def test_a_batch_behind_another_writer_rolls_back_whole_and_resumes(scheduler, database):
    h, tag = scheduler
    group, topic, user = f"offsets-{tag}", h.env["HOMING_TOPIC_LOCATIONS"], f"u-{tag}"
    db = psycopg.connect(database, autocommit=True)
    stored = lambda: db.execute("SELECT next_offset FROM consumer_offsets WHERE group_id = %s",
                                (group,)).fetchone()
    t0 = int(time.time() * 1000) - 3_600_000

    produce(topic, [record(user, f"d-first-{tag}", 0, t0)])
    wait_for(lambda: stored() == (1,), what="the first report")
    # Another process takes offset 1: PostgreSQL says 2, this one still 1.
    db.execute("UPDATE consumer_offsets SET next_offset = 2 WHERE group_id = %s", (group,))
    produce(topic, [record(user, f"d-theirs-{tag}", 0, t0 + 60_000),
                    record(user, f"d-ours-{tag}", 0, t0 + 120_000)])

    wait_for(lambda: stored() == (3,), what="the report after the other's")
    assert "another scheduler advanced a partition first" in h.log_text()
    devices = {r[0] for r in db.execute("SELECT device_id FROM device_locations"
                                        " WHERE device_id LIKE %s", (f"%-{tag}",))}
    # Offset 1's fix was in the batch that rolled back, and was not written again.
    assert devices == {f"d-first-{tag}", f"d-ours-{tag}"}
