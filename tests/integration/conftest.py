"""Fixtures for tests against the real stack.

tests/run brings up PostgreSQL and Kafka (deploy/stack up) and exports what
homing reads. Each test module gets its own database and its own topics, so
tests never see each other's data, and runs homing itself as a subprocess:
the sanitized build unless HOMING_BIN says otherwise.

Access control is on, as in production: every homing here gets a device
token key, and requests carry tokens minted by `homing token` (see
Homing.request: by default a report carries its own device's token and
anything else a viewer's; pass token=None for none, or another token).
"""
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

ROOT = Path(__file__).resolve().parents[2]
HOMING_BIN = os.environ.get("HOMING_BIN", str(ROOT / "build-san" / "homing"))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# The device-token key of every homing the tests run (32 bytes, base64).
DEVICE_TOKEN_KEYS = "kt:dGVzdHMtb25seS1kZXZpY2UtdG9rZW4ta2V5LTMyYnk="
AUTO = object()  # Homing.request: pick the token the request's kind needs


def admin_dsn():
    return os.environ["HOMING_PG_DSN"].replace("dbname=homing", "dbname=postgres")


class Homing:
    """One homing process with its own database, topics and HTTP port."""

    def __init__(self, dsn, topics, group, command, tmp_path, extra=None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = dict(os.environ)
        self.env.update({
            "HOMING_PG_DSN": dsn,
            "HOMING_LISTEN": f"127.0.0.1:{self.port}",
            "HOMING_TOPIC_LOCATIONS": topics["locations"],
            "HOMING_TOPIC_TRANSFERS": topics["transfers"],
            "HOMING_TOPIC_AUDIT": topics["audit"],
            "HOMING_CONSUMER_GROUP": group,
            "HOMING_TOPIC_PARTITIONS": "3",
            "HOMING_LOG_LEVEL": "info",
            "HOMING_DEVICE_TOKEN_KEYS": DEVICE_TOKEN_KEYS,
            # Warm replicas would add replicate transfers to every test's
            # snapshots (level 3 keeps one); the replica tests turn them on.
            "HOMING_REPLICA_PASS_S": "0",
        })
        self.env.update(extra or {})
        self.log_path = tmp_path / f"homing-{command}-{self.port}.log"
        self.command = command
        self.proc = None
        self.scheme = "http"
        self.tokens = {}

    def migrate(self):
        subprocess.run([HOMING_BIN, "migrate"], env=self.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)

    def start(self):
        # Appended: a process started again (the fault test) keeps its history.
        self.log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([HOMING_BIN, self.command], env=self.env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        while time.time() < deadline:
            assert self.proc.poll() is None, f"homing exited: {self.log_text()}"
            if self.command in ("serve", "standalone"):
                try:
                    if self.get("/healthz")[0] == 200:
                        return self
                except OSError:
                    pass
            elif "consuming" in self.log_text()[self.log_offset:]:
                return self
            elif self.command == "relay" and time.time() > deadline - 29:
                return self  # a relay waiting for the outbox lock says nothing
            time.sleep(0.1)
        raise AssertionError(f"homing did not start: {self.log_text()}")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                raise AssertionError("homing did not stop within 30 s of SIGTERM")
        # A sanitizer report makes the exit status non-zero.
        code = self.proc.returncode if self.proc else 0
        self.log.close()
        assert code == 0, f"homing exited with {code}: {self.log_text()[-4000:]}"

    def log_text(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def homing(self, *args, stdin=None):
        """Runs another homing command with this one's settings; its stdout."""
        return subprocess.run([HOMING_BIN, *args], env=self.env, check=True, input=stdin,
                              capture_output=True, text=True, timeout=60).stdout.strip()

    def device_token(self, device="d-1", user="u-1", ttl="1h"):
        key = ("device", device, user, ttl)
        if key not in self.tokens:
            self.tokens[key] = self.homing("token", "device", "--device", device,
                                           "--user", user, "--ttl", ttl)
        return self.tokens[key]

    def token(self, role="viewer", name=None):
        """An operator token with this role (made once per homing, cached)."""
        key = ("operator", role, name)
        if key not in self.tokens:
            self.tokens[key] = self.homing("token", "operator", "--role", role,
                                           "--name", name or f"test-{role}")
        return self.tokens[key]

    def _auto_token(self, path, data):
        path = path.split("?")[0]
        if path in ("/", "/healthz", "/readyz", "/v1/openapi.json") or \
                path.startswith("/dashboard/"):
            return None
        if path != "/v1/locations":
            return self.token("viewer")
        try:
            doc = json.loads(data or b"")
        except ValueError:
            doc = None
        first = doc[0] if isinstance(doc, list) and doc else doc
        if isinstance(first, dict) and isinstance(first.get("device_id"), str) \
                and isinstance(first.get("user_id"), str):
            try:
                return self.device_token(first["device_id"], first["user_id"])
            except subprocess.CalledProcessError:
                pass  # ids a token cannot hold: the report is refused anyway
        return self.device_token()

    def request(self, method, path, body=None, content_type="application/json", timeout=30,
                token=AUTO, headers=None):
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)
        if content_type and data is not None:
            req.add_header("Content-Type", content_type)
        if token is AUTO:
            token = self._auto_token(path, data)
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            req.add_header(name, value)
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=self.ssl_context()) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def ssl_context(self):
        return None

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body, **kw):
        return self.request("POST", path, body, **kw)

    def json(self, method, path, body=None, expect=200, **kw):
        """Sends, checks the status, returns (decoded body, headers)."""
        status, headers, raw = self.request(method, path, body, **kw)
        assert status == expect, f"{method} {path}: {status} {raw[:500]!r}"
        return (json.loads(raw) if raw else None), headers


@pytest.fixture(scope="module")
def database():
    """A fresh database for the module, dropped afterwards."""
    name = f"homing_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    dsn = os.environ["HOMING_PG_DSN"].replace("dbname=homing", f"dbname={name}")
    yield dsn
    with psycopg.connect(admin_dsn(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def new_topics():
    """Names of a test's own topics (`homing migrate` creates them)."""
    tag = uuid.uuid4().hex[:8]
    return {k: f"test.{tag}.{k}" for k in ("locations", "transfers", "audit")}


def delete_topics(names):
    """Deletes a test's topics when it is done. The broker otherwise keeps
    every test's partitions, and one restarted by a fault test loads them
    all before it shows a new topic: with a few thousand, half a minute in
    which a fresh homing's first reports are refused (503)."""
    admin = AdminClient({"bootstrap.servers": brokers(), "socket.timeout.ms": 5000})
    for future in admin.delete_topics(list(names), operation_timeout=10,
                                      request_timeout=15).values():
        try:
            future.result(20)
        except Exception:  # noqa: BLE001 - never created, or the broker is down
            pass


@pytest.fixture(scope="module")
def topics():
    names = new_topics()
    yield names
    delete_topics(names.values())


@pytest.fixture(scope="module")
def db(database):
    with psycopg.connect(database, autocommit=True) as conn:
        yield conn


def stack(action):
    """deploy/stack <action> on the test stack: pg-down, pg-up, kafka-down, kafka-up.
    After kafka-up it waits until the broker serves what homing needs, not
    only its port: the next test's producer must get its idempotence id and
    its consumer group a coordinator, which a restarted broker refuses while
    it loads its coordinators (seconds, with many tests' topics behind it)."""
    subprocess.run([str(ROOT / "deploy" / "stack"), action], check=True, env=os.environ,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=180)
    if action == "kafka-up":
        kafka_serving()


def kafka_serving(timeout=120):
    """Waits until an idempotent producer's message is acknowledged and a
    consumer group is given its partition."""
    topic = "test.ready"
    deadline = time.time() + timeout
    admin = AdminClient({"bootstrap.servers": brokers()})
    while time.time() < deadline:
        try:
            admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(10)
            break
        except Exception as e:  # noqa: BLE001 - exists already, or not yet
            if "TOPIC_ALREADY_EXISTS" in str(e):
                break
            time.sleep(1)
    producer = Producer({"bootstrap.servers": brokers(), "enable.idempotence": True})
    while time.time() < deadline:
        delivered = []
        producer.produce(topic, b"ready", on_delivery=lambda err, _: delivered.append(err))
        producer.flush(5)
        if delivered and delivered[0] is None:
            break
        time.sleep(0.5)
    else:
        raise AssertionError("the restarted broker does not acknowledge an idempotent producer")
    consumer = Consumer({"bootstrap.servers": brokers(), "group.id": f"ready-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest"})
    try:
        consumer.subscribe([topic])
        while time.time() < deadline:
            consumer.poll(0.5)
            if consumer.assignment():
                return
        raise AssertionError("the restarted broker gives a consumer group no partitions")
    finally:
        consumer.close()


def brokers():
    return os.environ["HOMING_KAFKA_BROKERS"]


def read_topic(topic, expect, timeout=30):
    """Reads a topic from the start with a real consumer until `expect`
    messages came or the time is up; returns (key, value) pairs."""
    consumer = Consumer({
        "bootstrap.servers": brokers(),
        "group.id": f"test-reader-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    })
    consumer.subscribe([topic])
    got = []
    deadline = time.time() + timeout
    try:
        while len(got) < expect and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is None or m.error():
                continue
            got.append((m.key().decode() if m.key() else None, json.loads(m.value())))
    finally:
        consumer.close()
    return got


def produce(topic, records):
    """The records as JSON, each keyed by its user (so a user's stay in order),
    through an idempotent producer; all of them acknowledged."""
    producer = Producer({"bootstrap.servers": brokers(), "enable.idempotence": True,
                         "acks": "all"})
    for r in records:
        producer.produce(topic, key=r["user_id"], value=json.dumps(r))
    assert producer.flush(30) == 0


def topic_message_count(topic):
    """Messages in all partitions of a topic, from the watermarks."""
    consumer = Consumer({"bootstrap.servers": brokers(), "group.id": "test-watermarks"})
    try:
        md = consumer.list_topics(topic, timeout=10)
        total = 0
        for p in md.topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            total += high - low
        return total
    finally:
        consumer.close()


def wait_for(predicate, timeout=30, interval=0.2, what="condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what}")


def now_rfc3339(offset_s=0):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + offset_s))


def report(user="u-1", device="d-1", lat=48.8566, lon=2.3522, accuracy=25, ts=None):
    return {"device_id": device, "user_id": user, "lat": lat, "lon": lon,
            "accuracy_m": accuracy, "ts": ts or now_rfc3339()}


# A small catalog at real places (city-level coordinates).
SITES = [
    ("t-paris", "Paris", 48.86, 2.35),
    ("t-frankfurt", "Frankfurt", 50.11, 8.68),
    ("t-tokyo", "Tokyo", 35.68, 139.69),
    ("t-virginia", "Ashburn", 39.04, -77.49),
    ("t-sydney", "Sydney", -33.87, 151.21),
]


def seed_catalog(db):
    for sid, city, lat, lon in SITES:
        db.execute("INSERT INTO datacenters (id, name, city, lat, lon, capacity_bytes)"
                   " VALUES (%s, %s, %s, %s, %s, 1099511627776)", (sid, city, city, lat, lon))
    db.execute("INSERT INTO templates (id, name, size_bytes) VALUES ('tpl-1', 'base', 1000)")
    db.execute("INSERT INTO template_replicas VALUES ('tpl-1', 't-tokyo'), ('tpl-1', 't-paris')")


def homing_with_catalog(db, dsn, topics, group, command, tmp_path, extra=None, log_lacks=()):
    """A module's homing (Homing's arguments) on a migrated database with the
    catalog of SITES, started; stopped when the module is done, and then its
    log must hold none of `log_lacks`. A fixture yields from it."""
    h = Homing(dsn, topics, group, command, tmp_path, extra=extra)
    h.migrate()
    seed_catalog(db)
    h.start()
    yield h
    h.stop()
    for line in log_lacks:
        assert line not in h.log_text()


def seed_snapshot(db, user, at, snapshot=None, size=500):
    snapshot = snapshot or f"snap-{user}"
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
               " VALUES (%s, %s, 'tpl-1', %s)", (snapshot, user, size))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, %s, 1, true)", (snapshot, at))
    return snapshot


def user_at(db, user, lat, lon):
    """The user's device d-<user> is at (lat, lon) now, as the ingest would store its fix."""
    db.execute("INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
               " reported_at, received_at) VALUES (%s, %s, %s, %s, 10, now(), now())"
               " ON CONFLICT (device_id) DO UPDATE SET lat = excluded.lat, lon = excluded.lon,"
               " reported_at = now()", (f"d-{user}", user, lat, lon))


def seed_fleet(db, fleet):
    """A fleet of (snapshot, user, datacenter) at sites that all hold the
    template, so every move costs the snapshot alone (1000 bytes)."""
    db.execute("INSERT INTO template_replicas SELECT 'tpl-1', id FROM datacenters"
               " ON CONFLICT DO NOTHING")
    with db.cursor() as cur:
        cur.executemany("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
                        " VALUES (%s, %s, 'tpl-1', 1000)", [(s, u) for s, u, _ in fleet])
        cur.executemany("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                        " VALUES (%s, %s, 1, true)", [(s, dc) for s, _, dc in fleet])
