#!/usr/bin/env python3
"""bench/e2e/e2e.py — the parts of bench/e2e/run written in Python.

    e2e.py targets LISTEN TOKENS USERS N BASE_TS >targets.jsonl
        N vegeta targets: report n is user n % USERS's (n // USERS)-th, one
        second after the one before, 10 m further north; its URL carries
        ?n=<n>, which ingest ignores and vegeta's results keep, so each
        result names its report.
    e2e.py datacenters
        SQL for a datacenter in each of the cities the users walk in.
    e2e.py listen DSN OUT
        LISTENs to bench_committed (a trigger on consumer_offsets NOTIFYs it:
        PostgreSQL delivers a notification only once its transaction has
        committed) and writes "<received, this machine's clock> <partition>
        <next_offset> <PostgreSQL's clock_timestamp() at the UPDATE>" lines.
    e2e.py analyze WORK USERS BASE_TS RATE DURATION [RESULTS]
        joins vegeta's results (RESULTS: results.csv, or warm.csv for the
        warm-up's), the topic (topic.txt: partition, offset, record) and the
        commits (commits.txt), and prints the figures, the 202 -> committed
        ones also second by second (a warm-up or a stall shows there).

Every time compared is CLOCK_REALTIME of this one machine: vegeta's
timestamp plus its latency (the 202's arrival), the listener's receipt of
the notification, PostgreSQL's clock_timestamp(). The receipt comes after
the commit, so 202 -> committed is measured from above, by the
notification's delivery.
"""
import base64
import bisect
import csv
import datetime
import json
import sys
import time

CITIES = [(48.8566, 2.3522), (51.5074, -0.1278), (52.5200, 13.4050), (40.4168, -3.7038),
          (41.9028, 12.4964), (59.3293, 18.0686), (50.0755, 14.4378), (45.4642, 9.1900),
          (53.3498, -6.2603), (38.7223, -9.1393)]
STEP_DEG = 10 / 111_320  # 10 m north, each second


def iso_ms(ms):
    return (datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
            .strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z")


def report(n, users, base_ms):
    u, step = n % users, n // users
    lat, lon = CITIES[u % len(CITIES)]
    lat += (u // len(CITIES)) % 100 * 0.001 + step * STEP_DEG
    lon += (u // len(CITIES)) // 100 % 100 * 0.001
    return u, base_ms + step * 1000, lat, lon


def targets(listen, tokens, users, n, base_ms):
    toks = [line.split() for line in open(tokens)]
    out = sys.stdout
    for k in range(int(n)):
        u, ts, lat, lon = report(k, int(users), int(base_ms))
        device, user, token = toks[u]
        body = json.dumps({"device_id": device, "user_id": user, "lat": round(lat, 6),
                           "lon": round(lon, 6), "accuracy_m": 20, "ts": iso_ms(ts)})
        out.write(json.dumps({"method": "POST", "url": f"http://{listen}/v1/locations?n={k}",
                              "body": base64.b64encode(body.encode()).decode(),
                              "header": {"Content-Type": ["application/json"],
                                         "Authorization": ["Bearer " + token]}}) + "\n")


def datacenters():
    print("INSERT INTO datacenters (id, name, lat, lon, capacity_bytes) VALUES "
          + ", ".join(f"('dc-{i}', 'city {i}', {lat}, {lon}, 1e15)"
                      for i, (lat, lon) in enumerate(CITIES)) + ";")


def listen(dsn, path):
    import psycopg  # from the tests' virtualenv
    conn = psycopg.connect(dsn, autocommit=True)
    conn.execute("LISTEN bench_committed")
    with open(path, "w", buffering=1) as out:
        out.write("listening\n")
        for note in conn.notifies():
            out.write(f"{time.time():.6f} {note.payload}\n")


def pct(values, p):
    return values[min(len(values) - 1, int(p / 100 * len(values)))]


def parse_ms(ts):
    return int(datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp() * 1000 + 0.5)


def analyze(work, users, base_ms, rate, duration, results="results.csv"):
    users, base_ms = int(users), int(base_ms)
    # Where each report landed: (device, ts in ms) -> (partition, offset).
    where = {}
    for line in open(f"{work}/topic.txt"):
        p, o, value = line.rstrip("\n").split(" ", 2)
        r = json.loads(value)
        where[(r["device_id"], parse_ms(r["ts"]))] = (int(p), int(o))
    # When each partition's offsets were seen committed.
    commits, lag = {}, []
    for line in open(f"{work}/commits.txt"):
        f = line.split()
        if len(f) != 4:
            continue
        seen, p, nxt, pg = float(f[0]), int(f[1]), int(f[2]), float(f[3])
        commits.setdefault(p, []).append((nxt, seen, pg))
        lag.append(seen - pg)
    for p in commits:
        commits[p].sort()
    answered, e2e, e2e_pg, codes, errors, unseen, early = [], [], [], {}, 0, 0, 0
    lost = 0  # not answered, yet on the topic: homing took the report and never said so
    first = last = None
    by_second = {}  # second sent -> its reports' 202 -> committed, ms
    for row in csv.reader(open(f"{work}/{results}")):
        sent_ns, code, latency_ns, url = int(row[0]), row[1], int(row[2]), row[10]
        codes[code] = codes.get(code, 0) + 1
        first = sent_ns if first is None else min(first, sent_ns)
        last = sent_ns if last is None else max(last, sent_ns)
        n = int(url.rsplit("n=", 1)[1])
        u, ts, _, _ = report(n, users, base_ms)
        if code != "202":
            errors += code == "0"
            lost += code == "0" and (f"d-{u}", ts) in where
            continue
        at = (sent_ns + latency_ns) / 1e9
        answered.append(latency_ns / 1e6)
        pos = where.get((f"d-{u}", ts))
        seen = commits.get(pos[0], []) if pos else []
        i = bisect.bisect_right(seen, (pos[1], float("inf"), 0.0)) if pos else 0
        if not pos or i == len(seen):
            unseen += 1
            continue
        d = (seen[i][1] - at) * 1000
        early += d < 0
        e2e.append(d)
        by_second.setdefault(int(sent_ns // 1_000_000_000), []).append(d)
        e2e_pg.append((seen[i][2] - at) * 1000)
    total = sum(codes.values())
    achieved = total / ((last - first) / 1e9) if total > 1 else 0
    answered.sort()
    e2e.sort()
    e2e_pg.sort()
    lag.sort()
    print(f"end to end: {rate} reports/s asked for {duration} s, open loop (vegeta), one report "
          f"a request, {users} users walking 10 m a second")
    print(f"  sent {total} at {achieved:.0f}/s; status codes "
          + ", ".join(f"{c} {n}" for c, n in sorted(codes.items())) + f"; request errors {errors} ({lost} of them on the topic: taken, never answered)")
    if answered:
        print(f"  202 latency (client): p50 {pct(answered, 50):.1f} ms, p99 {pct(answered, 99):.1f}"
              f" ms, max {answered[-1]:.1f} ms")
    if e2e:
        print(f"  202 -> committed decision: p50 {pct(e2e, 50):.1f} ms, p99 {pct(e2e, 99):.1f} ms,"
              f" max {e2e[-1]:.1f} ms over {len(e2e)} reports (goal: p99 <= 50 ms at 20000/s);"
              f" {early} committed before their 202 arrived, {unseen} not seen committed")
        print(f"  the same from the offset's UPDATE, before its commit (a bound from below):"
              f" p50 {pct(e2e_pg, 50):.1f} ms, p99 {pct(e2e_pg, 99):.1f} ms")
    else:
        print(f"  202 -> committed decision: none measured ({unseen} not seen committed)")
    if by_second:
        # Where the tail sits: a warm-up shows as its first seconds, a stall as one second.
        t0 = min(by_second)
        for v in by_second.values():
            v.sort()
        print("  202 -> committed by second sent (p50/p99/max ms): " + "; ".join(
            f"{t - t0}: {pct(v, 50):.0f}/{pct(v, 99):.0f}/{v[-1]:.0f}"
            for t, v in sorted(by_second.items())))
    if lag:
        print(f"  commit notifications: {len(lag)}, received after the offset's UPDATE by"
              f" p50 {pct(lag, 50) * 1000:.1f} ms, max {lag[-1] * 1000:.1f} ms (the commit's"
              f" own time and its delivery: the bound on the figure above)")


def main(argv):
    cmd = argv[0] if argv else ""
    if cmd == "targets" and len(argv) == 6:
        targets(*argv[1:])
    elif cmd == "datacenters" and len(argv) == 1:
        datacenters()
    elif cmd == "listen" and len(argv) == 3:
        listen(*argv[1:])
    elif cmd == "analyze" and len(argv) in (6, 7):
        analyze(*argv[1:])
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
