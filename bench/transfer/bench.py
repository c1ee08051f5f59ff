"""The transfer benchmark (bench/transfer/run starts the stack and builds).

Everything real: two `homing agent` processes with their own stores, `homing
serve` for their API calls, PostgreSQL for the transfers (queued here with
SQL, as the scheduler would), qcow2 images written with qemu-io. Settings
from the environment: SIZE_GIB (1), DATA_MIB (512), CAP_MBPS (50);
BENCH_HOMING, another build's binary (to set two builds side by side in one
period of a busy machine); FULL_ONLY=1, the full copy and curl alone;
BENCH_API_PORT and BENCH_NGINX_PORT (28480, 28481).
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import Bench, qemu_io, run, say, wait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
HOMING = os.environ.get("BENCH_HOMING", str(ROOT / "build" / "homing"))
SIZE_GIB = int(os.environ.get("SIZE_GIB", "1"))
DATA_MIB = int(os.environ.get("DATA_MIB", "512"))
CAP_MBPS = float(os.environ.get("CAP_MBPS", "50"))
MIB, BLOCK = 1024 * 1024, 4096
API_PORT = int(os.environ.get("BENCH_API_PORT", "28480"))
NGINX_PORT = int(os.environ.get("BENCH_NGINX_PORT", "28481"))
BENCH = Bench("transfer", API_PORT)
WORK = BENCH.work
sql, env_for, start = BENCH.sql, BENCH.env, BENCH.start


def agent(dc, extra=None):
    env = env_for({"HOMING_API_URL": f"http://127.0.0.1:{API_PORT}", "HOMING_DATACENTER": dc,
                   "HOMING_STORE": str(WORK / dc), "HOMING_AGENT_TOKEN": TOKENS[dc],
                   "HOMING_AGENT_LISTEN": "127.0.0.1:0", "HOMING_AGENT_POLL_MS": "100",
                   **(extra or {})})
    p = start(f"agent-{dc}", [HOMING, "agent"], env)
    wait(lambda: "serving 1 datacenters" in (WORK / f"agent-{dc}.log").read_text(), 30,
         f"agent {dc}")
    return p, env


def register(env, snapshot, version):
    started = time.time()
    out = run(HOMING, "snapshot", "register", "--snapshot", snapshot, "--version", str(version),
              env=env).split()
    return out[2], int(out[3]), time.time() - started


def transfer(snapshot, src, dst, key, size):
    tid = sql(f"INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,"
              f" reason, idempotency_key, bytes_total) VALUES ('{snapshot}', '{src}', '{dst}',"
              f" 'tpl', true, 'bench', '{key}', {size}) RETURNING id").splitlines()[0]
    return int(tid)


def finished(tid, timeout=600):
    def done():
        state = sql(f"SELECT state FROM transfers WHERE id = {tid}")
        if state in ("failed", "cancelled"):
            raise SystemExit(f"bench: transfer {tid} {state}: "
                             + sql(f"SELECT error FROM transfers WHERE id = {tid}"))
        return state == "succeeded"
    wait(done, timeout, f"transfer {tid}")
    row = sql(f"SELECT extract(epoch FROM finished_at - started_at), bytes_sent,"
              f" extract(epoch FROM started_at) FROM transfers WHERE id = {tid}").split("|")
    return float(row[0]), int(row[1]), float(row[2])


def cpu_s(p):
    """CPU seconds of a process and its reaped children (an agent's qemu-nbd)."""
    f = open(f"/proc/{p.pid}/stat").read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in f[11:15]) / os.sysconf("SC_CLK_TCK")


def log_time(line):
    t = json.loads(line)["time"]
    return time.mktime(time.strptime(t[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone + float(t[19:23])


def main():
    global TOKENS
    BENCH.fresh(HOMING)
    sql("INSERT INTO datacenters (id, name, city, lat, lon, capacity_bytes) VALUES"
        " ('a', 'A', 'Paris', 48.86, 2.35, 1e13), ('b', 'B', 'Frankfurt', 50.11, 8.68, 1e13);"
        " INSERT INTO templates (id, name, size_bytes) VALUES ('tpl', 'bench', 68719476736);"
        " INSERT INTO template_replicas VALUES ('tpl', 'a'), ('tpl', 'b');"
        " INSERT INTO snapshots (id, user_id, template_id, size_bytes) VALUES"
        "   ('s1', 'u1', 'tpl', 1), ('s2', 'u2', 'tpl', 1);"
        " INSERT INTO placements (snapshot_id, datacenter_id, version, active) VALUES"
        "   ('s1', 'a', 1, true), ('s2', 'a', 1, true)")
    TOKENS = {dc: run(HOMING, "token", "agent", "--datacenter", dc, env=env_for()).strip()
              for dc in ("a", "b")}

    say(f"images: a {SIZE_GIB} GiB template, an overlay with {DATA_MIB} MiB of data")
    for dc in ("a", "b"):
        (WORK / dc / "templates").mkdir(parents=True)
        (WORK / dc / "snapshots" / "s1").mkdir(parents=True)
        (WORK / dc / "snapshots" / "s2").mkdir(parents=True)
    tpl = WORK / "a" / "templates" / "tpl.qcow2"
    run("qemu-img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=64k,extended_l2=on",
        str(tpl), f"{SIZE_GIB}G")
    qemu_io(tpl, [f"write -P 9 0 64M"])
    shutil.copyfile(tpl, WORK / "b" / "templates" / "tpl.qcow2")

    def overlay(dc, snap, mib, salt):
        path = WORK / dc / "snapshots" / snap / "v1.qcow2"
        run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
            "../../templates/tpl.qcow2", "-o", "cluster_size=64k,extended_l2=on", str(path))
        step = max(1, (SIZE_GIB * 1024 - 64) // mib)
        qemu_io(path, [f"write -P {(i * 7 + salt) % 250 + 1} {(64 + i * step) * MIB} {MIB}"
                       for i in range(mib)])
        return path
    v1 = overlay("a", "s1", DATA_MIB, 0)

    keys = run(HOMING, "token", "key", "--kid", "bench", env=env_for()).strip()
    start("serve", [HOMING, "serve"], env_for({"HOMING_DEVICE_TOKEN_KEYS": keys}))
    wait(lambda: subprocess.run(["curl", "-fs", f"http://127.0.0.1:{API_PORT}/healthz"],
                                capture_output=True).returncode == 0, 30, "homing serve")
    (pa, env_a), (pb, env_b) = agent("a"), agent("b")
    digest1, size1, reg1 = register(env_a, "s1", 1)

    # 1. Full copy, and the same bytes by curl from nginx into B's disk.
    say("full copy A -> B")
    cpu_a, cpu_b = cpu_s(pa), cpu_s(pb)
    tid1 = transfer("s1", "a", "b", "full", size1)
    secs, sent, _ = finished(tid1)
    cpu_a, cpu_b = cpu_s(pa) - cpu_a, cpu_s(pb) - cpu_b
    phases = wait(lambda: re.search(r"phases: ([^\"]*)", next(
        (l for l in (WORK / "agent-b.log").read_text().splitlines()
         if f"transfer {tid1} succeeded" in l), "")), 10, "the full copy's log line").group(1)
    nginx_conf = WORK / "nginx.conf"
    nginx_conf.write_text(f"""daemon off; worker_processes 1; pid {WORK}/nginx.pid;
error_log {WORK}/nginx.err; events {{}}
http {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{NGINX_PORT}; root {WORK}/a; }} }}
""")
    ng = start("nginx", ["nginx", "-c", str(nginx_conf)], None)

    def nginx_up():
        if ng.poll() is not None:  # its port taken, say by a client's local port
            raise SystemExit(f"bench: nginx did not start on port {NGINX_PORT} (BENCH_NGINX_PORT): "
                             + (WORK / "nginx.log").read_text().strip().splitlines()[0])
        return subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{NGINX_PORT}/"],
                              capture_output=True).returncode == 0
    wait(nginx_up, 30, "nginx")
    file_size = v1.stat().st_size
    t0 = time.time()
    run("curl", "-fs", "-o", str(WORK / "b" / "curl-copy"), f"http://127.0.0.1:{NGINX_PORT}/snapshots/s1/v1.qcow2")
    curl_s = time.time() - t0
    os.unlink(WORK / "b" / "curl-copy")
    t0 = time.time()
    subprocess.run(["cat", str(v1)], stdout=subprocess.DEVNULL, check=True)
    cat_s = time.time() - t0

    full_mbs = size1 / secs / 1e6
    curl_mbs = file_size / curl_s / 1e6
    full_row = ("full copy throughput", "≥ 0.7× loopback curl",
                f"{full_mbs:.0f} MB/s vs curl {curl_mbs:.0f} MB/s (cat {file_size / cat_s / 1e6:.0f}"
                f" MB/s): {full_mbs / curl_mbs:.2f}×", full_mbs / curl_mbs >= 0.7)
    if os.environ.get("FULL_ONLY") == "1":
        print(f"\nfull copy {secs:.2f} s ({phases}); CPU: target {cpu_b:.2f} s, source"
              f" {cpu_a:.2f} s; load {os.getloadavg()[0]:.2f}\n")
        print(f"| what | target | measured | met |\n|---|---|---|---|")
        print(f"| {full_row[0]} | {full_row[1]} | {full_row[2]} | {'yes' if full_row[3] else 'no'} |")
        return

    # 2. Delta: 1 % of the blocks rewritten at B, then back to A.
    say("delta B -> A after 1 % of the blocks changed")
    blocks = SIZE_GIB * 1024 * MIB // BLOCK
    n_change = blocks // 100
    rng = random.Random(5)
    scattered = rng.sample(range(blocks), n_change // 2)
    clusters = rng.sample(range(blocks // 16), (n_change - n_change // 2) // 16)
    changed = set(scattered) | {c * 16 + k for c in clusters for k in range(16)}
    v2 = WORK / "b" / "snapshots" / "s1" / "v2.qcow2"
    shutil.copyfile(WORK / "b" / "snapshots" / "s1" / "v1.qcow2", v2)
    qemu_io(v2, [f"write -P 0xd1 {b * BLOCK} 4096" for b in scattered] +
            [f"write -P 0xd2 {c * 16 * BLOCK} 65536" for c in clusters])
    digest2, size2, reg2 = register(env_b, "s1", 2)
    tid2 = transfer("s1", "b", "a", "delta", size2)
    dsecs, dsent, dstart = finished(tid2)
    manifest2 = (WORK / "b" / "snapshots" / "s1" / "v2.manifest").stat().st_size
    changed_bytes = len(changed) * BLOCK
    rsync_dst = WORK / "rsync-base.qcow2"
    shutil.copyfile(v1, rsync_dst)
    out = run("rsync", "--no-whole-file", "--stats", str(v2), str(rsync_dst))
    rsync_sent = int(re.search(r"Total bytes sent: ([\d,]+)", out).group(1).replace(",", ""))
    literal = int(re.search(r"Literal data: ([\d,]+)", out).group(1).replace(",", ""))

    # 3. Finding what changed: the claim to the plan, read off the agent's log.
    plan = [l for l in (WORK / "agent-a.log").read_text().splitlines()
            if f"transfer {tid2}: " in l and "to pull" in l][0]
    find_s = log_time(plan) - dstart

    # 4. The cap: B again, with --agent-bandwidth, and a copy of over 10 s.
    say(f"bandwidth cap {CAP_MBPS:g} MB/s")
    pb.send_signal(signal.SIGTERM)
    pb.wait()
    pb, env_b = agent("b", {"HOMING_AGENT_BANDWIDTH": str(int(CAP_MBPS * 1e6))})
    cap_mib = int(CAP_MBPS * 1e6 * 12 / MIB)
    overlay("a", "s2", min(cap_mib, SIZE_GIB * 1024 - 64), 3)
    _, size3, _ = register(env_a, "s2", 1)
    tid3 = transfer("s2", "a", "b", "cap", size3)
    samples = []
    while sql(f"SELECT state FROM transfers WHERE id = {tid3}") == "running" or not samples:
        row = sql(f"SELECT bytes_done, extract(epoch FROM updated_at) FROM transfers"
                  f" WHERE id = {tid3}").split("|")
        if not samples or samples[-1] != (int(row[0]), float(row[1])):
            samples.append((int(row[0]), float(row[1])))
        time.sleep(0.1)
    finished(tid3)
    moving = [s for s in samples if 0 < s[0] < size3]
    rates = [(b2 - b1) / (t2 - t1) for (b1, t1), (b2, t2) in zip(moving, moving[1:]) if t2 > t1]
    avg = (moving[-1][0] - moving[0][0]) / (moving[-1][1] - moving[0][1])
    cap = CAP_MBPS * 1e6

    gib = SIZE_GIB
    rows = [
        full_row,
        ("delta bytes on the wire", "≤ 1.10× changed",
         f"{dsent:,} B for {changed_bytes:,} B changed: {dsent / changed_bytes:.3f}×"
         f" (the manifest came as a patch; whole, it is {manifest2:,} B)", dsent <= 1.10 * changed_bytes),
        ("delta vs rsync --no-whole-file", "fewer bytes",
         f"rsync sent {rsync_sent:,} B ({literal:,} B literal)", dsent < rsync_sent),
        ("time to find what changed", "≤ 0.2 s per GiB",
         f"{find_s:.3f} s for {gib} GiB (registering v2, its manifest: {reg2:.2f} s)",
         find_s <= 0.2 * gib),
        ("bandwidth cap, average", f"±5 % of {CAP_MBPS:g} MB/s",
         f"{avg / 1e6:.1f} MB/s over {moving[-1][1] - moving[0][1]:.1f} s", abs(avg - cap) <= 0.05 * cap),
        ("bandwidth cap, highest 1-s window", "≤ 1.2× cap",
         f"{max(rates) / 1e6:.1f} MB/s", max(rates) <= 1.2 * cap),
    ]
    print(f"\ntransfer benchmark: {gib} GiB virtual, {DATA_MIB} MiB of data;"
          f" full copy {secs:.2f} s ({phases}; CPU: target {cpu_b:.2f} s, source {cpu_a:.2f} s),"
          f" delta {dsecs:.2f} s; load {os.getloadavg()[0]:.2f}\n")
    print(f"| what | target | measured | met |\n|---|---|---|---|")
    for what, target, measured, met in rows:
        print(f"| {what} | {target} | {measured} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    with BENCH:
        main()
