#!/usr/bin/env python3
"""bench/report.py DIR — BENCHMARKS.md, on stdout, from what bench/run kept in DIR.

DIR holds `meta` (key=value lines: date, commit, cpu, cores, memory, kernel,
quick, load_before, load_after; a rerun= line for each benchmark run again
afterwards) and, for each benchmark NAME that ran,
NAME.out (all it printed) and NAME.status ("<exit status> <seconds>").
Each benchmark has a section: a table of its figures, each beside the
reference measured in the same run and the goal it is held to, then what
else it said (the CPU split, what was decided). A benchmark that did not
run, failed, or printed what its parser does not recognize gets its
section all the same, saying so with its last lines: a report is never
silently short. Nothing here judges a figure; the goals are issue 16's and
the README's.
"""
import os
import re
import sys

SECTIONS = [
    # name, title, command
    ("ingest", "Ingest: POST /v1/locations", "bench/ingest/run"),
    ("e2e", "End to end: from the 202 to the committed decision", "bench/e2e/run"),
    ("scheduler", "Scheduler: Kafka to decisions to PostgreSQL", "bench/scheduler/run"),
    ("transfer", "Transfers between agents", "bench/transfer/run"),
    ("failover", "Failover of a datacenter", "bench/failover/run"),
    ("evacuation", "Planned evacuation", "bench/evacuation/run"),
    ("geo", "Nearest datacenter", "build/bench/geo/bench-geo"),
    ("engine", "Decision engine alone", "build/bench/scheduler/bench-engine"),
    ("diff", "Diff of two versions", "build/bench/diff/bench-diff"),
    ("parse", "CPU per report before Kafka", "build/bench/ingest/bench-parse"),
    ("manifest", "Image manifest", "build/bench/image/bench-manifest"),
]


class Unrecognized(Exception):
    pass


def need(pattern, text, flags=0):
    m = re.search(pattern, text, flags)
    if not m:
        raise Unrecognized(pattern)
    return m


def num(s):
    return float(s.replace(",", ""))


def thousands(x):
    return f"{x:,.0f}"


def cpu_lines(text):
    return [m.strip() for m in re.findall(r"^.*CPU over .*$", text, re.M)]


def ingest(text):
    rows, notes = [], []
    row = r"(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(.*)$"
    for m in re.finditer(r"^homing, 1/request, (\d+) conns\s+" + row, text, re.M):
        c = m.group(1)
        h_rps = num(m.group(2))
        measured = (f"{thousands(h_rps)} req/s, p50 {m.group(4)}, p99 {m.group(6)}, "
                    f"non-2xx {m.group(7)}, socket errors {m.group(8).strip()}")
        # ONLY=bridge runs homing beside the bridge alone, without nginx.
        n = re.search(rf"^nginx static 202, {c} conns\s+" + row, text, re.M)
        if n:
            goal = "≥ 40,000 req/s, p99 ≤ 5 ms" if c == "64" else "p99 ≤ 15 ms, no 5xx" if c == "256" else ""
            rows.append((f"1 report a request, {c} connections", measured,
                         f"nginx static 202: {thousands(num(n.group(1)))} req/s, p99 {n.group(5)}",
                         f"{h_rps / num(n.group(1)):.2f}", goal))
        b = re.search(rf"^bridge \(Camel\), {c} conns\s+" + row, text, re.M)
        if b:
            b_rps = num(b.group(1))
            # The ratio the benchmark printed: of the rates before rounding.
            ratio = re.search(rf"^\s+homing / bridge at {c}: ([\d.]+)$", text, re.M)
            rows.append((f"1 report a request, {c} connections, beside a generic HTTP-to-Kafka bridge",
                         measured if not n else f"{thousands(h_rps)} req/s, p99 {m.group(6)}",
                         f"Apache Camel (camel-kafka, acks=all): {thousands(b_rps)} req/s, "
                         f"p50 {b.group(3)}, p99 {b.group(5)}, non-2xx {b.group(6)}, "
                         f"socket errors {b.group(7).strip()}",
                         ratio.group(1) if ratio else f"{h_rps / b_rps:.2f}" if b_rps else "",
                         "≥ 15" if c == "64" else ""))
    for b in re.finditer(r"^homing, (\d+)/request, (\d+) conns\s+" + row, text, re.M):
        if b.group(1) == "1":
            continue
        k = need(r"^kcat -P, (\d+) records\s+(\d+)", text, re.M)
        reports, raw = num(b.group(4)), num(k.group(2))
        rows.append((f"{b.group(1)} reports a request, {b.group(2)} connections",
                     f"{thousands(reports)} reports/s, p99 {b.group(7)}, non-2xx {b.group(8)}",
                     f"`kcat -P` of the same records, same producer settings: {thousands(raw)}/s",
                     f"{reports / raw:.2f}", "≥ 0.5"))
    if not rows:
        raise Unrecognized("no ingest run")
    settings = re.search(r"^POST /v1/locations, wrk, (.*)$", text, re.M)
    if settings:
        notes.append(f"wrk, {settings.group(1)}")
    bridge = re.search(r"^bridge: (.*)$", text, re.M)
    if bridge:
        notes.append(f"the bridge: {bridge.group(1)}")
    warmup = re.search(r"^bridge warm-up: (.*)$", text, re.M)
    if warmup:
        notes.append(f"the bridge's warm-up before it was measured: {warmup.group(1)}")
    runs = re.findall(r"^((?:homing|nginx static 202|bridge \(Camel\)), [^\n]*? conns|kcat -P, \d+ records)"
                      r"[^\n]*\n\s+(CPU over [^\n]*)", text, re.M)
    notes += [f"{who}: {cpu}" for who, cpu in runs]
    return rows, notes


def e2e(text):
    head = need(r"^end to end: (\d+) reports/s asked for (\d+) s", text, re.M)
    sent = need(r"sent (\d+) at (\d+)/s; status codes ([^;]*); request errors (.*)$", text, re.M)
    lat = need(r"202 latency \(client\): p50 ([\d.]+) ms, p99 ([\d.]+) ms, max ([\d.]+) ms", text)
    e = need(r"202 -> committed decision: p50 (-?[\d.]+) ms, p99 (-?[\d.]+) ms, max (-?[\d.]+) ms "
             r"over (\d+) reports.*?; (.*)$", text, re.M)
    low = need(r"a bound from below\): p50 (-?[\d.]+) ms, p99 (-?[\d.]+) ms", text)
    rows = [(f"202 → committed decision, {head.group(1)}/s asked for, {head.group(2)} s, open loop",
             f"p50 {e.group(1)} ms, p99 {e.group(2)} ms, max {e.group(3)} ms "
             f"({e.group(4)} reports; {sent.group(2)}/s achieved)",
             f"the 202 itself: p50 {lat.group(1)} ms, p99 {lat.group(2)} ms, max {lat.group(3)} ms",
             "", "p99 ≤ 50 ms at 20,000/s")]
    notes = [f"sent {sent.group(1)}; status codes {sent.group(3)}; request errors {sent.group(4)}",
             f"{e.group(5)}",
             f"measured from the offset's UPDATE instead of the commit's notification (a bound "
             f"from below): p50 {low.group(1)} ms, p99 {low.group(2)} ms"]
    notif = re.search(r"^\s+(commit notifications: .*)$", text, re.M)
    notes += [notif.group(1)] if notif else []
    # The warm-up (each user's first report), measured apart since bench/e2e printed it.
    warm = re.search(r"^\s+the warm-up \(([^)]*)\):\n\s+sent (\d+) at (\d+)/s.*\n.*\n"
                     r"\s+202 -> committed decision: p50 (-?[\d.]+) ms, p99 (-?[\d.]+) ms", text, re.M)
    if warm:
        notes.append(f"the warm-up before it ({warm.group(1)}): {warm.group(2)} sent at "
                     f"{warm.group(3)}/s, 202 → committed p50 {warm.group(4)} ms, "
                     f"p99 {warm.group(5)} ms")
    notes += cpu_lines(text)
    notes += [m.strip() for m in re.findall(r"^\s+committed \d+ of .*$", text, re.M)]
    return rows, notes


def scheduler(text):
    head = need(r"^whole scheduler: (.*)$", text, re.M)
    rate = need(r"^\s+(\d+) reports/s \(Kafka", text, re.M)
    raw = need(r"raw consumer \(kcat -C, the same topic\): (\d+) reports/s; ratio ([\d.]+)", text)
    rows = [(f"whole scheduler, {head.group(1)}", f"{thousands(num(rate.group(1)))} reports/s",
             f"`kcat -C` of the same topic: {thousands(num(raw.group(1)))}/s", raw.group(2),
             "≥ 0.3")]
    notes = [m.strip() for m in re.findall(r"^\s+(?:decisions|dropped|transfers): .*$", text, re.M)]
    notes += [m.strip() for m in re.findall(r"^\s+(?:scheduler's|kcat -C's) CPU .*$", text, re.M)]
    return rows, notes


def transfer(text):
    found = {m.group(1): (m.group(2), m.group(3)) for m in
             re.finditer(r"^\| ([^|]+) \| ([^|]+) \| ([^|]+) \| (?:yes|no) \|$", text, re.M)}

    def get(what):
        if what not in found:
            raise Unrecognized(what)
        return found[what]
    goal, full = get("full copy throughput")
    f = need(r"(\d+) MB/s vs curl (\d+) MB/s \(cat (\d+) MB/s\): ([\d.]+)×", full)
    rows = [("full copy", f"{f.group(1)} MB/s", f"curl from nginx on loopback: {f.group(2)} MB/s "
             f"(cat: {f.group(3)} MB/s)", f.group(4), goal)]
    goal, delta = get("delta bytes on the wire")
    d = need(r"([\d,]+) B for ([\d,]+) B changed: ([\d.]+)×", delta)
    _, rs = get("delta vs rsync --no-whole-file")
    r = need(r"rsync sent ([\d,]+) B", rs)
    rows.append(("delta after 1 % of the blocks changed", f"{d.group(1)} B on the wire",
                 f"{d.group(2)} B changed; `rsync --no-whole-file`: {r.group(1)} B",
                 d.group(3), f"{goal}, fewer than rsync"))
    goal, find = get("time to find what changed")
    t = need(r"([\d.]+) s for (\d+) GiB", find)
    rows.append(("time to find what changed", f"{t.group(1)} s for {t.group(2)} GiB", "", "", goal))
    goal, cap = get("bandwidth cap, average")
    c = need(r"([\d.]+) MB/s over ([\d.]+) s", cap)
    g2, window = get("bandwidth cap, highest 1-s window")
    w = need(r"([\d.]+) MB/s", window)
    rows.append(("bandwidth cap", f"{c.group(1)} MB/s over {c.group(2)} s, highest 1-s window "
                 f"{w.group(1)} MB/s", "", "", f"{goal}; {g2}"))
    notes = [m.strip() for m in re.findall(r"^transfer benchmark: .*$", text, re.M)]
    return rows, notes


def failover(text):
    head = need(r"^failover of (\d+) snapshots", text, re.M)
    tx = need(r"declaring Paris down \(the failover's transaction\): ([\d.]+) s", text)
    l1 = need(r"level 1 all powered on ([\d.]+) s after the declaration \(goal: under 60 s for "
              r"(\d+)\); every failed-over VM: ([\d.]+) s", text)
    dup = need(r"snapshots powered on at two live sites: (\d+)", text)
    rows = [(f"{head.group(1)} snapshots, level 1 ({l1.group(2)}) powered on at replicas",
             f"{l1.group(1)} s", f"every failed-over VM: {l1.group(3)} s; the status change's "
             f"transaction: {tx.group(1)} s", "", "level 1 of 100 in under 60 s"),
            ("snapshots powered on at two live sites", dup.group(1), "", "", "0")]
    return rows, []


def evacuation(text):
    m = need(r"evacuation of (\d+) snapshots: level 1 powered on after ([\d.]+) s, all after "
             r"([\d.]+) s \(([\d.]+) s observed\); bytes at switchover (\d+) of (\d+) image "
             r"bytes \(([\d.]+)\), bulk copies (\d+)", text)
    rows = [(f"{m.group(1)} snapshots drained, level 1 powered on at its target", f"{m.group(2)} s",
             f"all: {m.group(3)} s", "", "level 1 of 100 within 60 s"),
            ("bytes sent while VMs were off", f"{thousands(num(m.group(5)))} B",
             f"the versions' bytes: {thousands(num(m.group(6)))} B; bulk copies "
             f"{thousands(num(m.group(8)))} B", m.group(7), "")]
    return rows, []


def geo(text):
    rows = []
    for m in re.finditer(r"^\s*(\d+) sites \| nearest\s+(\d+) ns \| k=8\s+(\d+) ns .*?"
                         r"\| brute force\s+(\d+) ns .*?\| ([\d.]+) B/site", text, re.M):
        sites, near, brute = int(m.group(1)), num(m.group(2)), num(m.group(4))
        rows.append((f"nearest of {sites:,} sites", f"{thousands(near)} ns, {m.group(5)} B a site",
                     f"brute force: {thousands(brute)} ns", f"1/{brute / near:,.0f}",
                     "≤ 5 µs at 100,000" if sites == 100000 else ""))
    if not rows:
        raise Unrecognized("no sites line")
    return rows, [m.strip() for m in re.findall(r"^geo_distance_m.*$", text, re.M)]


def engine(text):
    head = need(r"decision engine: (\d+) users, (\d+) datacenters, (\d+) reports", text)
    rate = need(r"(\d+) reports/s on one core \(([\d.]+) us per report\)", text)
    mem = need(r"memory per tracked user: (\d+) bytes", text)
    rows = [(f"{int(head.group(1)):,} users, {int(head.group(2)):,} datacenters",
             f"{thousands(num(rate.group(1)))} reports/s ({rate.group(2)} µs a report)", "", "",
             "≥ 100,000/s a core"),
            ("memory per tracked user", f"{mem.group(1)} B", "", "", "≤ 200 B")]
    return rows, [m.strip() for m in re.findall(r"^\s+outcomes: .*$", text, re.M)]


def diff(text):
    m = need(r"best ([\d.]+) s, median ([\d.]+) s, worst ([\d.]+) s per GiB over (\d+) runs", text)
    rows = [("configuration + changed disk extents, 1 GiB disk, 1 % changed",
             f"median {m.group(2)} s per GiB (best {m.group(1)}, worst {m.group(3)}, "
             f"{m.group(4)} runs)", "", "", "≤ 0.2 s per GiB")]
    return rows, [m.strip() for m in re.findall(r"^config changes .*$", text, re.M)]


def parse(text):
    rows = []
    for n in ("1", "100"):
        tree = need(rf"^\s*{n} report\(s\) a body, Jansson tree[^\d]*([\d.]+) us", text, re.M)
        tokens = need(rf"^\s*{n} report\(s\) a body, jsmn tokens[^\d]*([\d.]+) us", text, re.M)
        rows.append((f"{n} report{'s' if n != '1' else ''} a body", f"{tokens.group(1)} µs CPU a report",
                     f"the Jansson tree it replaced: {tree.group(1)} µs",
                     f"{num(tokens.group(1)) / num(tree.group(1)):.2f}", ""))
    token = need(r"^the device token's check, a request:\s*([\d.]+) us", text, re.M)
    rows.append(("the device token's check (HMAC-SHA-256, the claims read)",
                 f"{token.group(1)} µs CPU a request", "", "", ""))
    return rows, []


def manifest(text):
    head = need(r"overlay: 1 GiB, (\d+) MiB allocated as (.*)$", text, re.M)
    reads = need(r"extents \+ reads alone:\s+(\d+) MB/s", text)
    sha = need(r"sha-256 alone:\s+(\d+) MB/s", text)
    whole = need(r"image_manifest_compute:\s*(\d+) MB/s", text)
    return [(f"{head.group(1)} MiB allocated as {head.group(2)}", f"{whole.group(1)} MB/s",
             f"its halves alone: reads {reads.group(1)} MB/s, SHA-256 {sha.group(1)} MB/s", "",
             "")], []


PARSERS = {"ingest": ingest, "e2e": e2e, "scheduler": scheduler, "transfer": transfer,
           "failover": failover, "evacuation": evacuation, "geo": geo, "engine": engine,
           "diff": diff, "parse": parse, "manifest": manifest}


def section(d, name, title, command):
    out = [f"## {title}", ""]
    path = os.path.join(d, f"{name}.out")
    if not os.path.exists(path):
        return out + [f"Not run (`{command}`).", ""]
    text = open(path, errors="replace").read()
    rc, secs = (open(os.path.join(d, f"{name}.status")).read().split() + ["?", "?"])[:2] \
        if os.path.exists(os.path.join(d, f"{name}.status")) else ("?", "?")
    try:
        if rc != "0":
            raise Unrecognized(f"exit status {rc}")
        rows, notes = PARSERS[name](text)
    except Unrecognized as e:
        tail = "\n".join(text.rstrip("\n").splitlines()[-15:])
        return out + [f"**No figures**: `{command}` exited {rc} after {secs} s, or printed what "
                      f"bench/report.py does not recognize ({e}). Its last lines:", "", "```",
                      tail, "```", ""]
    out += [f"`{command}`, {float(secs):.0f} s.", "",
            "| what | measured | reference, same run | ratio | goal |", "|---|---|---|---|---|"]
    out += [f"| {' | '.join(str(c) if c != '' else '—' for c in row)} |" for row in rows]
    if notes:
        out += [""] + [f"- {n}" for n in notes]
    return out + [""]


def main(argv):
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    d = argv[0]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(os.path.join(d, "meta"))
                if "=" in line)
    cores = int(meta.get("cores", "1"))
    before = meta.get("load_before", "?")
    after = meta.get("load_after", "?")
    # The 1-minute average before the run: the 5- and 15-minute ones remember
    # work that ended before it, and the one after counts the benchmarks' own.
    loads = [float(before.split()[0])] if re.match(r"^[\d.]+", before) else []
    busy = any(x > cores for x in loads)
    out = ["# Benchmarks", "",
           f"Written by `bench/run{' --quick' if meta.get('quick') == '1' else ''}` on "
           f"{meta.get('date', '?')}, commit {meta.get('commit', '?')}.", "",
           f"Machine: {meta.get('cpu', '?')}, {cores} cores, {meta.get('memory', '?')} of memory, "
           f"{meta.get('kernel', '?')}. Load average (1, 5, 15 minutes) before the run: {before}; "
           f"after: {after}.", ""]
    reruns = [line.rstrip("\n").split("=", 1)[1] for line in open(os.path.join(d, "meta"))
              if line.startswith("rerun=")]
    for rerun in reruns:
        out += [f"Run again afterwards (`KEEP=1 ONLY=...`): {rerun}.", ""]
        loads += [float(x) for x in re.findall(r"before (\d+\.\d+)", rerun)]
    if busy or any(x > cores for x in loads):
        out += [f"**The machine was busy**: a load average above its {cores} cores means other "
                "work shared them with every benchmark here, so these figures say how homing "
                "fares on a loaded machine, not what it can do.", ""]
    if meta.get("quick") == "1":
        out += ["A quick run (`--quick`): every benchmark smaller than its default; the figures "
                "say less than a full run's.", ""]
    out += ["Each figure sits beside its reference measured in the same run; the ratio is "
            "homing's figure over the reference's. The benchmarks print numbers and judge "
            "nothing: the goals are those of issue 16 and the README. Where the CPU is split, "
            "it is the CPU seconds each part used over the run (`bench/cpu.py`: /proc, "
            "before and after).", ""]
    for name, title, command in SECTIONS:
        out += section(d, name, title, command)
    sys.stdout.write("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
