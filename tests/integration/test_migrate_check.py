"""`homing migrate --check` says whether PostgreSQL's schema and Kafka's
topics are what this homing expects, changing nothing (exit 0 as expected,
1 not); `--create-topics=false` leaves the topics to whoever manages them
and fails, naming them, while one is missing."""
import subprocess

import psycopg
from confluent_kafka.admin import AdminClient

from conftest import HOMING_BIN, Homing, brokers


def run(h, *args):
    return subprocess.run([HOMING_BIN, "migrate", *args], env=h.env, capture_output=True,
                          text=True, timeout=120)


def existing_topics():
    return set(AdminClient({"bootstrap.servers": brokers()}).list_topics(timeout=10).topics)


def test_check_changes_nothing_and_says_what_differs(database, topics, tmp_path):
    h = Homing(database, topics, "check", "migrate", tmp_path)
    before = run(h, "--check")
    assert before.returncode == 1, before.stderr[-2000:]
    assert before.stdout == "schema: NOT as expected\ntopics: NOT as expected\n"
    assert "migration 001_core.sql is not applied" in before.stderr
    assert f"topic {topics['audit']} is missing" in before.stderr
    with psycopg.connect(database) as conn:
        assert conn.execute("SELECT to_regclass('schema_migrations')").fetchone()[0] is None
    assert not set(topics.values()) & existing_topics()

    # Without creating topics: the schema is migrated, the missing topics stop it.
    managed = run(h, "--create-topics=false")
    assert managed.returncode == 1
    assert "3 topics are missing and --create-topics=false" in managed.stderr
    assert not set(topics.values()) & existing_topics()

    assert run(h).returncode == 0
    after = run(h, "--check")
    assert after.returncode == 0, after.stderr[-2000:]
    assert after.stdout == "schema: as expected\ntopics: as expected\n"
    assert run(h, "--create-topics=false").returncode == 0


def test_an_applied_migration_this_homing_lacks_is_a_difference(database, topics, tmp_path):
    h = Homing(database, topics, "check", "migrate", tmp_path)
    assert run(h).returncode == 0
    with psycopg.connect(database, autocommit=True) as conn:
        conn.execute("INSERT INTO schema_migrations (version, name) VALUES (999, '999_future.sql')")
    result = run(h, "--check")
    assert result.returncode == 1
    assert result.stdout.startswith("schema: NOT as expected\n")
    assert "999_future.sql is applied but unknown to this homing" in result.stderr
