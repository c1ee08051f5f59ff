"""The fault suite under load: while a fleet of devices posts reports at a
steady rate through the real API, and transfer agents move the snapshots'
real qcow2 images between five stores, each part of homing fails in turn:
a scheduler, the relay, the API and the agents are SIGKILLed (and started
again), PostgreSQL and the Kafka broker are restarted, and a scheduler is
frozen (SIGSTOP) long enough to lose its partitions and then runs on, a
zombie.

Afterwards the promises are checked against the rows and the topics:
- every report answered 202 is in Kafka and was consumed by a transaction
  that committed its offset (decided, or counted as dropped with a reason);
  every device's last fix is at least its last acknowledged report;
- no report was decided twice, and no transfer was made twice;
- every outbox row was published, and every event and job is in its topic;
- at most one active placement per snapshot, and when the agents are done
  it is a verified copy whose file is in its datacenter's store;
- every process recovered by itself and stops cleanly (sanitizers quiet).

The figures (reports acknowledged, decided, dropped, transfers, duplicates,
and per fault how long ingest and decisions stalled) go to
$HOMING_STATE_DIR/results/faults.txt, which tests/run prints.
HOMING_FAULT_ROUNDS repeats the cycle of faults (1 in tests/run; more for a
soak), HOMING_FAULT_STEADY_S is the calm between two faults.
"""
import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from collections import defaultdict
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, TopicPartition

from conftest import SITES, Homing, brokers, read_topic, seed_catalog, seed_fleet, stack, wait_for
from plane import Agent, make_overlay, make_template

USERS = 40
RATE = 25.0  # reports per second, open loop
ROUNDS = int(os.environ.get("HOMING_FAULT_ROUNDS", "1"))
STEADY_S = float(os.environ.get("HOMING_FAULT_STEADY_S", "6"))
HOUR_MS = 3600_000

# Moves happen often: no dwell, no cooldown, no speed limit (the fleet
# teleports between cities an hour of device time apart).
ENV = {"HOMING_TOPIC_PARTITIONS": "6", "HOMING_BATCH_MAX": "50", "HOMING_BATCH_WAIT_MS": "50",
       "HOMING_CATALOG_REFRESH_S": "2", "HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "2",
       "HOMING_COOLDOWN_S": "0", "HOMING_MAX_MOVES_PER_DAY": "1000",
       "HOMING_MAX_SPEED_MPS": "1000000", "HOMING_KM_PER_GIB": "0",
       "HOMING_PRODUCE_TIMEOUT_MS": "2000", "HOMING_AUDIT_STAY_SAMPLE": "1"}




def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + ".%03dZ" % (ms % 1000)


class Fleet:
    """Devices posting one report each at RATE per second in all, open loop:
    a report is sent on its schedule whatever became of the one before, and
    never again (its timestamp is used once). Every answer is counted; the
    202s are remembered as (device, ts)."""

    def __init__(self, api, tokens):
        self.api, self.tokens = api, tokens
        self.t0 = (int(time.time()) - 30 * 24 * 3600) * 1000
        self.sent = 0
        self.acked = {}              # device -> [ts_ms, ...] answered 202
        self.answers = defaultdict(int)
        self.accepted_at = []        # wall-clock times of 202s
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.threads = []

    def report(self, n):
        user = n % USERS
        k = n // USERS          # this user's k-th report, an hour apart
        # Three reports in one city, three in the next: a move every few.
        _, _, lat, lon = SITES[(user + k // 3) % len(SITES)]
        ts = self.t0 + k * HOUR_MS + user
        return f"d-{user}", {"device_id": f"d-{user}", "user_id": f"u-{user}", "lat": lat,
                             "lon": lon, "accuracy_m": 20.0, "ts": iso(ts)}, ts

    def post(self, n):
        device, body, ts = self.report(n)
        req = urllib.request.Request(self.api.url + "/v1/locations",
                                     data=json.dumps(body).encode(), method="POST")
        req.add_header("Content-Type", "application/json")
        req.add_header("Authorization", f"Bearer {self.tokens[device]}")
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                status = resp.status
        except urllib.error.HTTPError as e:
            status = e.code
        except OSError:
            status = "refused"
        with self.lock:
            self.sent += 1
            self.answers[status] += 1
            if status == 202:
                self.acked.setdefault(device, []).append(ts)
                self.accepted_at.append(time.time())

    def run(self, lane, lanes):
        # Each lane owns every lanes-th report, so a device's reports are
        # sent in order by one lane (a user's reports are in one partition).
        start = time.time()
        n = lane
        while not self.stopping.is_set():
            due = start + n / RATE
            delay = due - time.time()
            if delay > 0:
                time.sleep(delay)
            self.post(n)
            n += lanes

    def start(self, lanes=None):
        # One lane per user keeps each device in order and stalls only that
        # device when an answer is slow (a Kafka outage: 2 s a report).
        lanes = lanes or USERS
        self.threads = [threading.Thread(target=self.run, args=(i, lanes), daemon=True)
                        for i in range(lanes)]
        for t in self.threads:
            t.start()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(timeout=30)

    def longest_gap(self, since, until):
        """The longest time without a 202 within [since, until]."""
        with self.lock:
            times = sorted(t for t in self.accepted_at if since <= t <= until)
        edges = [since] + times + [until]
        return max(b - a for a, b in zip(edges, edges[1:]))


class Progress:
    """Samples the offsets the schedulers committed to PostgreSQL twice a
    second (nothing while PostgreSQL is down), to see decisions stall."""

    def __init__(self, dsn, group):
        self.dsn, self.group = dsn, group
        self.samples = []  # (time, committed)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stopping.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                    while not self.stopping.is_set():
                        n = conn.execute("SELECT coalesce(sum(next_offset), 0)"
                                         " FROM consumer_offsets WHERE group_id = %s",
                                         (self.group,)).fetchone()[0]
                        self.samples.append((time.time(), int(n)))
                        time.sleep(0.5)
            except psycopg.Error:
                time.sleep(0.5)

    def longest_stall(self, since, until):
        """The longest time within [since, until] in which the committed
        offsets did not advance (while reports kept coming)."""
        advances = [since]
        last = None
        for t, n in self.samples:
            if last is not None and n > last and since <= t <= until:
                advances.append(t)
            last = n
        advances.append(until)
        return max(b - a for a, b in zip(advances, advances[1:]))


def end_offsets(topic):
    consumer = Consumer({"bootstrap.servers": brokers(), "group.id": "test-watermarks"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in md.topics[topic].partitions}
    finally:
        consumer.close()


def restart_agent(agent):
    agent.kill()
    time.sleep(1)
    agent.start()


def restart(proc_holder):
    proc_holder.proc.send_signal(signal.SIGKILL)
    proc_holder.proc.wait()
    proc_holder.log.close()
    time.sleep(1)
    proc_holder.start()


def make_stores(root):
    """One store per site, each with the template; every snapshot's version 1
    (a 64 KiB write of its own on the template) at its home site."""
    template = make_template(root / "template-source", "tpl-1")
    for sid, *_ in SITES:
        (root / sid / "templates").mkdir(parents=True)
        shutil.copyfile(template, root / sid / "templates" / "tpl-1.qcow2")
    for i in range(USERS):
        make_overlay(root / home_of(i), "tpl-1", f"snap-u-{i}", 1, [(i * 65536, 65536, 0x20 + i)])


def home_of(user):
    return SITES[user % len(SITES)][0]


@pytest.fixture(scope="module")
def fleet_db(database, db, topics, tmp_path_factory):
    Homing(database, topics, "faults-load", "schedule", tmp_path_factory.mktemp("fl"),
           extra=ENV).migrate()
    seed_catalog(db)
    seed_fleet(db, [(f"snap-u-{i}", f"u-{i}", home_of(i)) for i in range(USERS)])
    return database


def test_promises_hold_under_load_while_every_part_fails_in_turn(fleet_db, topics, tmp_path):
    dsn, group = fleet_db, "faults-load"
    api = Homing(dsn, topics, group, "serve", tmp_path, extra=ENV).start()
    schedulers = [Homing(dsn, topics, group, "schedule", tmp_path, extra=ENV).start()
                  for _ in range(2)]
    relay = Homing(dsn, topics, group, "relay", tmp_path, extra=ENV).start()
    # One agent process serves the five sites (a store each) and moves the
    # images; every snapshot's version 1 is registered at its home.
    stores = tmp_path / "stores"
    make_stores(stores)
    agent = Agent(api, ",".join(s[0] for s in SITES), stores, tmp_path,
                  extra={"HOMING_AGENT_CONCURRENCY": "2"})
    for i in range(USERS):
        agent.register(f"snap-u-{i}", 1, dc=home_of(i))
    agent.start()
    tokens = {f"d-{i}": api.device_token(f"d-{i}", f"u-{i}", ttl="2h") for i in range(USERS)}
    fleet = Fleet(api, tokens)
    progress = Progress(dsn, group)
    faults = []  # (name, started, ended)

    def fault(name, act):
        time.sleep(STEADY_S)
        started = time.time()
        act()
        faults.append((name, started, time.time()))

    def pg_restart():
        stack("pg-down")
        time.sleep(4)
        stack("pg-up")

    def kafka_restart():
        stack("kafka-down")
        time.sleep(4)
        stack("kafka-up")

    def freeze(victim):
        # Longer than the group's session timeout (6 s): its partitions go to
        # the other scheduler, and then it wakes up believing it has them.
        victim.proc.send_signal(signal.SIGSTOP)
        time.sleep(10)
        victim.proc.send_signal(signal.SIGCONT)

    progress.thread.start()
    fleet.start()
    try:
        for r in range(ROUNDS):
            fault("SIGKILL a scheduler", lambda: restart(schedulers[r % 2]))
            fault("SIGKILL the relay", lambda: restart(relay))
            fault("SIGKILL the API", lambda: restart(api))
            fault("SIGKILL the agents", lambda: restart_agent(agent))
            fault("restart PostgreSQL", pg_restart)
            fault("restart the Kafka broker", kafka_restart)
            fault("SIGSTOP a scheduler 10 s (zombie)", lambda: freeze(schedulers[(r + 1) % 2]))
        time.sleep(STEADY_S)
    finally:
        fleet.stop()
    load_ended = time.time()

    db = psycopg.connect(dsn, autocommit=True)
    # Every process recovered by itself.
    for p in [api, relay, agent, *schedulers]:
        assert p.proc.poll() is None, "a process died and was not restarted by the test"
    # Pooled connections learnt of PostgreSQL's restart before their next
    # statement: no probe fails on a connection that is gone.
    for _ in range(8):
        status, _, body = api.get("/readyz")
        assert status == 200, body

    # Everything in the topic is consumed, each offset committed with its effects.
    ends = end_offsets(topics["locations"])
    in_topic = sum(ends.values())

    def committed():
        return dict(db.execute("SELECT partition, next_offset FROM consumer_offsets"
                               " WHERE group_id = %s AND topic = %s",
                               (group, topics["locations"])).fetchall())
    wait_for(lambda: all(committed().get(p, 0) == end for p, end in ends.items()),
             timeout=120, interval=0.5, what="the schedulers to decide every report")
    catch_up_s = time.time() - load_ended
    progress.stopping.set()

    acked = sum(len(v) for v in fleet.acked.values())
    assert acked > 0.5 * fleet.sent, dict(fleet.answers)

    # Every 202 is in Kafka.
    records = read_topic(topics["locations"], expect=in_topic, timeout=120)
    assert len(records) == in_topic
    stored = {(v["device_id"], v["ts"]) for _, v in records}
    lost = [(d, iso(ts)) for d, tss in fleet.acked.items() for ts in tss
            if (d, iso(ts)) not in stored]
    assert not lost, f"acknowledged reports missing from Kafka: {lost[:5]}"

    # ...and was applied: every device's last fix is at least its last 202.
    fixes = dict(db.execute("SELECT device_id, (extract(epoch FROM reported_at) * 1000)::bigint"
                            " FROM device_locations").fetchall())
    behind = [d for d, tss in fleet.acked.items() if fixes.get(d, 0) < max(tss)]
    assert not behind, f"devices whose last acknowledged report was not applied: {behind}"

    # No report decided twice; no transfer made twice.
    twice = db.execute("SELECT snapshot_id, report_ts, count(*) FROM decisions"
                       " GROUP BY snapshot_id, device_id, report_ts, outcome"
                       " HAVING count(*) > 1").fetchall()
    assert not twice, f"reports decided twice: {twice[:5]}"
    transfers = db.execute("SELECT count(*) FROM transfers").fetchone()[0]
    made_by_decisions = db.execute("SELECT count(DISTINCT transfer_id), count(transfer_id)"
                                   " FROM decisions WHERE transfer_id IS NOT NULL").fetchone()
    assert made_by_decisions == (transfers, transfers), \
        f"{transfers} transfers, decisions name {made_by_decisions}"
    assert transfers > 0, "the fleet caused no move: the scenario tests nothing"
    duplicates = db.execute("SELECT count(*) FROM (SELECT snapshot_id, to_dc, created_at"
                            " FROM transfers GROUP BY 1, 2, 3 HAVING count(*) > 1) d"
                            ).fetchone()[0]
    assert duplicates == 0

    # At most one active copy of each snapshot; once the agents are done, a
    # verified one whose file is in its datacenter's store.
    assert db.execute("SELECT count(*) FROM (SELECT snapshot_id FROM placements WHERE active"
                      " GROUP BY 1 HAVING count(*) > 1) t").fetchone()[0] == 0
    wait_for(lambda: db.execute("SELECT count(*) FROM transfers"
                                " WHERE state IN ('queued', 'running')").fetchone()[0] == 0,
             timeout=180, interval=1, what="the agents to finish the transfers")
    copies = db.execute("SELECT p.snapshot_id, p.datacenter_id, p.content_sha256 = v.content_sha256"
                        " FROM placements p JOIN snapshot_versions v"
                        "   ON v.snapshot_id = p.snapshot_id AND v.version = p.version"
                        " WHERE p.active").fetchall()
    assert len(copies) == USERS
    for snap, dc, verified in copies:
        assert verified, f"{snap} is active at {dc} with a digest that is not its version's"
        assert (stores / dc / "snapshots" / snap / "v1.qcow2").exists(), (snap, dc)
    moved = dict(db.execute("SELECT state, count(*) FROM transfers GROUP BY 1").fetchall())
    failed = db.execute("SELECT id, error FROM transfers WHERE state = 'failed'").fetchall()
    assert not failed, f"transfers failed: {failed[:5]}"

    # Every outbox row reached Kafka: jobs and audit events alike.
    wait_for(lambda: db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
             .fetchone()[0] == 0, timeout=60, what="the outbox to drain")
    audit_ids = {r[0] for r in db.execute("SELECT payload->>'id' FROM outbox WHERE topic = %s",
                                          (topics["audit"],))}
    events = read_topic(topics["audit"], expect=sum(end_offsets(topics["audit"]).values()),
                        timeout=120)
    assert audit_ids <= {e["id"] for _, e in events}
    job_ids = {r[0] for r in db.execute("SELECT id FROM transfers")}
    jobs = read_topic(topics["transfers"], expect=sum(end_offsets(topics["transfers"]).values()),
                      timeout=60)
    assert job_ids <= {j["transfer_id"] for _, j in jobs}

    dropped = dict(db.execute("SELECT reason, count FROM dropped_reports").fetchall())
    quarantined = db.execute("SELECT count(*) FROM dead_letters").fetchone()[0]
    decisions = db.execute("SELECT count(*) FROM decisions").fetchone()[0]
    lines = [f"fault suite under load: {ROUNDS} round(s), {RATE:g} reports/s from {USERS} devices,"
             f" agents at {len(SITES)} sites",
             f"  reports sent {fleet.sent}, answered {dict(fleet.answers)}",
             f"  acknowledged (202) {acked}; in Kafka {in_topic}; consumed and committed "
             f"{sum(committed().values())}; lost 0",
             f"  dropped with a reason {sum(dropped.values())} {dropped}; quarantined "
             f"{quarantined}",
             f"  decisions recorded {decisions}; transfers {transfers} {moved}; duplicates 0;"
             f" every active copy verified and in its store",
             f"  caught up {catch_up_s:.1f} s after the load stopped",
             "  fault                                  ingest gap (s)  decisions stalled (s)"]
    for name, started, ended in faults:
        window_end = ended + STEADY_S
        lines.append(f"  {name:<38} {fleet.longest_gap(started, window_end):14.1f}"
                     f"  {progress.longest_stall(started, window_end):21.1f}")
    text = "\n".join(lines) + "\n"
    results = Path(os.environ.get("HOMING_STATE_DIR", tmp_path)) / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "faults.txt").write_text(text)
    print(text)

    # Everyone stops cleanly (and the sanitizers found nothing).
    agent.stop()
    for p in [api, relay, *schedulers]:
        p.stop()
