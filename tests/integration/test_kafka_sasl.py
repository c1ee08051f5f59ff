"""homing against a Kafka that wants a login over TLS, as a company's cluster
does: a second broker of the test's own (KRaft, one node, the stack's Kafka
libraries), its certificate from a CA the test makes with openssl, users
and passwords (SASL/PLAIN: Debian 12's librdkafka 2.0.2 cannot log in to a
Kafka 4 broker with SCRAM, see README). homing gets the client settings
through --kafka-properties-file and --kafka-property: migrate creates the
topics, ingest's reports, the scheduler's decisions and the relay's jobs all
go through it; a wrong password stops every command at start-up within
seconds, saying so, and a property librdkafka does not know is refused."""
import json
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from conftest import (HOMING_BIN, ROOT, Homing, free_port, report, seed_catalog, seed_snapshot,
                      wait_for)

# Ports free now, not fixed ones: the broker starts in the middle of the
# suite, when a fixed port may be some client connection's local port (a
# clean-clone run failed with "Address already in use").
PORT = int(os.environ.get("HOMING_TEST_KAFKA_SASL_PORT", 0)) or free_port()
CONTROLLER_PORT = free_port()
while CONTROLLER_PORT == PORT:
    CONTROLLER_PORT = free_port()
BROKERS = f"127.0.0.1:{PORT}"
USER, PASSWORD = "homing", "homing-secret"


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(d):
    """A CA and the broker's certificate for 127.0.0.1, signed by it."""
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=homing test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
            "broker.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    # Kafka's PEM key store: the key (PKCS#8) and the certificate in one file.
    openssl("pkcs8", "-topk8", "-nocrypt", "-in", "broker.key", "-out", "broker.p8", cwd=d)
    (d / "broker-store.pem").write_text((d / "broker.p8").read_text() +
                                        (d / "broker.pem").read_text())


def client_settings(d, password=PASSWORD):
    return {"security.protocol": "SASL_SSL", "sasl.mechanisms": "PLAIN",
            "sasl.username": USER, "sasl.password": password,
            "ssl.ca.location": str(d / "ca.pem")}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """The broker: SASL_SSL (PLAIN) for clients and between brokers."""
    d = tmp_path_factory.mktemp("kafka-sasl")
    libs = Path(os.environ["HOMING_STATE_DIR"]) / "kafka" / "libs"
    assert (libs / ".complete").exists(), "deploy/stack up fetches Kafka's libraries first"
    make_certificates(d)
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
            'username="broker" password="broker-secret" '
            f'user_broker="broker-secret" user_{USER}="{PASSWORD}";')
    (d / "server.properties").write_text(f"""
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=127.0.0.1:{CONTROLLER_PORT}
listeners=SASL_SSL://127.0.0.1:{PORT},CONTROLLER://127.0.0.1:{CONTROLLER_PORT}
advertised.listeners=SASL_SSL://127.0.0.1:{PORT}
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,SASL_SSL:SASL_SSL
inter.broker.listener.name=SASL_SSL
sasl.enabled.mechanisms=PLAIN
sasl.mechanism.inter.broker.protocol=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config={jaas}
ssl.keystore.type=PEM
ssl.keystore.location={d}/broker-store.pem
ssl.truststore.type=PEM
ssl.truststore.location={d}/ca.pem
log.dirs={d}/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
min.insync.replicas=1
default.replication.factor=1
group.initial.rebalance.delay.ms=0
auto.create.topics.enable=false
""")
    java = ["java", "-Xmx256m", "-Xms256m",
            f"-Dlog4j2.configurationFile={ROOT / 'deploy' / 'kafka' / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={d / 'logs'}", "-cp", f"{libs}/*"]
    cluster = subprocess.run([*java, "kafka.tools.StorageTool", "random-uuid"], check=True,
                             capture_output=True, text=True, timeout=120).stdout.strip()
    subprocess.run([*java, "kafka.tools.StorageTool", "format", "--standalone", "-t", cluster,
                    "-c", str(d / "server.properties")],
                   check=True, capture_output=True, timeout=120)
    log = open(d / "broker.log", "w")
    proc = subprocess.Popen([*java, "kafka.Kafka", str(d / "server.properties")], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    admin = AdminClient({"bootstrap.servers": BROKERS, **client_settings(d)})
    try:
        def up():
            assert proc.poll() is None, (d / "broker.log").read_text()[-3000:]
            try:
                admin.list_topics(timeout=2)
                return True
            except Exception:
                return False
        wait_for(up, timeout=120, interval=1, what="the SASL_SSL broker")
        yield d
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def settings(d, password=PASSWORD):
    """homing's environment for the secured broker: a properties file, and the
    password as a property of its own (as an operator keeps secrets apart)."""
    props = d / f"kafka-{uuid.uuid4().hex[:6]}.properties"
    s = client_settings(d, password)
    props.write_text("# the company's cluster\n" + "".join(
        f"{k}={v}\n" for k, v in s.items() if k != "sasl.password"))
    return {"HOMING_KAFKA_BROKERS": BROKERS, "HOMING_KAFKA_PROPERTIES_FILE": str(props),
            "HOMING_KAFKA_PROPERTY": f"sasl.password={password}\nclient.id=homing-test"}


def read_secured(d, topic, expect, timeout=30):
    consumer = Consumer({"bootstrap.servers": BROKERS, "group.id": f"r-{uuid.uuid4().hex[:8]}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         **client_settings(d)})
    consumer.subscribe([topic])
    got, deadline = [], time.time() + timeout
    try:
        while len(got) < expect and time.time() < deadline:
            m = consumer.poll(0.5)
            if m is not None and not m.error():
                got.append((m.key().decode(), json.loads(m.value())))
    finally:
        consumer.close()
    return got


def test_ingest_scheduling_and_the_relay_work_through_sasl_over_tls(secured, database, db,
                                                                    topics, tmp_path):
    h = Homing(database, topics, f"sasl-{topics['locations']}", "standalone", tmp_path,
               extra={**settings(secured), "HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "1"})
    migrated = subprocess.run([HOMING_BIN, "migrate"], env=h.env, capture_output=True,
                              text=True, timeout=60)  # creates the topics on the secured broker
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    md = AdminClient({"bootstrap.servers": BROKERS, **client_settings(secured)}).list_topics(
        timeout=10)
    assert set(topics.values()) <= set(md.topics)
    seed_catalog(db)
    snapshot = seed_snapshot(db, "u-sasl", "t-tokyo")
    h.start()
    try:
        status, _, body = h.post("/v1/locations",
                                 report(user="u-sasl", device="d-sasl", lat=48.85, lon=2.29))
        assert status == 202, body
        located = read_secured(secured, topics["locations"], expect=1)
        assert [k for k, _ in located] == ["u-sasl"]
        transfer = wait_for(lambda: db.execute(
            "SELECT id FROM transfers WHERE snapshot_id = %s", (snapshot,)).fetchone(),
            what="the scheduler's transfer")[0]
        jobs = read_secured(secured, topics["transfers"], expect=1)
        assert [(k, v["transfer_id"]) for k, v in jobs] == [(snapshot, transfer)]
        wait_for(lambda: db.execute("SELECT count(*) = 0 FROM outbox WHERE sent_at IS NULL")
                 .fetchone()[0], what="the relay to publish everything")
    finally:
        h.stop()


@pytest.mark.parametrize("command", ["migrate", "serve", "schedule", "relay"])
def test_a_wrong_password_stops_a_command_at_start_up_saying_so(secured, database, topics,
                                                                tmp_path, command):
    Homing(database, topics, "sasl-wrong", "migrate", tmp_path,
           extra=settings(secured)).migrate()
    h = Homing(database, topics, "sasl-wrong", command, tmp_path,
               extra=settings(secured, password="not-the-password"))
    started = time.monotonic()
    result = subprocess.run([HOMING_BIN, command], env=h.env, capture_output=True, text=True,
                            timeout=60)
    took = time.monotonic() - started
    assert result.returncode != 0
    assert "the cluster refused us" in result.stderr and \
        "Invalid username or password" in result.stderr, result.stderr[-3000:]
    assert took < 15, f"{command} took {took:.1f} s to give up"


def test_a_property_librdkafka_does_not_know_is_refused(database, topics, tmp_path):
    h = Homing(database, topics, "sasl-bad", "migrate", tmp_path,
               extra={"HOMING_KAFKA_PROPERTY": "sasl.pasword=typo"})
    result = subprocess.run([HOMING_BIN, "migrate"], env=h.env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0
    assert "--kafka-property sasl.pasword" in result.stderr, result.stderr[-2000:]
    # homing's own properties are not the operator's to change.
    h.env["HOMING_KAFKA_PROPERTY"] = "enable.auto.commit=true"
    result = subprocess.run([HOMING_BIN, "migrate"], env=h.env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode != 0 and "enable.auto.commit is homing's own" in result.stderr
