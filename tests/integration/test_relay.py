"""The outbox relay against the real broker and database:
- a row Kafka refuses for its own sake (too large) is parked after its
  attempts, visibly, and the rows behind it are published;
- relays that lose their PostgreSQL sessions never publish side by side:
  leadership lives in the transaction that publishes, so a silent reconnect
  cannot leave two leaders (which would publish every row twice)."""
import json
import secrets
import time
import urllib.request

import pytest

from conftest import Homing, free_port, read_topic, topic_message_count, wait_for


@pytest.fixture(scope="module")
def prepared(database, topics, tmp_path_factory):
    Homing(database, topics, "relay", "relay", tmp_path_factory.mktemp("relay")).migrate()
    return database


def outbox(db, topic, key, payload):
    return db.execute("INSERT INTO outbox (topic, key, payload) VALUES (%s, %s, %s) RETURNING id",
                      (topic, key, json.dumps(payload))).fetchone()[0]


def scrape(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


def test_a_row_kafka_refuses_is_parked_and_the_rows_behind_it_go_on(prepared, db, topics,
                                                                     tmp_path):
    topic = topics["audit"]
    before = outbox(db, topic, "k", {"id": "before"})
    # Larger than the producer's message.max.bytes (1,000,000): refused at once.
    poison = outbox(db, topic, "k", {"id": "poison", "blob": secrets.token_hex(750_000)})
    after = outbox(db, topic, "k", {"id": "after"})
    port = free_port()
    relay = Homing(prepared, topics, "relay", "relay", tmp_path,
                   extra={"HOMING_OUTBOX_MAX_ATTEMPTS": "3",
                          "HOMING_METRICS_LISTEN": f"127.0.0.1:{port}"}).start()
    try:
        wait_for(lambda: db.execute("SELECT parked_at IS NOT NULL FROM outbox WHERE id = %s",
                                    (poison,)).fetchone()[0], timeout=30,
                 what="the refused row to be parked")
        attempts, parked, sent, error = db.execute(
            "SELECT attempts, parked_at IS NOT NULL, sent_at IS NOT NULL, last_error"
            " FROM outbox WHERE id = %s", (poison,)).fetchone()
        assert (attempts, parked, sent) == (3, True, False)
        assert "too long" in error.lower()
        for published in (before, after):
            wait_for(lambda: db.execute("SELECT sent_at IS NOT NULL FROM outbox WHERE id = %s",
                                        (published,)).fetchone()[0], timeout=15,
                     what="the rows around it to be published")
        ids = [v["id"] for _, v in read_topic(topic, expect=2)]
        assert ids == ["before", "after"]
        wait_for(lambda: "homing_outbox_parked_rows 1" in scrape(port), timeout=15,
                 what="the parked row in /metrics")
        assert f"outbox row {poison} for {topic} parked after 3 refusals" in relay.log_text()
    finally:
        relay.stop()
        db.execute("DELETE FROM outbox WHERE id = %s", (poison,))


def test_relays_that_lose_their_sessions_never_publish_side_by_side(prepared, db, topics,
                                                                      tmp_path):
    topic = topics["transfers"]
    relays = [Homing(prepared, topics, "relay", "relay", tmp_path).start() for _ in range(2)]
    try:
        sent = 0
        for round_ in range(6):
            for i in range(150):
                outbox(db, topic, f"k{i % 7}", {"transfer_id": sent, "round": round_})
                sent += 1
                if i % 10 == 0:
                    time.sleep(0.02)
            wait_for(lambda: db.execute("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                     .fetchone()[0] == 0, timeout=60, what="the outbox to drain")
            # Between batches, every session of the relays' database ends:
            # they reconnect silently, and one of them may lead again.
            db.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                       " WHERE datname = current_database() AND pid <> pg_backend_pid()")
        # At least once allows a resend when a batch is cut off; none was
        # (the outbox was drained at each cut), so each row is there once.
        assert topic_message_count(topic) == sent
        got = sorted(v["transfer_id"] for _, v in read_topic(topic, expect=sent, timeout=60))
        assert got == list(range(sent))
    finally:
        for r in relays:
            r.stop()
