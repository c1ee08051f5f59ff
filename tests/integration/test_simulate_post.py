"""homing simulate --post: a simulated fleet's reports sent to ingest as
phones send them (one report a request, each with its own device token),
open loop at a target rate; every report reaches the locations topic."""
import json
import subprocess

import pytest

from conftest import HOMING_BIN, Homing, read_topic, topic_message_count


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "simpost", "serve", tmp_path_factory.mktemp("simpost"))
    h.migrate()
    h.start()
    yield h
    h.stop()


def simulate(homing, tmp_path, *args, env=None):
    return subprocess.run([HOMING_BIN, "simulate", "--cities", str(tmp_path / "cities.csv"),
                           "--users", "4", "--days", "1", "--seed", "7",
                           # reports only: trips announced for 2026-01 would be refused
                           "--commuters", "0", "--announced", "0", *args],
                          env=env or homing.env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def cities(tmp_path):
    (tmp_path / "cities.csv").write_text(
        "name,lat,lon,population\nParis,48.86,2.35,2100000\nLyon,45.76,4.84,520000\n"
        "Berlin,52.52,13.40,3600000\n")


def test_every_report_reaches_the_topic_with_its_device_token(homing, topics, tmp_path, cities):
    lines = tmp_path / "fleet.jsonl"
    proc = simulate(homing, tmp_path, "--post", homing.url, "--rate", "200", "--out", str(lines))
    assert proc.returncode == 0, proc.stderr
    reports = [json.loads(line) for line in lines.read_text().splitlines()
               if '"restore"' not in line]
    n = len(reports)
    assert n > 20
    assert f"posted {n} reports" in proc.stderr and f"{n} accepted" in proc.stderr, proc.stderr
    # The rate is held: not faster than 200 a second, and nothing fell behind
    # its time (the rate over the whole run also counts the last answers' wait).
    rate = float(proc.stderr.split(" s (")[1].split(" a second")[0])
    assert rate <= 205, proc.stderr
    assert "0 sent over a second behind" in proc.stderr
    got = read_topic(topics["locations"], n)
    assert len(got) == n
    sent = sorted((r["device_id"], r["ts"]) for r in reports)
    assert sorted((v["device_id"], v["ts"]) for _, v in got) == sent


def test_a_wrong_key_is_refused_and_says_so(homing, topics, tmp_path, cities):
    before = topic_message_count(topics["locations"])
    other_key = "other:b3RoZXItdGVzdHMtZGV2aWNlLXRva2VuLWtleS0zMmJ5dGVz"
    env = dict(homing.env, HOMING_DEVICE_TOKEN_KEYS=other_key)
    proc = simulate(homing, tmp_path, "--post", homing.url, "--rate", "500", env=env)
    assert proc.returncode == 1, proc.stderr
    assert " 0 accepted" in proc.stderr and "refused" in proc.stderr
    assert topic_message_count(topics["locations"]) == before


def test_bad_post_settings_are_refused(homing, tmp_path, cities):
    for args in (["--rate", "0"], ["--in-flight", "0"]):
        proc = simulate(homing, tmp_path, "--post", homing.url, *args)
        assert proc.returncode == 2, proc.stderr
    env = dict(homing.env)
    env.pop("HOMING_DEVICE_TOKEN_KEYS")
    proc = simulate(homing, tmp_path, "--post", homing.url, env=env)
    assert proc.returncode == 2 and "device-token keys" in proc.stderr
