#!/usr/bin/env python3
"""bench/cpu.py — the CPU each part of a benchmark used, from /proc alone.

    bench/cpu.py sample NAME=PID[,PID...] ... >before
    ... the measured run ...
    bench/cpu.py sample NAME=PID[,PID...] ... >after
    bench/cpu.py split before after [NAME=SECONDS ...]

A sample is the clock ticks (utime + stime) of each PID and of its live
descendants, plus the ticks of the children each of them has waited for
(cutime + cstime): a PostgreSQL backend that ended during the run still
counts, in its postmaster. A process that ran only during the run (the load
generator) is measured by whoever waited for it: `cpu.py wrap FILE CMD...`
runs CMD, and writes the seconds CMD and its children used to FILE.
`split` prints one line, each name's CPU seconds and share of one core over
the run's wall time; NAME=SECONDS adds figures measured by `wrap`. A sample
also holds the machine's busy ticks (/proc/stat), so the line ends with what
everything else on the machine used meanwhile: on a shared machine, the
figure that says how much of it the benchmark had.
The pids of this checkout's stack: `cpu.py stack` prints broker=PID
postgres=PID from $HOMING_STATE_DIR.
"""
import os
import subprocess
import sys
import time

HZ = os.sysconf("SC_CLK_TCK")


def stat(pid):
    """(ppid, own ticks, waited-for children's ticks) of pid, or None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()  # comm may hold spaces and parentheses
    # fields[0] is field 3 of proc(5): state; ppid is 4, utime..cstime are 14..17
    return int(fields[1]), int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])


def ticks(roots):
    """Ticks of the roots, their live descendants, and the children they waited for."""
    procs = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            s = stat(int(entry))
            if s:
                procs[int(entry)] = s
    children = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    total, seen, todo = 0, set(), [p for p in roots if p in procs]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        _, own, waited = procs[pid]
        total += own + waited
        todo.extend(children.get(pid, []))
    return total


def machine_busy():
    """Ticks all CPUs spent on anything but idle and iowait since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v[:8]) - v[3] - v[4]  # user nice system idle iowait irq softirq steal


def sample(args):
    out = [f"wall={time.time():.6f}", f"machine={machine_busy()}"]
    for arg in args:
        name, _, pids = arg.partition("=")
        roots = [int(p) for p in pids.split(",") if p]
        out.append(f"{name}={ticks(roots)}")
    print(" ".join(out))


def read(path):
    return dict(kv.split("=", 1) for kv in open(path).read().split())


def split(before, after, extra):
    b, a = read(before), read(after)
    wall = float(a.pop("wall")) - float(b.pop("wall"))
    machine = (int(a.pop("machine", 0)) - int(b.pop("machine", 0))) / HZ
    secs = {name: (int(a[name]) - int(b.get(name, 0))) / HZ for name in a}
    for arg in extra:
        name, _, value = arg.partition("=")
        secs[name] = float(open(value).read()) if os.path.exists(value) else float(value)
    if machine:  # the load generator's CPU, measured by wrap, is in the machine's too
        secs["everything else"] = max(0.0, machine - sum(secs.values()))
    parts = [f"{name} {s:.2f} s ({s / wall * 100:.0f} % of a core)" for name, s in secs.items()]
    print(f"CPU over {wall:.1f} s: " + ", ".join(parts))


def wrap(path, argv):
    before = os.times()
    rc = subprocess.call(argv)
    after = os.times()
    used = (after.children_user - before.children_user) + (after.children_system -
                                                            before.children_system)
    with open(path, "w") as f:
        f.write(f"{used:.2f}\n")
    return rc


def stack():
    state = os.environ["HOMING_STATE_DIR"]
    out = []
    try:
        out.append("broker=" + open(f"{state}/kafka/kafka.pid").read().strip())
    except OSError:
        pass
    try:
        out.append("postgres=" + open(f"{state}/postgres/postmaster.pid").readline().strip())
    except OSError:
        pass
    print(" ".join(out))


def main(argv):
    if len(argv) >= 1 and argv[0] == "sample":
        sample(argv[1:])
    elif len(argv) >= 3 and argv[0] == "split":
        split(argv[1], argv[2], argv[3:])
    elif len(argv) >= 3 and argv[0] == "wrap":
        return wrap(argv[1], argv[2:])
    elif argv == ["stack"]:
        stack()
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
