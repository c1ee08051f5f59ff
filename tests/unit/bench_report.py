#!/usr/bin/env python3
"""bench/report.py writes BENCHMARKS.md from what the benchmarks printed:
every section there, each figure parsed out of its benchmark's output (the
outputs of a real `bench/run --quick`, in tests/fixtures/bench/), and a
benchmark that failed, printed something else, or did not run, said so in
its own section without losing the others. Prints TAP; the arguments are
bench/report.py and the fixtures' folder."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPORT, FIXTURES = sys.argv[1], sys.argv[2]
TITLES = ["Ingest: POST /v1/locations", "End to end: from the 202 to the committed decision",
          "Scheduler: Kafka to decisions to PostgreSQL", "Transfers between agents",
          "Failover of a datacenter", "Planned evacuation", "Nearest datacenter",
          "Decision engine alone", "Diff of two versions", "CPU per report before Kafka",
          "Image manifest"]
# A figure of each benchmark's fixture, as the report must show it.
FIGURES = {
    "Ingest: POST /v1/locations": ["18,212 req/s", "nginx static 202: 103,198 req/s", "| 0.18 |",
                                   "181,093 reports/s", "158,894/s", "| 1.14 |",
                                   "homing 2.55 s (40 % of a core)",
                                   "Apache Camel (camel-kafka, acks=all): 7,990 req/s", "| 2.28 | ≥ 15 |",
                                   "p99 47.09ms", "the bridge: Apache Camel 4.18.0",
                                   "warm-up before it was measured: 9 rounds of 5 s",
                                   "bridge (Camel), 64 conns: CPU over 6.0 s: "],
    "End to end: from the 202 to the committed decision": ["p99 123.3 ms", "p50 48.9 ms",
                                                           "20000/s asked for, 10 s",
                                                           "p99 518.7 ms"],
    "Scheduler: Kafka to decisions to PostgreSQL": ["24,193 reports/s", "74,383/s", "| 0.325 |",
                                                    "homing 0.12 s (12 % of a core)"],
    "Transfers between agents": ["140 MB/s", "203 MB/s", "10,797,309 B", "18,851,636 B",
                                 "0.161 s for 1 GiB", "20.0 MB/s over 10.0 s"],
    "Failover of a datacenter": ["| 0.83 s |", "every failed-over VM: 1.63 s"],
    "Planned evacuation": ["| 2.4 s |", "all: 20.4 s", "267,773 B"],
    "Nearest datacenter": ["10,047 ns", "brute force: 379,414,185 ns", "1/37,764"],
    "Decision engine alone": ["39,546 reports/s", "176 B"],
    "Diff of two versions": ["median 0.0780 s per GiB"],
    "CPU per report before Kafka": ["1.36 µs CPU a report", "6.20 µs", "0.96 µs CPU a request"],
    "Image manifest": ["211 MB/s", "SHA-256 286 MB/s"],
}
results = []


def check(ok, what):
    results.append((bool(ok), what))


def report(folder):
    p = subprocess.run([sys.executable, REPORT, folder], capture_output=True, text=True)
    check(p.returncode == 0, f"bench/report.py {os.path.basename(folder)} exits 0 ({p.stderr.strip()})")
    return p.stdout


def sections(text):
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0]: p for p in parts[1:]}


with tempfile.TemporaryDirectory() as tmp:
    good = os.path.join(tmp, "good")
    shutil.copytree(FIXTURES, good)
    text = report(good)
    got = sections(text)
    check(list(got) == TITLES, f"every section, in order (got {list(got)})")
    for title, body in got.items():
        rows = [l for l in body.splitlines() if l.startswith("| ") and not l.startswith("| what")]
        check(rows and "No figures" not in body and "Not run" not in body,
              f"{title}: its figures parsed ({len(rows)} rows)")
        check(all(re.search(r"\d", l.split("|")[2]) for l in rows),
              f"{title}: every measured cell holds a number")
        for figure in FIGURES.get(title, []):
            check(figure in body, f"{title}: shows {figure!r}")
    check("Intel(R) Xeon(R) Processor, 2 cores" in text and "Linux 6" in text,
          "the machine is described")
    check("before the run: 25.78 17.54 9.34; after: " in text, "the load before and after")
    check("**The machine was busy**" in text, "a load above the cores is called busy")
    check(re.search(r"commit [0-9a-f]{7}", text), "the commit")

    # One benchmark failed, one printed something else, one did not run.
    bad = os.path.join(tmp, "bad")
    shutil.copytree(FIXTURES, bad)
    with open(os.path.join(bad, "scheduler.status"), "w") as f:
        f.write("1 12.5\n")
    with open(os.path.join(bad, "geo.out"), "w") as f:
        f.write("bench-geo: cannot build the index\n")
    os.unlink(os.path.join(bad, "diff.out"))
    got = sections(report(bad))
    check(list(got) == TITLES, "a failed benchmark loses no section")
    check("**No figures**: `bench/scheduler/run` exited 1 after 12.5 s" in
          got.get(TITLES[2], ""), "a benchmark that failed says so, with its exit status")
    check("**No figures**" in got.get(TITLES[6], "") and "cannot build the index" in
          got.get(TITLES[6], ""), "an output not recognized says so, with its last lines")
    check("Not run" in got.get(TITLES[8], ""), "a benchmark that did not run says so")
    check("18,212 req/s" in got.get(TITLES[0], ""), "the others keep their figures")

    # An ingest run from before the bridge, and one of ONLY=bridge (homing
    # beside the bridge, no nginx): each shows what it ran, nothing else.
    with open(os.path.join(FIXTURES, "ingest.out")) as f:
        ingest_out = f.read()
    bridge_lines = re.compile(r"^bridge.*\n(?:  CPU over.*\n)?|^  homing / bridge.*\n", re.M)
    with open(os.path.join(bad, "ingest.out"), "w") as f:
        f.write(bridge_lines.sub("", ingest_out))
    body = sections(report(bad)).get(TITLES[0], "")
    check("nginx static 202: 103,198 req/s" in body and "Apache Camel" not in body,
          "an ingest run without the bridge has no bridge row")
    nginx_lines = re.compile(r"^nginx.*\n(?:  CPU over.*\n)?|^  homing / nginx.*\n", re.M)
    with open(os.path.join(bad, "ingest.out"), "w") as f:
        f.write(nginx_lines.sub("", ingest_out))
    body = sections(report(bad)).get(TITLES[0], "")
    rows = [l for l in body.splitlines() if l.startswith("| 1 report")]
    check(len(rows) == 1 and "| 2.28 | ≥ 15 |" in rows[0] and "nginx static" not in body,
          f"ONLY=bridge: homing beside the bridge alone ({rows})")
    shutil.copy(os.path.join(FIXTURES, "ingest.out"), os.path.join(bad, "ingest.out"))

    # A quiet machine is not called busy.
    with open(os.path.join(bad, "meta")) as f:
        meta = re.sub(r"load_(before|after)=.*", r"load_\1=0.10 0.20 0.30", f.read())
    with open(os.path.join(bad, "meta"), "w") as f:
        f.write(meta)
    check("busy" not in report(bad), "a load below the cores is not called busy")
    # Nor one whose busy hour shows only in the 15-minute average.
    with open(os.path.join(bad, "meta"), "w") as f:
        f.write(re.sub(r"load_(before|after)=.*", r"load_\1=0.20 1.15 4.42", meta))
    check("busy" not in report(bad), "the 5- and 15-minute averages do not make a run busy")
    # Nor the benchmarks' own load, which the average after the run counts.
    with open(os.path.join(bad, "meta"), "w") as f:
        f.write(re.sub(r"load_after=.*", r"load_after=2.40 1.50 1.00",
                       re.sub(r"load_before=.*", r"load_before=0.20 0.30 0.40", meta)))
    check("busy" not in report(bad), "the load after the run does not make it busy")

    # A benchmark run again afterwards: said so, with its own load.
    with open(os.path.join(bad, "meta"), "a") as f:
        f.write("rerun=diff on 2026-12-06 05:00 UTC, commit abcdef1, load average before "
                "3.50 1.00 0.50, after 0.20 0.30 0.40\n")
    text = report(bad)
    check("Run again afterwards (`KEEP=1 ONLY=...`): diff on 2026-12-06 05:00 UTC, commit abcdef1"
          in text, "a benchmark run again says when and on which commit")
    check("**The machine was busy**" in text, "a busy rerun makes the report busy")

print(f"1..{len(results)}")
for i, (ok, what) in enumerate(results, 1):
    print(f"{'ok' if ok else 'not ok'} {i} - {what}")
sys.exit(0 if all(ok for ok, _ in results) else 1)
