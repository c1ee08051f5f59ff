"""homing replay over the real locations topic: reports posted through
ingest, decided live by a running scheduler, then replayed from Kafka with
the catalog read from PostgreSQL. The replay's homing policy queues the same
move, from the same report, as the live scheduler did; a range of offsets
replays only that range; and nothing is written to PostgreSQL or published."""
import json
import subprocess
import time

import pytest

from conftest import (HOMING_BIN, homing_with_catalog, report, seed_snapshot, topic_message_count,
                      wait_for)
from replay_files import HOUR, T0, history, report_line, restore_line, rfc3339


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "replay", "standalone",
                                   tmp_path_factory.mktemp("replay"))


@pytest.fixture(scope="module")
def posted(homing, db):
    """A user at home in Paris flies to Tokyo (14 h later, within the speed
    limit) and stays: four reports 10 minutes apart, the fourth after the
    30-minute dwell. The live scheduler moves the snapshot on that one."""
    seed_snapshot(db, "u-trip", "t-paris")
    now = int(time.time())
    reports = [report(user="u-trip", device="d-trip", lat=48.86, lon=2.35,
                      ts=rfc3339(now - 20 * HOUR))]
    reports += [report(user="u-trip", device="d-trip", lat=35.68, lon=139.69,
                       ts=rfc3339(now - 6 * HOUR + i * 600)) for i in range(4)]
    for r in reports:  # one at a time, in order, as a phone sends them
        homing.json("POST", "/v1/locations", r, expect=202)
    live = wait_for(lambda: db.execute(
        "SELECT from_dc, to_dc, report_ts FROM decisions"
        " WHERE snapshot_id = 'snap-u-trip' AND outcome = 'move'").fetchall(),
        what="the live scheduler's move")
    return reports, live


def state(db, topics):
    counts = db.execute(
        "SELECT (SELECT count(*) FROM decisions), (SELECT count(*) FROM transfers),"
        " (SELECT count(*) FROM outbox),"
        " (SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets),"
        " (SELECT count(*) FROM snapshot_policy_state), (SELECT count(*) FROM device_locations)"
    ).fetchone()
    return counts, topic_message_count(topics["transfers"]), topic_message_count(topics["audit"])


def settled(db, topics):
    """The state, once two looks a second apart agree."""
    first = state(db, topics)
    time.sleep(1)
    return first if state(db, topics) == first else None


def replay(homing, tmp_path, *args):
    events, figures = tmp_path / "events.jsonl", tmp_path / "figures.json"
    out = homing.homing("replay", "--history", "kafka", "--events", str(events),
                        "--json", str(figures), *args)
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    doc = json.loads(figures.read_text())
    return out, lines, {p["name"]: p for p in doc["policies"]}, doc


def test_replay_of_the_topic_queues_the_live_scheduler_s_move(homing, db, topics, posted,
                                                               tmp_path):
    reports, live = posted
    wait_for(lambda: state(db, topics)[2] > 0, what="the live move's audit events")
    before = wait_for(lambda: settled(db, topics), what="the live side at rest")
    out, events, figures, doc = replay(homing, tmp_path)
    assert state(db, topics) == before, "the replay wrote to PostgreSQL or published"

    assert doc["users"] == 1 and doc["reports"] == len(reports)
    assert doc["measured_at"] == "reports"  # the topic holds no restores
    [(from_dc, to_dc, report_ts)] = live
    [queued] = [e for e in events if e["policy"] == "homing" and e["event"] == "queued"]
    assert (queued["from"], queued["to"]) == (from_dc, to_dc) == ("t-paris", "t-tokyo")
    assert queued["ts"].replace(".000Z", "Z") == rfc3339(report_ts.timestamp())
    assert queued["reason"] == "closer" and queued["dwell_s"] == 1800
    assert figures["homing"]["transfers"] == 1
    # The naive policy moves on the first report from Tokyo; the oracle is there at once.
    [naive] = [e for e in events if e["policy"] == "naive" and e["event"] == "queued"]
    assert naive["ts"].replace(".000Z", "Z") == reports[1]["ts"]
    assert figures["oracle"]["transfers"] == 1 and figures["home"]["transfers"] == 0
    assert figures["oracle"]["reports"]["mean_km"] < figures["homing"]["reports"]["mean_km"]
    assert "| homing" in out


def test_a_range_of_offsets_replays_only_that_range(homing, posted, tmp_path):
    # The user's reports all sit in one partition (the key is the user): 0:2
    # is Paris and the first Tokyo report, too short a stay to move.
    _, events, figures, doc = replay(homing, tmp_path, "--offsets", "0:2")
    assert doc["reports"] == 2
    assert figures["homing"]["transfers"] == 0
    assert figures["naive"]["transfers"] == 1
    assert [e["to"] for e in events if e["event"] == "queued"] == ["t-tokyo"]


def test_a_setting_changes_the_replay_not_the_live_policy(homing, posted, tmp_path):
    # A 2-hour dwell: the half hour recorded in Tokyo is not enough.
    _, _, figures, _ = replay(homing, tmp_path, "--dwell-s", "7200")
    assert figures["homing"]["transfers"] == 0
    assert figures["homing"]["settings"]["dwell_s"] == 7200


def test_bad_ranges_are_refused(homing):
    for args in (["--offsets", "5:2"], ["--offsets", "x"], ["--since", "yesterday"]):
        proc = subprocess.run([HOMING_BIN, "replay", "--history", "kafka", *args],
                              env=homing.env, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, proc.stderr


def test_a_simulated_fleet_replayed_moves_as_the_live_scheduler_moved(homing, db, topics, posted,
                                                                      tmp_path):
    """30 users over 10 days in the five test cities, posted through ingest
    with their device tokens; the live scheduler decides as they arrive.
    Replayed from the topic with transfers that never arrive (no agent runs
    here either), every move the replay's homing policy queues is one the
    live scheduler made, from the same report, and no other."""
    cities = tmp_path / "cities.csv"
    cities.write_text("name,lat,lon,population\nParis,48.86,2.35,2100000\n"
                      "Frankfurt,50.11,8.68,760000\nTokyo,35.68,139.69,13900000\n"
                      "Ashburn,39.04,-77.49,1000000\nSydney,-33.87,151.21,5300000\n")
    start = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 12 * 86400))
    fleet = tmp_path / "fleet.jsonl"
    # the fleet as it was before commuters and announced trips: reports and restores
    plain = ["--commuters", "0", "--announced", "0"]
    subprocess.run([HOMING_BIN, "simulate", "--cities", str(cities), "--users", "30", "--days",
                    "10", "--seed", "3", "--start", start, "--out", str(fleet), *plain],
                   env=homing.env, check=True, capture_output=True, timeout=120)
    reports = [json.loads(line) for line in fleet.read_text().splitlines()
               if not line.startswith('{"restore"')]
    # Each user's snapshot starts where the replay starts it: nearest their first report.
    first = {}
    for r in reports:
        first.setdefault(r["user_id"], (r["lat"], r["lon"]))
    for user, (lat, lon) in first.items():
        [home] = db.execute("SELECT id FROM datacenters ORDER BY"
                            " (lat - %s) ^ 2 + ((lon - %s) * cos(radians(%s))) ^ 2 LIMIT 1",
                            (lat, lon, lat)).fetchone()
        seed_snapshot(db, user, home)
    proc = subprocess.run([HOMING_BIN, "simulate", "--cities", str(cities), "--users", "30",
                           "--days", "10", "--seed", "3", "--start", start, "--post", homing.url,
                           "--rate", "1000", *plain], env=homing.env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and f"{len(reports)} accepted" in proc.stderr, proc.stderr
    users = sorted(first)
    live_moves = lambda: db.execute(  # noqa: E731
        "SELECT user_id, from_dc, to_dc, report_ts FROM decisions WHERE outcome = 'move'"
        " AND user_id = ANY(%s) ORDER BY user_id, report_ts", (users,)).fetchall()
    wait_for(lambda: settled(db, topics) and topic_message_count(topics["locations"]) >=
             len(reports), timeout=120, what="the live scheduler done with the fleet")
    live = [(u, f, t, rfc3339(ts.timestamp())) for u, f, t, ts in live_moves()]
    assert len(live) >= 10, live  # trips between the cities happened

    _, events, _, _ = replay(homing, tmp_path, "--bandwidth", "0.000001", "--policies", "homing")
    replayed = sorted((e["user_id"], e["from"], e["to"], e["ts"][:19] + "Z") for e in events
                      if e["event"] == "queued" and e["user_id"] in first)
    assert replayed == sorted((u, f, t, ts[:19] + "Z") for u, f, t, ts in live)


def test_a_sweep_says_which_settings_meet_each_goal(tmp_path):
    """A file and a CSV catalog, no stack: one user at x takes a trip to y
    (222 km) and one to z (4,450 km), restoring 111 km north of each. A
    margin of 0 follows both trips (near the oracle, far under the fixed
    home); a margin of 5,000 km never moves (the fixed home, no transfers).
    The table says which swept settings meet which goal, and the oracle's
    own ratio to the fixed home; --json gives every engine policy's ratios."""
    catalog = tmp_path / "sites.csv"
    catalog.write_text("id,lat,lon\nx,0,0\ny,0,2\nz,0,40\n")
    hist = history(tmp_path, 40)
    figures = tmp_path / "figures.json"
    out = subprocess.run([HOMING_BIN, "replay", "--history", str(hist), "--catalog",
                          str(catalog), "--snapshot-gib", "1", "--json", str(figures),
                          "--sweep-x", "move-margin-m=0,5000000"],
                         capture_output=True, text=True, check=True).stdout
    goals = out[out.index("the swept settings that meet each goal:"):].splitlines()
    assert goals[1].startswith("  mean distance / the oracle's <= 1.5: move-margin-m=0 (")
    assert "move-margin-m=5e+06" not in goals[1]
    assert goals[2].startswith("  mean distance / fixed home's <= 0.5: move-margin-m=0 (")
    assert "move-margin-m=5e+06" not in goals[2]
    assert goals[3] == "  transfers / the naive policy's <= 0.2: move-margin-m=5e+06 (0.000)"
    policies = {p["name"]: p for p in json.loads(figures.read_text())["policies"]}
    oracle, home = (policies[n]["restores"]["mean_km"] for n in ("oracle", "home"))
    assert f"the oracle's mean distance / fixed home's     {oracle / home:.3f}" in out
    never = policies["move-margin-m=5e+06"]
    assert never["transfers"] == 0 and never["goals"]["naive_transfers"] == 0
    assert never["goals"]["home_distance"] == pytest.approx(1.0)
    follows = policies["move-margin-m=0"]
    assert follows["transfers"] == 4 == policies["naive"]["transfers"]
    assert follows["goals"]["oracle_distance"] == pytest.approx(1.0, rel=0.01)
    assert "goals" not in policies["oracle"]


def test_prestaging_lowers_the_mean_restore_distance_of_announced_trips(tmp_path):
    """A file and a CSV catalog, no stack: one user at x announces three
    trips to z (4,450 km) a week ahead, lands at each, reports once and
    restores 30 minutes after landing, then returns. homing has not moved
    by then (one report is not a stay): each restore is 4,450 km from x.
    homing+prestage has a copy at z from before each landing: those
    restores are at z, for three copies of 1 GiB and their deltas."""
    catalog = tmp_path / "sites.csv"
    catalog.write_text("id,lat,lon\nx,0,0\nz,0,40\n")
    lines = []
    for week in range(3):
        base = week * 7 * 24
        lines.append(json.dumps({"trip": {
            "user_id": "u-1", "device_id": "d-1", "announced_at": rfc3339(T0 + base * HOUR),
            "lat": 0, "lon": 40, "arrive_at": rfc3339(T0 + (base + 48) * HOUR),
            "return_at": rfc3339(T0 + (base + 72) * HOUR)}}))
        lines += [report_line(base + h, 0) for h in range(0, 40)]
        lines.append(report_line(base + 48.2, 40))
        lines.append(restore_line(base + 48.5, 0, 40))
        lines += [report_line(base + h, 0) for h in range(80, 90)]
    hist = tmp_path / "history.jsonl"
    hist.write_text("\n".join(lines) + "\n")
    figures = tmp_path / "figures.json"
    out = subprocess.run([HOMING_BIN, "replay", "--history", str(hist), "--catalog",
                          str(catalog), "--snapshot-gib", "1", "--json", str(figures),
                          "--policies", "homing,homing+prestage"],
                         capture_output=True, text=True, check=True).stdout
    policies = {p["name"]: p for p in json.loads(figures.read_text())["policies"]}
    homing, prestaged = policies["homing"], policies["homing+prestage"]
    assert homing["restores"]["n"] == 3 == prestaged["restores"]["n"]
    assert homing["restores"]["mean_km"] == pytest.approx(4452.8, rel=0.01)
    assert prestaged["restores"]["mean_km"] < 1
    assert "prestage" not in homing
    p = prestaged["prestage"]
    assert p["copies"] == 3 and p["used"] == 3 and p["bytes"] == 3 * 2 ** 30
    assert p["saved_km"] == pytest.approx(4452.8, rel=0.01)
    assert "pre-staging (3 trips announced in the history" in out
    assert "copies pre-staged: 3, 3 used" in out
