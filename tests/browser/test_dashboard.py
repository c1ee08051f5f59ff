"""The dashboard in a real browser: Debian's headless Chromium, driven by
playwright-core (tests/browser/dashboard.mjs), against homing on the real
stack. The map shows the datacenters and the transfers in flight; a drain
clicked on the page reaches the API (the datacenter is draining in
PostgreSQL, with the audit event of the operator who clicked); a snapshot's
two versions compared side by side (configuration keys, a bar of the
changed disk regions) and a new version composed of chosen items, after a
confirmation that says what will change (the composition is queued in
PostgreSQL with exactly those items, and its audit event names who
clicked); an evacuation planned and run; a failover rehearsed and cleaned
up; a down datacenter's failover (each snapshot activated from its replica
with the versions lost, or unrecoverable), then the site activated and
failed back from the page; and the screenshots are kept in the results
folder. The "Placement quality" page draws stored replay reports: the
policies' table, one point per policy on the trade-off chart with the
Pareto front, and the CDF and transfers per day when the report has them
(the replay's older count of transfers by day too; "not in this report"
when not)."""
import csv
import importlib.util
import json
import os
import random
import re
import subprocess
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("integration_conftest",
                                               ROOT / "tests" / "integration" / "conftest.py")
fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fixtures)
database, topics, db = fixtures.database, fixtures.topics, fixtures.db  # pytest fixtures

RESULTS = Path(os.environ.get("HOMING_STATE_DIR", ROOT / ".state" / "test")) / "results"
TARGET = "aws-eu-west-3"  # Paris: drained from the page
FAILED = "gcp-europe-west3"  # Frankfurt: declared down, its failover seen from the page
REPLICA_SITE = "aws-eu-central-1"
IN_FLIGHT = [("aws-ap-northeast-1", "aws-eu-west-3", "running"),
             ("aws-us-east-1", "aws-eu-west-3", "queued"),
             ("aws-sa-east-1", "aws-us-east-1", "queued"),
             ("azure-australiaeast", "aws-ap-northeast-1", "running")]


def load_demo_catalog(db):
    with open(ROOT / "deploy" / "demo" / "datacenters.csv") as f:
        rows = list(csv.DictReader(f))
    rng = random.Random(7)
    for r in rows:
        capacity = int(r["capacity_bytes"])
        db.execute("INSERT INTO datacenters (id, name, provider, city, country_code, lat, lon,"
                   " capacity_bytes, used_bytes) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                   (r["id"], r["name"], r["provider"], r["city"], r["country_code"],
                    float(r["lat"]), float(r["lon"]), capacity,
                    int(capacity * rng.uniform(0.05, 0.9))))
    db.execute("INSERT INTO templates (id, name, size_bytes) VALUES ('tpl-1', 'base', 1000)")
    # Snapshots where users are: more in a few big hubs, one somewhere else for many.
    hubs = [TARGET, "aws-us-east-1", "aws-ap-northeast-1", "gcp-europe-west3"]
    for i in range(120):
        at = hubs[i % 4] if i < 60 else rng.choice(rows)["id"]
        fixtures.seed_snapshot(db, f"u-{i:03d}", at)
    # One at the target keeps a replica that lags beyond its RPO (level 1: 60 s):
    # its copy holds version 1, version 2 was written ten minutes ago.
    lagging = fixtures.seed_snapshot(db, "u-lagging", TARGET)
    db.execute("UPDATE snapshots SET priority = 1, version = 2 WHERE id = %s", (lagging,))
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size, changed_bytes, created_at) VALUES"
               " (%s, 1, repeat('1', 64), 8192, 65536, NULL, now() - interval '1 hour'),"
               " (%s, 2, repeat('2', 64), 8192, 65536, 4096, now() - interval '10 minutes')",
               (lagging, lagging))
    copy = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                      " VALUES (%s, 'aws-us-east-1', 1, false) RETURNING id",
                      (lagging,)).fetchone()[0]
    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id, created_at)"
               " VALUES (%s, 'aws-us-east-1', %s, now() - interval '1 hour')", (lagging, copy))
    for n, (src, dst, state) in enumerate(IN_FLIGHT):
        snapshot = fixtures.seed_snapshot(db, f"u-moving-{n}", src)
        # Every transfer starts queued (migration 016's state machine), then moves on.
        tid = db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                         " template_present, reason, idempotency_key, bytes_total)"
                         " VALUES (%s, %s, %s, 'tpl-1', false, 'closer', %s, 1500) RETURNING id",
                         (snapshot, src, dst, f"browser-{n}")).fetchone()[0]
        if state == "running":
            db.execute("UPDATE transfers SET state = 'running', bytes_done = 750 WHERE id = %s",
                       (tid,))
    return len(rows)


DIFF_SNAPSHOT = "snap-diff"
DIFF_EXTENTS = [{"offset": 1064960, "length": 4096}, {"offset": 50331648, "length": 131072}]
HOSTNAME_DIFF = "--- a/etc/hostname\n+++ b/etc/hostname\n@@ -1 +1 @@\n-alpha\n+beta\n"
FILES = {"filesystems": ["/dev/sda1"], "added": 1, "removed": 0, "changed": 2,
         "truncated": False, "files": [
             {"filesystem": "/dev/sda1", "path": "/etc/hostname", "change": "changed",
              "type": "file", "old_size": 6, "new_size": 5, "content_changed": True,
              "diff": HOSTNAME_DIFF},
             {"filesystem": "/dev/sda1", "path": "/etc/new.conf", "change": "added",
              "type": "file", "new_size": 6, "diff": "--- a/etc/new.conf\n+++ b/etc/new.conf\n"},
             {"filesystem": "/dev/sda1", "path": "/keep.sh", "change": "changed", "type": "file",
              "old_size": 10, "new_size": 10, "content_changed": False, "old_mode": "0644",
              "new_mode": "0755"}]}


def seed_versions(db):
    """Two registered versions of a snapshot at the target, and the disk diff its agent made."""
    fixtures.seed_snapshot(db, "u-diff", TARGET, snapshot=DIFF_SNAPSHOT)
    for v, config in ((1, {"vcpus": 2, "meta": {"owner": "ann"}}),
                      (2, {"vcpus": 4, "meta": {"owner": "ann", "team": "ops"}})):
        db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
                   " size_bytes, virtual_size, config, datacenter_id)"
                   " VALUES (%s, %s, repeat(%s, 64), 0, 67108864, %s, %s)",
                   (DIFF_SNAPSHOT, v, str(v), json.dumps(config), TARGET))
    db.execute("INSERT INTO disk_diffs (snapshot_id, from_version, to_version, datacenter_id,"
               " state, result) VALUES (%s, 1, 2, %s, 'succeeded', %s)",
               (DIFF_SNAPSHOT, TARGET, json.dumps({
                   "virtual_size": 67108864, "changed_bytes": 135168,
                   "template_blocks_read": 0, "extents": DIFF_EXTENTS})))
    # The file diff its agent made (tests/integration/test_file_diff.py runs a real one).
    db.execute("INSERT INTO file_diffs (snapshot_id, from_version, to_version, datacenter_id,"
               " state, phase, progress, result) VALUES (%s, 1, 2, %s, 'succeeded', 'done', 100,"
               " %s)", (DIFF_SNAPSHOT, TARGET, json.dumps(FILES)))


def seed_failover(db):
    """Two snapshots at FAILED with warm replicas at REPLICA_SITE: one current,
    one a version (4 KiB changed) behind. The others there have none."""
    for name, level, newest in (("fo-current", 1, 1), ("fo-behind", 2, 2)):
        snap = fixtures.seed_snapshot(db, f"u-{name}", FAILED, snapshot=f"snap-{name}")
        db.execute("UPDATE snapshots SET priority = %s, version = %s WHERE id = %s",
                   (level, newest, snap))
        for v in range(1, newest + 1):
            db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
                       " size_bytes, virtual_size, changed_bytes, datacenter_id, created_at)"
                       " VALUES (%s, %s, repeat(%s, 64), 8192, 65536, %s, %s,"
                       " now() - make_interval(mins => 10 - %s))",
                       (snap, v, str(v), 4096 if v > 1 else None, FAILED, v))
        copy = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                          " VALUES (%s, %s, 1, false) RETURNING id",
                          (snap, REPLICA_SITE)).fetchone()[0]
        db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
                   " VALUES (%s, %s, %s)", (snap, REPLICA_SITE, copy))


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    h = fixtures.Homing(database, topics, "test-browser", "serve",
                        tmp_path_factory.mktemp("browser"))
    h.migrate()
    h.n_datacenters = load_demo_catalog(db)
    seed_versions(db)
    seed_failover(db)
    h.start()
    yield h
    h.stop()


def test_the_dashboard_shows_the_map_and_drains_a_datacenter(homing, db):
    RESULTS.mkdir(parents=True, exist_ok=True)
    screenshot = RESULTS / "dashboard.png"
    diff_shot = RESULTS / "dashboard-diff.png"
    evac_shot = RESULTS / "dashboard-evacuation.png"
    fo_shot = RESULTS / "dashboard-failover.png"
    token = homing.token("operator", "dashboard-test")
    # FAILED is lost: its failover (the API's) is what the page shows.
    homing.json("PUT", f"/v1/datacenters/{FAILED}/status", {"status": "down"},
                token=homing.token("operator", "failover-test"))
    unrecoverable = db.execute("SELECT count(*) FROM placements WHERE datacenter_id = %s"
                               " AND active", (FAILED,)).fetchone()[0]
    proc = subprocess.run(["node", str(HERE / "dashboard.mjs"), homing.url, token, TARGET,
                           str(screenshot), DIFF_SNAPSHOT, str(diff_shot), "/vcpus",
                           str(evac_shot), FAILED, str(fo_shot)], cwd=HERE,
                          capture_output=True, text=True, timeout=180)
    assert proc.stdout.strip(), proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and seen["failed"] is None, f"{seen['failed']}\n{proc.stderr[-2000:]}"

    # The map: Natural Earth's countries, every datacenter, every transfer in flight.
    assert seen["countries"] >= 170
    assert seen["datacenters"] == homing.n_datacenters
    assert seen["arcs"] == len(IN_FLIGHT)
    assert seen["halos"] > 0
    assert seen["queue"] == str(len(IN_FLIGHT))
    assert seen["whoami"] == "dashboard-test (operator)"
    # The datacenter's panel listed what it holds and what flies to it.
    assert seen["panelSnapshots"] > 0 and seen["panelTransfers"] == 2
    # A running transfer shows how far the agent got; a queued one, nothing yet.
    assert sorted(seen["panelProgress"]) == ["50 % · 750 B of 1.5 KiB", "–"]
    # The lagging replica, in red: ten minutes and the changed 4 KiB behind.
    assert len(seen["panelLagging"]) == 1, seen["panelLagging"]
    assert re.match(r"aws-us-east-1: 6\d\d s", seen["panelLagging"][0]), seen["panelLagging"]
    assert seen["panelLagging"][0].endswith(" s, 4.0 KiB behind")
    # Offline: the page asked nothing of anyone but homing.
    assert seen["foreign"] == [] and seen["consoleErrors"] == []

    # The drain reached the API: PostgreSQL says so, and who did it.
    assert seen["statusAfterDrain"] == "draining"
    assert db.execute("SELECT status FROM datacenters WHERE id = %s",
                      (TARGET,)).fetchone()[0] == "draining"
    event = db.execute("SELECT payload FROM outbox WHERE key = %s AND payload->>'type' LIKE"
                       " 'io.homing.datacenter.%%' ORDER BY id DESC LIMIT 1",
                       (TARGET,)).fetchone()[0]
    assert event["type"] == "io.homing.datacenter.status_changed"
    assert event["data"]["actor"]["name"] == "dashboard-test"

    assert screenshot.stat().st_size > 50_000

    # The evacuation: planned (a dry run) from the panel, then run.
    evac_id, state, dry_run, by = db.execute(
        "SELECT id, state, dry_run, created_by FROM evacuations WHERE datacenter_id = %s",
        (TARGET,)).fetchone()
    assert (state, dry_run, by) == ("running", True, "dashboard-test")
    held = db.execute("SELECT count(*), array_agg(DISTINCT priority ORDER BY priority) FROM"
                      " evacuation_items WHERE evacuation_id = %s", (evac_id,)).fetchone()
    assert seen["evacPlan"].startswith(f"evacuation {evac_id}: planned · {held[0]} snapshots")
    # Where they go: the lagging snapshot to its replica's site, the rest to Paris's nearest.
    assert seen["evacPlan"].endswith("0 cannot move · 1 to aws-us-east-1, "
                                     f"{held[0] - 1} to azure-francecentral"), seen["evacPlan"]
    assert [int(l.split()[0]) for l in seen["evacLevels"]] == held[1]
    assert seen["evacRunning"].startswith(f"evacuation {evac_id}: running (from a dry run)")
    assert evac_shot.stat().st_size > 50_000

    # The diff view: every key that differs, old and new, and the changed disk regions.
    assert seen["diffPaths"] == ["/meta/team", "/vcpus"]
    assert seen["diffOld"] == ["–", "2"] and seen["diffNew"] == ['"ops"', "4"]
    assert seen["extents"] == len(DIFF_EXTENTS)
    assert seen["diskText"] == "2 changed regions, 132 KiB of 64 MiB"
    # The guest files, each with its change and size or mode, and a file's unified diff.
    # (each with a box to take it into the new version)
    assert seen["files"] == [["", "/etc/hostname", "changed", "6 B → 5 B"],
                             ["", "/etc/new.conf", "added", "6 B"],
                             ["", "/keep.sh", "changed", "mode 0644 → 0755"]]
    assert seen["filesText"] == "1 added, 0 removed, 2 changed; click a file for its diff"
    assert seen["fileDiff"] == HOSTNAME_DIFF
    # The confirmation said what would change, and the composition asked exactly that.
    assert seen["summary"] == (f"A new version of {DIFF_SNAPSHOT}: v1 with the configuration "
                               "keys /vcpus, 2 disk regions (132 KiB) and the guest files "
                               "/etc/new.conf taken from v2. Nothing else changes; v1 and v2 stay "
                               "as they are.")
    assert "queued at " + TARGET in seen["composeMessage"]
    row = db.execute("SELECT base_version, from_version, config_paths, disk_extents, whole_disk,"
                     " guest_files, state, requested_by FROM compositions"
                     " WHERE snapshot_id = %s", (DIFF_SNAPSHOT,)).fetchall()
    assert row == [(1, 2, ["/vcpus"], DIFF_EXTENTS, False, ["/etc/new.conf"], "queued",
                    "dashboard-test")]
    event = db.execute("SELECT payload FROM outbox WHERE key = %s ORDER BY id DESC LIMIT 1",
                       (DIFF_SNAPSHOT,)).fetchone()[0]
    assert event["type"] == "io.homing.snapshot.composition_requested"
    assert event["data"]["actor"]["name"] == "dashboard-test"
    assert diff_shot.stat().st_size > 20_000

    # The rehearsal at the drained datacenter: the lagging snapshot's throwaway
    # VM at its replica's site, never started, cleaned up from the page.
    test_id, test_state = db.execute("SELECT id, state FROM failover_tests WHERE"
                                     " datacenter_id = %s", (TARGET,)).fetchone()
    assert test_state == "cleaned"
    assert seen["foTestRunning"] == (f"failover test {test_id}: running · 1 VM at aws-us-east-1:"
                                     " 0 powered on, 0 failed, 1 pending, 0 off")
    assert seen["foTestCleaned"].startswith(f"failover test {test_id}: cleaned · 1 VM")
    # The failed datacenter's failover: its row, each snapshot's outcome, the loss.
    fid, created = db.execute("SELECT id, to_char(created_at AT TIME ZONE 'UTC',"
                              " 'YYYY-MM-DD HH24:MI:SS') FROM failovers WHERE datacenter_id = %s",
                              (FAILED,)).fetchone()
    assert seen["foList"] == [[str(fid), created, "open", "2", str(unrecoverable), "1"]]
    assert seen["foSummary"] == (f"failover {fid}: open · 2 failed over (0 powered on), "
                                 f"{unrecoverable} unrecoverable, 1 version lost (4.0 KiB)")
    outcomes = {r[0]: r[1:] for r in seen["foSnapshots"]}
    assert len(outcomes) == unrecoverable + 2
    assert outcomes["snap-fo-current"] == ["1 (most urgent)", f"activated at {REPLICA_SITE} from"
                                           " its replica (v1); 0 versions lost"]
    assert re.fullmatch(rf"activated at {REPLICA_SITE} from its replica \(v1\); 1 version lost"
                        r" \(4.0 KiB, \d+ s\)", outcomes["snap-fo-behind"][1])
    assert sum(o[1] == f"unrecoverable until {FAILED} returns"
               for o in outcomes.values()) == unrecoverable
    # No failback while it is down, nor a rehearsal of a real failover.
    assert seen["foFailbackWhileDown"] is False and seen["foTestWhileDown"] is True
    assert fo_shot.stat().st_size > 50_000
    # Back, then failed back from the page: a move home for each of the two.
    assert seen["foBack"].startswith(f"failover {fid}: ended · 2 failed over")
    assert f"{unrecoverable} unrecoverable ({unrecoverable} recovered)" in seen["foBack"]
    assert seen["foFailback"].endswith("· failback: 2 queued, 0 back"), seen["foFailback"]
    assert seen["foFailbackAfter"] is False
    moves = db.execute("SELECT snapshot_id, from_dc, to_dc, reason FROM transfers"
                       " WHERE reason = 'failback' ORDER BY snapshot_id").fetchall()
    assert moves == [("snap-fo-behind", REPLICA_SITE, FAILED, "failback"),
                     ("snap-fo-current", REPLICA_SITE, FAILED, "failback")]
    event = db.execute("SELECT payload FROM outbox WHERE payload->>'type' ="
                       " 'io.homing.failover.failback_started'").fetchone()[0]
    assert event["data"]["actor"]["name"] == "dashboard-test"


def replay_policy(name, kind, mean, transfers, gib, pareto=False, **extra):
    return {"name": name, "kind": kind, "pareto": pareto,
            "restores": {"n": 50, "mean_km": mean, "p50_km": mean / 2, "p95_km": mean * 2,
                         "p99_km": mean * 3},
            "transfers": transfers, "flaps": transfers // 10, "bytes": gib * 1073741824,
            **extra}


def test_the_placement_quality_page_draws_stored_reports(homing):
    RESULTS.mkdir(parents=True, exist_ok=True)
    shot = RESULTS / "dashboard-quality.png"
    token = homing.token("operator", "quality-test")
    cdf = [[i * 30.0, i / 100] for i in range(101)]
    days = [{"day": f"2026-11-{d:02}", "transfers": d % 4, "bytes": (d % 4) * 1000}
            for d in range(1, 11)]
    full = {"users": 100, "user_days": 1000.0, "restores": 50, "measured_at": "restores",
            "policies": [
                replay_policy("oracle", "oracle", 150.0, 400, 0),
                replay_policy("home", "home", 1100.0, 0, 0),
                replay_policy("naive", "engine", 180.0, 300, 3000, pareto=True,
                              restore_cdf=cdf, per_day=days),
                replay_policy("homing", "engine", 260.0, 20, 200, pareto=True,
                              goals={"oracle_distance": 1.733, "home_distance": 0.236,
                                     "naive_transfers": 0.067},
                              restore_cdf=[[km * 1.4, s] for km, s in cdf], per_day=days),
                replay_policy("margin=5000000", "engine", 700.0, 40, 400),
            ]}
    # A sweep's points: in the table and on the trade-off, but neither labelled nor drawn
    # as lines (off the front), so that the named policies stay readable.
    sweep = [dict(replay_policy(f"dwell-s={d}", "engine", 300.0 + d, 30, 300), swept=True,
                  restore_cdf=cdf) for d in range(12)]
    partial_policies = full["policies"][:]
    full["policies"] = full["policies"] + sweep
    # An older replay, before the CDF and the days were in its JSON: its transfers by
    # day only as a count ({day: transfers}) for homing; and one without even that.
    partial = {"users": 10, "user_days": 70.0, "policies": partial_policies[:2] + [
        {k: v for k, v in p.items() if k not in ("restore_cdf", "per_day")}
        for p in partial_policies[2:4]]}
    partial["policies"][3] = dict(partial["policies"][3], transfers_per_day={
        "2026-10-02": 1, "2026-10-01": 3, "2026-10-03": 0})
    oldest = {"policies": partial_policies[:2]}
    ids = [homing.json("POST", f"/v1/placement-reports?name={name}", body, expect=201,
                       token=token)[0]["id"]
           for name, body in (("oldest", oldest), ("before", partial), ("november", full))]
    proc = subprocess.run(["node", str(HERE / "quality.mjs"), homing.url, token, str(shot),
                           str(ids[2]), str(ids[1]), str(ids[0])], cwd=HERE,
                          capture_output=True, text=True, timeout=180)
    assert proc.stdout.strip(), proc.stderr
    seen = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and seen["failed"] is None, f"{seen['failed']}\n{proc.stderr[-2000:]}"

    assert seen["mapHidden"] is True and seen["qualityHiddenAfter"] is True
    # Newest first, with who stored it and its policies.
    assert [row[0] for row in seen["list"]] == ["november", "before", "oldest"]
    assert seen["list"][0][2:] == ["quality-test", "100", "oracle, home, naive, homing and 13 more"]

    r = seen["reports"][str(ids[2])]
    assert r["title"] == "november"
    # The table: a row per policy as the replay prints it (* on the front; GiB per user-day;
    # flaps and their share of transfers; the goals' ratios, met or not).
    assert [row[0] for row in r["rows"]] == ["oracle", "home", "naive *", "homing *",
                                             "margin=5000000"] + [p["name"] for p in sweep]
    assert r["rows"][3] == ["homing *", "engine", "260.0", "130.0", "520.0", "780.0", "20",
                            "0.20", "2 (10.0 %)", "1.733 not met", "0.236 met", "0.067 met"]
    assert r["rows"][0][7:9] == ["0.00", "40 (10.0 %)"] and r["rows"][0][9:] == ["–"] * 3
    # The trade-off: one point per policy, where its mean distance and bytes put it.
    assert sorted(p[0] for p in r["points"]) == sorted(p["name"] for p in full["policies"])
    at = {p[0]: p[1:] for p in r["points"]}
    assert at["oracle"][0] < at["naive"][0] < at["homing"][0] < at["margin=5000000"][0] < \
        at["home"][0]
    assert at["naive"][1] < at["margin=5000000"][1] < at["homing"][1] < at["home"][1] == \
        at["oracle"][1]  # SVG's y grows downwards: more bytes, higher up
    assert sorted(r["pareto"]) == ["homing", "naive"] and r["front"] == 1
    assert sorted(r["labels"]) == ["home", "homing", "margin=5000000", "naive", "oracle"]
    # The CDF and the days: a line per policy that has them (the sweep's left out, said).
    assert r["cdfLines"] == [["naive", 101], ["homing", 101]] and r["cdfAbsent"] == []
    assert r["cdfLegend"] == ["naive", "homing", "12 more not drawn (swept, off the front)"]
    assert r["dayLines"] == [["naive", 10], ["homing", 10]] and r["daysAbsent"] == []

    old = seen["reports"][str(ids[1])]
    assert [row[0] for row in old["rows"]] == ["oracle", "home", "naive *", "homing *"]
    assert len(old["points"]) == 4
    assert old["cdfLines"] == [] and old["dayLines"] == [["homing", 3]]
    assert old["cdfAbsent"] == ["the restore-distance CDF is not in this report"]
    assert old["daysAbsent"] == []
    oldest = seen["reports"][str(ids[0])]
    assert len(oldest["points"]) == 2 and oldest["dayLines"] == []
    assert oldest["daysAbsent"] == ["transfers per day are not in this report"]

    assert seen["foreign"] == [] and seen["consoleErrors"] == []
    assert shot.stat().st_size > 30_000
