"""The replica-lag benchmark (bench/replicas/run starts the stack and builds).

Everything real: `homing standalone` (the API the agents call, the
scheduler's replica pass), one `homing agent` per datacenter with its store,
qcow2 images written with qemu-io and registered with `homing snapshot
register` as a hypervisor would. The fleet's rows are seeded with SQL; its
first replicas are made by the replica pass before the clock starts.
Settings from the environment: N (10), DURATION_S (180), INTERVAL_S (10: each
VM's time between versions), WRITE_KIB (256: changed per version, in 4 KiB
blocks of an 8 MiB hot region), PASS_S (homing's --replica-pass-s, 10),
LEVELS (1,2: the levels the snapshots take in turn).
"""
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import Bench, pct, qemu_io, run, say, wait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOMING = str(ROOT / "build" / "homing")
N = int(os.environ.get("N", "10"))
DURATION_S = float(os.environ.get("DURATION_S", "180"))
INTERVAL_S = float(os.environ.get("INTERVAL_S", "10"))
WRITE_KIB = int(os.environ.get("WRITE_KIB", "256"))
PASS_S = os.environ.get("PASS_S", "10")
LEVELS = [int(x) for x in os.environ.get("LEVELS", "1,2").split(",")]
MIB, BLOCK = 1024 * 1024, 4096
HOT = 8 * MIB
API_PORT = int(os.environ.get("BENCH_API_PORT", os.environ.get("HOMING_HTTP_PORT", "58180")))
DCS = ("paris", "frankfurt", "tokyo")
BENCH = Bench("replicas", API_PORT)
WORK = BENCH.work
sql, env_for, start = BENCH.sql, BENCH.env, BENCH.start


def main():
    global HOMING
    BENCH.fresh(HOMING)
    # A copy: a rebuild during the run would replace the binary under it.
    HOMING = str(shutil.copy(HOMING, WORK / "homing"))
    # Users alternate between Paris (their replica: Frankfurt, the nearest
    # other site) and Osaka (Tokyo); all their snapshots are active at Paris.
    sql("INSERT INTO datacenters (id, name, city, lat, lon, capacity_bytes) VALUES"
        " ('paris', 'Paris', 'Paris', 48.86, 2.35, 1e13),"
        " ('frankfurt', 'Frankfurt', 'Frankfurt', 50.11, 8.68, 1e13),"
        " ('tokyo', 'Tokyo', 'Tokyo', 35.68, 139.69, 1e13);"
        " INSERT INTO templates (id, name, size_bytes) VALUES ('tpl', 'bench', 268435456);"
        " INSERT INTO template_replicas VALUES ('tpl', 'paris'), ('tpl', 'frankfurt'),"
        "  ('tpl', 'tokyo')")
    snaps = [f"s{i:03d}" for i in range(N)]
    rows = []
    for i, s in enumerate(snaps):
        lat, lon = (48.86, 2.35) if i % 2 == 0 else (34.69, 135.50)
        rows.append(f"INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority)"
                    f" VALUES ('{s}', 'u-{s}', 'tpl', 4194304, 5);"
                    f" INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
                    f" VALUES ('{s}', 'paris', 1, true);"
                    f" INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
                    f" reported_at, received_at) VALUES ('d-{s}', 'u-{s}', {lat}, {lon}, 10,"
                    f" now(), now());")
    sql("BEGIN; " + " ".join(rows) + " COMMIT;")

    tpl = WORK / "paris" / "templates" / "tpl.qcow2"
    tpl.parent.mkdir(parents=True)
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=64k,extended_l2=on",
        str(tpl), "256M")
    qemu_io(tpl, ["write -P 0x5a 0 16M"])
    for dc in DCS[1:]:
        (WORK / dc / "templates").mkdir(parents=True)
        shutil.copyfile(tpl, WORK / dc / "templates" / "tpl.qcow2")
    tokens = {dc: run(HOMING, "token", "agent", "--datacenter", dc, env=env_for()).strip()
              for dc in DCS}
    start("standalone", [HOMING, "standalone"], env_for({
        "HOMING_REPLICA_PASS_S": PASS_S, "HOMING_CACHE_MAX_AGE_S": "60",
        "HOMING_CATALOG_REFRESH_S": "2"}))
    wait(lambda: subprocess.run(["curl", "-fs", f"http://127.0.0.1:{API_PORT}/healthz"],
                                capture_output=True).returncode == 0, 60, "homing standalone")
    envs = {}
    for dc in DCS:
        envs[dc] = env_for({"HOMING_API_URL": f"http://127.0.0.1:{API_PORT}",
                            "HOMING_DATACENTER": dc, "HOMING_STORE": str(WORK / dc),
                            "HOMING_AGENT_TOKEN": tokens[dc], "HOMING_AGENT_LISTEN": "127.0.0.1:0",
                            "HOMING_AGENT_POLL_MS": "500", "HOMING_AGENT_EVICT_S": "5"})
        start(f"agent-{dc}", [HOMING, "agent"], envs[dc])
        wait(lambda: "serving 1 datacenters" in (WORK / f"agent-{dc}.log").read_text(), 30,
             f"agent {dc}")

    say(f"{N} snapshots at Paris: version 1 written and registered")
    rng = random.Random(10)
    version = {}
    for s in snaps:
        d = WORK / "paris" / "snapshots" / s
        d.mkdir(parents=True)
        path = d / "v1.qcow2"
        run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
            "../../templates/tpl.qcow2", "-o", "cluster_size=64k,extended_l2=on", str(path))
        qemu_io(path, [f"write -P {rng.randrange(1, 250)} {o * MIB} 65536" for o in range(16)])
        run(HOMING, "snapshot", "register", "--snapshot", s, "--version", "1", env=envs["paris"])
        version[s] = 1
    # Their levels once version 1 is there (the pass would queue copies of an
    # image not yet written otherwise).
    sql("UPDATE snapshots SET priority = CASE " + " ".join(
        f"WHEN id = '{s}' THEN {LEVELS[i % len(LEVELS)]}" for i, s in enumerate(snaps))
        + " END")
    t_settle = time.time()
    wait(lambda: sql("SELECT count(*) FROM replica_lag WHERE version = newest_version")
         == str(N), 300 + 10 * N, "every replica made", interval=1)
    say(f"replicas made in {time.time() - t_settle:.1f} s; writing for {DURATION_S:.0f} s,"
        f" a version every {INTERVAL_S:g} s per VM, {WRITE_KIB} KiB changed each")
    first_event = int(sql("SELECT coalesce(max(id), 0) FROM outbox"))
    first_transfer = int(sql("SELECT coalesce(max(id), 0) FROM transfers"))

    samples = []  # (snapshot, lag_s, bytes_behind, breached)
    stop = threading.Event()

    def sampler():
        while not stop.is_set():
            t = time.time()
            for line in sql("SELECT snapshot_id, lag_s, bytes_behind, rpo_s IS NOT NULL AND"
                            " lag_s > rpo_s FROM replica_lag").splitlines():
                s, lag, behind, breached = line.split("|")
                samples.append((s, float(lag), int(behind), breached == "t"))
            stop.wait(max(0, 1 - (time.time() - t)))
    th = threading.Thread(target=sampler)
    th.start()

    # Each VM writes on its own thread, its versions INTERVAL_S apart, the VMs
    # spread across it.
    t0 = time.time()
    per_version = WRITE_KIB * 1024 // BLOCK
    late = {}
    failed = []

    def vm(i, s):
        try:
            write_versions(i, s)
        except Exception as e:  # the run is void: say so once the others stop
            failed.append(f"{s}: {e}")

    def write_versions(i, s):
        r = random.Random(i)
        due = t0 + INTERVAL_S * i / N
        while True:
            if due - time.time() > 0:
                time.sleep(due - time.time())
            if time.time() - t0 >= DURATION_S:
                return
            late[s] = max(late.get(s, 0), time.time() - due)
            d = WORK / "paris" / "snapshots" / s
            v = version[s] + 1
            shutil.copyfile(d / f"v{v - 1}.qcow2", d / f"v{v}.qcow2")
            offsets = r.sample(range(HOT // BLOCK), per_version)
            qemu_io(d / f"v{v}.qcow2",
                    [f"write -P {r.randrange(1, 250)} {o * BLOCK} {BLOCK}" for o in offsets])
            run(HOMING, "snapshot", "register", "--snapshot", s, "--version", str(v),
                env=envs["paris"])
            version[s] = v
            due += INTERVAL_S
    vms = [threading.Thread(target=vm, args=(i, s)) for i, s in enumerate(snaps)]
    for t in vms:
        t.start()
    for t in vms:
        t.join()
    if failed:
        stop.set()
        raise SystemExit(f"bench: a VM's writer failed: {failed[0]}")
    written = sum(version.values()) - N
    late = max(late.values() or [0])
    wrote_for = time.time() - t0
    stop.set()
    th.join()
    t_stop = time.time()
    wait(lambda: sql("SELECT count(*) FROM replica_lag WHERE version = newest_version")
         == str(N), 300, "every replica current after the writes", interval=0.5)
    catch_up = time.time() - t_stop

    lags = [x[1] for x in samples]
    behind = [x[2] for x in samples]
    breached_samples = sum(1 for x in samples if x[3])
    events = int(sql(f"SELECT count(*) FROM outbox WHERE id > {first_event}"
                     " AND payload->>'type' = 'io.homing.replica.rpo_breached'"))
    bytes_written = int(sql("SELECT coalesce(sum(changed_bytes), 0) FROM snapshot_versions"
                            " WHERE version > 1"))
    sent, refreshes, failed = (int(x) for x in sql(
        "SELECT coalesce(sum(bytes_sent) FILTER (WHERE state = 'succeeded'), 0),"
        " count(*) FILTER (WHERE state = 'succeeded'),"
        " count(*) FILTER (WHERE state IN ('failed', 'cancelled')) FROM transfers"
        f" WHERE kind = 'replicate' AND id > {first_transfer}").split("|"))
    per_level = {}
    for lv in sorted(set(LEVELS)):
        ids = {s for i, s in enumerate(snaps) if LEVELS[i % len(LEVELS)] == lv}
        lv_lags = [x[1] for x in samples if x[0] in ids]
        rpo = sql(f"SELECT rpo_s FROM protection_policies WHERE level = {lv}")
        per_level[lv] = (len(ids), rpo, pct(lv_lags, 50), pct(lv_lags, 99), max(lv_lags or [0]))
    load = os.getloadavg()[0]
    print(f"replica lag under writes: {N} snapshots at Paris, replicas at Frankfurt and Tokyo,"
          f" --replica-pass-s {PASS_S}")
    print(f"  {written} versions written in {wrote_for:.0f} s (one per VM every {INTERVAL_S:g} s,"
          f" {WRITE_KIB} KiB changed each; the writer at most {late:.1f} s late)")
    print(f"  {len(samples)} samples of a replica's lag, one a second per replica")
    print(f"  lag seconds   p50 {pct(lags, 50):.1f}  p99 {pct(lags, 99):.1f}"
          f"  max {max(lags or [0]):.1f}")
    print(f"  bytes behind  p50 {pct(behind, 50)}  p99 {pct(behind, 99)}  max {max(behind or [0])}")
    for lv, (n, rpo, p50, p99, mx) in per_level.items():
        print(f"  level {lv} ({n} snapshots, RPO {rpo} s): lag p50 {p50:.1f} s, p99 {p99:.1f} s,"
              f" max {mx:.1f} s")
    print(f"  RPO breaches: {events} events, {breached_samples} samples past the RPO")
    print(f"  refreshes: {refreshes} replicate transfers succeeded ({failed} failed or"
          f" cancelled) for {written} versions")
    print(f"  bytes sent {sent:,} for {bytes_written:,} written"
          f" ({sent / bytes_written if bytes_written else 0:.2f}x)")
    print(f"  every replica current {catch_up:.1f} s after the last write;"
          f" load average {load:.1f}")


if __name__ == "__main__":
    with BENCH:
        main()
