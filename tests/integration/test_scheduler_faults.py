"""Every effect once: three schedulers share a stream of reports that must
cause a known set of moves; every few seconds one of them is killed with
SIGKILL and started again. At the end the transfers are exactly the
expected set, none missing and none twice, and every outbox row has reached
Kafka."""
import json
import random
import signal
import time

import pytest
from confluent_kafka import Producer

from conftest import (SITES, Homing, brokers, read_topic, seed_catalog, seed_fleet,
                      topic_message_count, wait_for)

USERS = 600
REPORTS_PER_USER = 8
MINUTE_MS = 60_000


def site(sid):
    return next(s for s in SITES if s[0] == sid)


def plan(rng):
    """Each user's snapshot, where it starts and what its reports say.
    Two in three users fly somewhere and stay: exactly one move. The others
    pass through a city for 15 minutes and return: no move."""
    now_ms = int(time.time() * 1000)
    start_ms = now_ms - 2 * 24 * 3600 * 1000
    users = []
    for i in range(USERS):
        home, away = rng.sample([s[0] for s in SITES], 2)
        mover = i % 3 != 2
        reports = []
        for k in range(REPORTS_PER_USER):
            ts = start_ms + k * 15 * MINUTE_MS
            there = away if (mover or k < 2) else home
            _, _, lat, lon = site(there)
            reports.append({
                "device_id": f"d-{i}", "user_id": f"u-{i}",
                "lat": round(lat + rng.uniform(-0.02, 0.02), 5),
                "lon": round(lon + rng.uniform(-0.02, 0.02), 5),
                "accuracy_m": 20.0,
                "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts / 1000)) + ".000Z",
                "received_at": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now_ms / 1000)) + ".000Z",
            })
        users.append({"user": f"u-{i}", "snapshot": f"snap-u-{i}", "home": home,
                      "away": away, "mover": mover, "reports": reports})
    return users


ENV = {"HOMING_TOPIC_PARTITIONS": "6", "HOMING_BATCH_MAX": "40",
       "HOMING_BATCH_WAIT_MS": "20", "HOMING_CATALOG_REFRESH_S": "2",
       "HOMING_DWELL_S": "1800", "HOMING_DWELL_REPORTS": "3",
       "HOMING_MOVE_MARGIN_M": "50000", "HOMING_KM_PER_GIB": "0"}


@pytest.fixture(scope="module")
def scenario(database, db, topics, tmp_path_factory):
    rng = random.Random(7)
    users = plan(rng)
    Homing(database, topics, "faults", "schedule", tmp_path_factory.mktemp("faults"),
           extra=ENV).migrate()
    seed_catalog(db)
    seed_fleet(db, [(u["snapshot"], u["user"], u["home"]) for u in users])
    return users


def test_transfers_are_exactly_the_expected_set_despite_sigkills(
        scenario, database, db, topics, tmp_path):
    schedulers = [Homing(database, topics, "faults", "schedule", tmp_path, extra=ENV)
                  for _ in range(3)]
    for s in schedulers:
        s.start()

    # Reports go in with a real producer, a slice at a time, each user's in order.
    producer = Producer({"bootstrap.servers": brokers(), "enable.idempotence": True,
                         "acks": "all"})
    rounds = [[u["reports"][k] for u in scenario] for k in range(REPORTS_PER_USER)]
    total = sum(len(r) for r in rounds)
    rng = random.Random(11)
    kills = 0
    deadline = time.time() + 240

    def processed():
        return db.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets"
                          " WHERE group_id = 'faults'").fetchone()[0]

    next_kill = time.time() + 2
    for batch in rounds:
        for r in batch:
            producer.produce(topics["locations"], key=r["user_id"], value=json.dumps(r))
        assert producer.flush(30) == 0
        # Let them work, and kill one now and then.
        pause_until = time.time() + 2.5
        while time.time() < pause_until:
            if time.time() >= next_kill:
                victim = rng.choice(schedulers)
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
                victim.log.close()
                victim.start()
                kills += 1
                next_kill = time.time() + rng.uniform(1.5, 3.5)
            time.sleep(0.1)

    # A couple more kills while the tail is processed, then let it finish.
    while processed() < total and time.time() < deadline:
        if time.time() >= next_kill and kills < 12:
            victim = rng.choice(schedulers)
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            victim.log.close()
            victim.start()
            kills += 1
            next_kill = time.time() + rng.uniform(1.5, 3.5)
        time.sleep(0.2)
    assert processed() == total, f"processed {processed()} of {total} reports"
    assert kills >= 5

    expected = {(u["snapshot"], u["away"]) for u in scenario if u["mover"]}
    rows = db.execute("SELECT snapshot_id, to_dc, state FROM transfers").fetchall()
    got = [(snap, to) for snap, to, _ in rows]
    assert len(got) == len(set(got)), "a transfer was made twice"
    assert set(got) == expected
    assert {state for _, _, state in rows} == {"queued"}

    # Every outbox row reaches Kafka; the jobs topic names every transfer.
    wait_for(lambda: db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
             .fetchone()[0] == 0, timeout=60, what="the outbox to drain")
    ids = {r[0] for r in db.execute("SELECT id FROM transfers").fetchall()}
    # At least once: a relay killed between delivery and its mark sent some
    # again, so read everything the topic holds, not just len(ids) messages.
    jobs = read_topic(topics["transfers"], expect=topic_message_count(topics["transfers"]),
                      timeout=60)
    assert {job["transfer_id"] for _, job in jobs} == ids

    for s in schedulers:
        s.stop()
