"""The failover benchmark (bench/failover/run starts the stack and builds).

Real processes: `homing serve` (the API: the status change that fails Paris
over, the agents' calls, the failover's progress), `homing agent` at Tokyo
and at Sydney with libvirt's test driver, PostgreSQL. The fleet is seeded
with SQL as the scheduler and the agents would have left it. Settings from
the environment: N (1000), LEVEL1_SHARE (0.1), RECONCILE_MS (200).
"""
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import Bench, run, say, wait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOMING = str(ROOT / "build" / "homing")
N = int(os.environ.get("N", "1000"))
LEVEL1_SHARE = float(os.environ.get("LEVEL1_SHARE", "0.1"))
RECONCILE_MS = os.environ.get("RECONCILE_MS", "200")
API_PORT = int(os.environ.get("BENCH_API_PORT", "28490"))
BENCH = Bench("failover", API_PORT)
WORK, DSN = BENCH.work, BENCH.dsn
sql, env_for, start = BENCH.sql, BENCH.env, BENCH.start


def api(method, path, token, body=None):
    req = urllib.request.Request(f"http://127.0.0.1:{API_PORT}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {token}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


def level_of(i):
    """10 % level 1, then 20 % level 2, 40 % level 3, 20 % level 4, the rest 5."""
    f = i / N
    for level, upto in ((1, LEVEL1_SHARE), (2, LEVEL1_SHARE + 0.2), (3, LEVEL1_SHARE + 0.6),
                        (4, LEVEL1_SHARE + 0.8)):
        if f < upto:
            return level
    return 5


def main():
    BENCH.fresh(HOMING)
    sql("INSERT INTO datacenters (id, name, city, lat, lon, capacity_bytes) VALUES"
        " ('paris', 'Paris', 'Paris', 48.86, 2.35, 1e15),"
        " ('tokyo', 'Tokyo', 'Tokyo', 35.68, 139.69, 1e15),"
        " ('sydney', 'Sydney', 'Sydney', -33.87, 151.21, 1e15);"
        " INSERT INTO templates (id, name, size_bytes) VALUES ('tpl', 'bench', 1073741824);"
        " INSERT INTO template_replicas VALUES ('tpl', 'paris'), ('tpl', 'tokyo'),"
        "  ('tpl', 'sydney')")
    say(f"fleet: {N} snapshots at Paris, replicas current at Tokyo and Sydney for levels 1-3")
    sha = "ab" * 32
    rows = [(f"s{i:05d}", level_of(i), ("tokyo", "sydney")[i % 2]) for i in range(N)]
    with open(WORK / "fleet.sql", "w") as f:
        f.write("BEGIN;\n")
        for snap, level, replica in rows:
            f.write(f"INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority, power)"
                    f" VALUES ('{snap}', 'u-{snap}', 'tpl', 65536, {level}, 'on');\n"
                    f"INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
                    f" size_bytes, virtual_size, datacenter_id) VALUES ('{snap}', 1, '{sha}',"
                    f" 65536, 1073741824, 'paris');\n"
                    f"INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
                    f" content_sha256) VALUES ('{snap}', 'paris', 1, true, '{sha}');\n"
                    f"INSERT INTO power_records (snapshot_id, datacenter_id, epoch, state)"
                    f" VALUES ('{snap}', 'paris', 1, 'powered_on');\n")
            if level <= 3:
                f.write(f"WITH c AS (INSERT INTO placements (snapshot_id, datacenter_id, version,"
                        f" active, content_sha256) VALUES ('{snap}', '{replica}', 1, false,"
                        f" '{sha}') RETURNING id) INSERT INTO replicas (snapshot_id,"
                        f" datacenter_id, placement_id) SELECT '{snap}', '{replica}', id FROM c;\n")
        f.write("COMMIT;\n")
    subprocess.run(["psql", DSN, "-v", "ON_ERROR_STOP=1", "-q", "-f", str(WORK / "fleet.sql")],
                   check=True, capture_output=True)
    for dc in ("tokyo", "sydney"):
        for snap, level, replica in rows:
            if level <= 3 and replica == dc:
                d = WORK / dc / "snapshots" / snap
                d.mkdir(parents=True)
                (d / "v1.qcow2").write_bytes(b"")
                (d / "v1.json").write_text('{"vcpus": 1, "memory_mib": 128}')
    tokens = {dc: run(HOMING, "token", "agent", "--datacenter", dc, env=env_for()).strip()
              for dc in ("tokyo", "sydney")}
    operator = run(HOMING, "token", "operator", "--role", "operator", "--name", "bench",
                   env=env_for()).strip().split()[-1]
    start("serve", [HOMING, "serve"], env_for())
    wait(lambda: subprocess.run(["curl", "-fs", f"http://127.0.0.1:{API_PORT}/healthz"],
                                capture_output=True).returncode == 0, 30, "homing serve")
    for dc in ("tokyo", "sydney"):
        start(f"agent-{dc}", [HOMING, "agent"], env_for({
            "HOMING_API_URL": f"http://127.0.0.1:{API_PORT}", "HOMING_DATACENTER": dc,
            "HOMING_STORE": str(WORK / dc), "HOMING_AGENT_TOKEN": tokens[dc],
            "HOMING_AGENT_LISTEN": "127.0.0.1:0", "HOMING_DRIVER": "libvirt",
            "HOMING_LIBVIRT_URI": "test:///default", "HOMING_AGENT_RECONCILE_MS": RECONCILE_MS}))
        wait(lambda: "serving 1 datacenters" in (WORK / f"agent-{dc}.log").read_text(), 30,
             f"agent {dc}")

    say("Paris declared down")
    t0 = time.time()
    api("PUT", "/v1/datacenters/paris/status", operator, {"status": "down"})
    declared = time.time() - t0
    fid = api("GET", "/v1/failovers?datacenter_id=paris", operator)["items"][0]["id"]
    expected = {lv: sum(1 for _, level, _ in rows if level == lv) for lv in range(1, 6)}
    reached = {}

    def progress():
        doc = api("GET", f"/v1/failovers/{fid}", operator)
        for lv in doc["levels"]:
            n = lv["level"]
            if n not in reached and lv["to_power_on"] and lv["powered_on"] == lv["to_power_on"]:
                reached[n] = time.time() - t0
        return all(n in reached for n in (1, 2, 3)) and doc
    doc = wait(progress, 600, "every failed-over VM powered on", interval=0.1)
    total = max(reached.values())
    print(f"failover of {N} snapshots at Paris (levels 1-3 with a replica each):")
    print(f"  declaring Paris down (the failover's transaction): {declared:.2f} s")
    print("  level  snapshots  failed over  powered on  unrecoverable  last powered on after")
    for lv in doc["levels"]:
        n = lv["level"]
        after = lv["last_powered_on_after_s"]
        print(f"  {n:>5}  {expected[n]:>9}  {lv['failed_over']:>11}  {lv['powered_on']:>10}"
              f"  {lv['unrecoverable']:>13}  {'-' if after is None else f'{after:.2f} s':>21}")
    last1 = doc["levels"][0]["last_powered_on_after_s"]
    print(f"  level 1 all powered on {last1:.2f} s after the declaration (goal: under 60 s for"
          f" {expected[1]}); every failed-over VM: {total:.2f} s (seen by polling)")
    dup = sql("SELECT count(*) FROM (SELECT snapshot_id FROM (SELECT DISTINCT ON (snapshot_id,"
              " datacenter_id) snapshot_id, datacenter_id, state FROM power_records r"
              " JOIN datacenters d ON d.id = r.datacenter_id AND d.status <> 'down'"
              " ORDER BY snapshot_id, datacenter_id, r.id DESC) l WHERE state = 'powered_on'"
              " GROUP BY snapshot_id HAVING count(*) > 1) x")
    print(f"  snapshots powered on at two live sites: {dup}")


if __name__ == "__main__":
    with BENCH:
        main()
