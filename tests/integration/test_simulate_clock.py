"""homing simulate --post --clock-speed: a simulated fleet posted on a
compressed clock. Each report leaves when its simulated arrival comes, the
simulated clock running N times the wall clock, and keeps its simulated
timestamp (in the past, so ingest takes it); the scheduler judges the
flights by those timestamps with its own policy, so a trip is a move, not
an implausible speed."""
import datetime
import json
import math
import re
import subprocess

import pytest

from conftest import HOMING_BIN, Homing, read_topic, wait_for

CITIES = {"Paris": (48.86, 2.35, 2100000), "Berlin": (52.52, 13.40, 3600000),
          "Madrid": (40.42, -3.70, 3300000), "Rome": (41.90, 12.50, 2800000)}
DAYS = 20
SPEED = 115200  # 20 simulated days in 15 s
# Enough users, days and trips (a business trip every 20 days) that some fly.
FLEET = ["--users", "8", "--days", str(DAYS), "--seed", "3", "--stayers", "0",
         "--report-interval-s", "7200", "--commuters", "0", "--announced", "0"]


def km(a, b):
    (la1, lo1), (la2, lo2) = [(math.radians(x), math.radians(y)) for x, y in (a, b)]
    h = (math.sin((la2 - la1) / 2) ** 2
         + math.cos(la1) * math.cos(la2) * math.sin((lo2 - lo1) / 2) ** 2)
    return 2 * 6371 * math.asin(math.sqrt(h))


def nearest(lat, lon):
    return min(CITIES, key=lambda c: km((lat, lon), CITIES[c][:2]))


def ms(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    d = tmp_path_factory.mktemp("simclock")
    (d / "cities.csv").write_text("name,lat,lon,population\n" + "".join(
        f"{c},{lat},{lon},{pop}\n" for c, (lat, lon, pop) in CITIES.items()))
    # A start the compressed run allows (the clock must lag the wall clock),
    # the same for the run written to a file and the one posted.
    start = (datetime.datetime.now(datetime.timezone.utc).date()
             - datetime.timedelta(days=DAYS + 1)).isoformat()
    return d, start


def simulate(env, world, *args):
    d, start = world
    return subprocess.run([HOMING_BIN, "simulate", "--cities", str(d / "cities.csv"),
                           "--start", start, *FLEET, *args],
                          env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory, world):
    h = Homing(database, topics, f"test-{topics['locations']}", "standalone",
               tmp_path_factory.mktemp("simclock-homing"))
    h.migrate()
    # A datacenter in each city, the template everywhere, and each user's
    # snapshot at home (the city of its first report): any move is a trip's.
    proc = simulate(h.env, world, "--out", str(world[0] / "plan.jsonl"))
    assert proc.returncode == 0, proc.stderr
    home = {}
    for line in (world[0] / "plan.jsonl").read_text().splitlines():
        r = json.loads(line)
        if "restore" not in r:
            home.setdefault(r["user_id"], nearest(r["lat"], r["lon"]))
    for c, (lat, lon, _) in CITIES.items():
        db.execute("INSERT INTO datacenters (id, name, city, lat, lon, capacity_bytes)"
                   " VALUES (%s, %s, %s, %s, %s, 1099511627776)", (f"dc-{c}", c, c, lat, lon))
    db.execute("INSERT INTO templates (id, name, size_bytes) VALUES ('tpl-1', 'base', 1000)")
    db.execute("INSERT INTO template_replicas SELECT 'tpl-1', id FROM datacenters")
    for user, c in home.items():
        db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
                   " VALUES (%s, %s, 'tpl-1', 1000)", (f"snap-{user}", user))
        db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                   " VALUES (%s, %s, 1, true)", (f"snap-{user}", f"dc-{c}"))
    h.home = home
    h.start()
    yield h
    h.stop()


def test_reports_leave_at_the_compressed_pace_and_a_flight_is_a_move(homing, db, topics, world):
    lines = world[0] / "posted.jsonl"
    proc = simulate(homing.env, world, "--post", homing.url, "--clock-speed", str(SPEED),
                    "--out", str(lines))
    assert proc.returncode == 0, proc.stderr
    assert lines.read_text() == (world[0] / "plan.jsonl").read_text()
    reports = [json.loads(line) for line in lines.read_text().splitlines()
               if '"restore"' not in line]
    n = len(reports)
    assert n > 500
    assert f"posted {n} reports" in proc.stderr and f"{n} accepted" in proc.stderr, proc.stderr
    assert "0 sent over a second behind" in proc.stderr, proc.stderr
    assert f"runs {SPEED} times the wall clock" in proc.stderr, proc.stderr
    assert f"simulated day {DAYS} of {DAYS}" in proc.stderr, proc.stderr

    # The pace: the run lasts its simulated span over the speed, not less
    # (nothing behind its time, above; the run also counts the last answers' wait).
    t0 = ms(world[1] + "T00:00:00Z")
    last = max(ms(r["received_at"]) for r in reports)
    took = float(re.search(r"posted \d+ reports and trips to \S+ in ([0-9.]+) s \(",
                           proc.stderr).group(1))
    assert took >= (last - t0) / 1000 / SPEED - 0.2, proc.stderr

    # Every report reached the topic with its simulated time, in the past of
    # when ingest received it, and ingest received each at its time on the
    # compressed clock: the wall clock's distance from the first is the
    # simulated one's over the speed, a little later at most (a loaded
    # machine's homing reads a request late).
    got = [v for _, v in read_topic(topics["locations"], n)]
    assert sorted((v["device_id"], v["ts"]) for v in got) == sorted(
        (r["device_id"], r["ts"]) for r in reports)
    assert all(ms(v["ts"]) <= ms(v["received_at"]) for v in got)
    first = min(got, key=lambda v: ms(v["received_at"]))
    for v in got:
        wall = (ms(v["received_at"]) - ms(first["received_at"])) / 1000
        simulated = (ms(v["ts"]) - ms(first["ts"])) / 1000 / SPEED
        assert simulated - 0.2 <= wall <= simulated + 5, (v, first)

    # The scheduler read them all: no flight was too fast for it, and a
    # snapshot followed its user to another city and back or on.
    wait_for(lambda: db.execute("SELECT coalesce(sum(next_offset), 0) FROM consumer_offsets")
             .fetchone()[0] >= n, timeout=60, what="the scheduler to read every report")
    dropped = dict(db.execute("SELECT reason, count FROM dropped_reports").fetchall())
    assert "implausible_speed" not in dropped, dropped
    moves = db.execute("SELECT user_id, from_dc, to_dc, report_lat, report_lon FROM decisions"
                       " WHERE outcome = 'move' ORDER BY id").fetchall()
    away = [m for m in moves if m[1] == f"dc-{homing.home[m[0]]}"]
    assert away, moves
    for user, _, to_dc, lat, lon in away:
        assert to_dc == f"dc-{nearest(lat, lon)}" != f"dc-{homing.home[user]}"


def test_bad_clock_settings_are_refused_and_post_nothing(homing, world):
    d, _ = world
    base = [HOMING_BIN, "simulate", "--cities", str(d / "cities.csv"), *FLEET]
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    for args, says in (
            (["--clock-speed", "0"], "--clock-speed wants"),
            (["--clock-speed", "0.5"], "--clock-speed wants"),
            (["--clock-speed", "fast"], "--clock-speed wants"),
            (["--clock-speed", "360", "--rate", "10"], "not both"),
            (["--clock-speed", "360", "--start", today], "--start is too late")):
        proc = subprocess.run([*base, "--post", homing.url, *args], env=homing.env,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and says in proc.stderr, (args, proc.stderr)
        assert "posted" not in proc.stderr
    proc = subprocess.run([*base, "--clock-speed", "360"], env=homing.env,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "give --post URL" in proc.stderr, proc.stderr


def test_a_fleet_stopped_by_sigterm_says_what_it_posted_and_where_its_clock_got(homing, world):
    d, start = world
    proc = subprocess.Popen([HOMING_BIN, "simulate", "--cities", str(d / "cities.csv"),
                             "--start", start, *FLEET, "--post", homing.url,
                             "--clock-speed", "7200"],  # a simulated day every 12 s
                            env=homing.env, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "simulated day 2 of" in line:
            break
    proc.terminate()
    seen += proc.stderr.readlines()
    assert proc.wait(timeout=30) == 143, seen
    said = "".join(seen)
    posted = re.search(r"posted (\d+) reports and trips to \S+ in [0-9.]+ s \([0-9.]+ a second\):"
                       r" (\d+) accepted", said)
    assert posted and int(posted.group(1)) > 0 and posted.group(1) == posted.group(2), said
    stopped = re.search(r"stopped by Terminated at simulated (\S+)", said)
    assert stopped, said
    # On day 2 of the run, not at its end.
    day = (ms(stopped.group(1)) - ms(start + "T00:00:00Z")) / 86400000
    assert 1 <= day < 3, said
    assert "users (" not in said  # no summary of a fleet it did not finish
