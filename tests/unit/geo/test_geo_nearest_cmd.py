#!/usr/bin/env python3
"""`homing nearest` from the outside, speaking TAP.

Answers are checked against GeographicLib's GeodSolve over every
(point, datacenter) pair of the demo catalog: the same ids in the same order
(ties by id) and distances within the printed precision. Then the command
line, bad input lines, bad CSV rows and streaming.

usage: test_geo_nearest_cmd.py HOMING FIXTURES_DIR
"""
import os
import random
import subprocess
import sys
import tempfile

homing, fixtures = sys.argv[1], sys.argv[2]
catalog = os.path.join(fixtures, "datacenters.csv")
results = []


def check(name, ok, detail=""):
    results.append((name, ok, detail))


def run(args, stdin=""):
    p = subprocess.run([homing, "nearest"] + args, input=stdin, capture_output=True, text=True)
    return p.returncode, p.stdout, p.stderr


def read_catalog():
    import csv
    with open(catalog, newline="") as f:
        return [(r["id"], r["lat"], r["lon"]) for r in csv.DictReader(f)]


def geodsolve(pairs):
    text = "".join(f"{a} {b} {c} {d}\n" for a, b, c, d in pairs)
    p = subprocess.run(["GeodSolve", "-i", "-p", "9"], input=text, capture_output=True, text=True, check=True)
    return [float(line.split()[2]) for line in p.stdout.splitlines()]


def points():
    rnd = random.Random(7)
    pts = ["48.856600 2.352200", "51.507400 -0.127800", "-33.870000 151.210000", "1.290000 103.850000",
           "90 0", "-90 45", "0 180", "0 -180", "-17.000000 -179.900000", "64.730000 177.510000",
           "39.04 -77.49", "-43.950000 -176.550000", "0 0", "-39.04 102.51"]
    for _ in range(200):
        import math
        lat = math.degrees(math.asin(2 * rnd.random() - 1))
        lon = 360 * rnd.random() - 180
        pts.append(f"{lat:.6f} {lon:.6f}")
    return pts


def expected(pts, sites, k):
    pairs = [(*p.split(), lat, lon) for p in pts for (_, lat, lon) in sites]
    dist = geodsolve(pairs)
    out = []
    for i in range(len(pts)):
        row = sorted(((dist[i * len(sites) + j], sites[j][0]) for j in range(len(sites))))
        out.append(row[:k])
    return out


def compare(name, got_text, want):
    lines = got_text.splitlines()
    if len(lines) != len(want):
        check(name, False, f"{len(lines)} lines for {len(want)} points")
        return
    worst, bad = 0.0, []
    for n, (line, w) in enumerate(zip(lines, want), 1):
        f = line.split()
        ids, ds = f[0::2], [float(x) for x in f[1::2]]
        if ids != [x[1] for x in w]:
            bad.append(f"line {n}: {line} != {w}")
            continue
        for d, (ref, _) in zip(ds, w):
            worst = max(worst, abs(d - ref))
    check(name, not bad and worst <= 2e-6, "; ".join(bad[:3]) + f" worst {worst:.3g} m")


sites = read_catalog()
pts = points()
stdin = "".join(p + "\n" for p in pts)

rc, out, err = run(["--datacenters", catalog], stdin)
check("k=1 exits 0", rc == 0, err)
compare("k=1 matches GeodSolve over the whole catalog", out, expected(pts, sites, 1))

rc, out, err = run(["--datacenters", catalog, "--k", "3"], stdin)
check("k=3 exits 0", rc == 0, err)
compare("k=3 matches GeodSolve, nearest first, ties by id", out, expected(pts, sites, 3))

rc, out, err = run([f"--datacenters={catalog}", "--k=200"], "48.8566 2.3522\n")
check("k larger than the catalog gives the whole catalog", rc == 0 and len(out.split()) == 2 * len(sites), err)

# Datacenters sharing a city tie at the same distance and are ordered by id.
rc, out, _ = run(["--datacenters", catalog, "--k", "3"], "48.86 2.35\n")
f = out.split()
check("three Paris datacenters at 0 m, by id",
      f[0::2] == ["aws-eu-west-3", "azure-francecentral", "gcp-europe-west9"] and f[1::2] == ["0.000000"] * 3,
      out)

# Bad input lines: reported with their number, an empty line keeps the rest aligned, exit 1.
bad_in = "10 20\nabc\n91 0\n1\n1 2 3\nnan 0\n\n  10\t20  \n10,20\n10, 20\n0 180.5\n"
rc, out, err = run(["--datacenters", catalog], bad_in)
lines = out.split("\n")
check("bad lines make the exit status 1", rc == 1, err)
check("one output line per input line", len(out.splitlines()) == 11, repr(out))
good = {1, 8, 9, 10}
check("bad lines get an empty output line, good ones an answer",
      all((lines[i - 1] != "") == (i in good) for i in range(1, 12)), repr(out))
check("each bad line is reported with its number",
      all(f"line {i}:" in err for i in range(1, 12) if i not in good) and "line 1:" not in err, err)

# The command line.
rc, out, _ = run(["--help"])
check("--help prints usage and exits 0", rc == 0 and "--datacenters" in out and "--k" in out)
check("no --datacenters is a usage error", run([])[0] == 2)
check("--k 0 is a usage error", run(["--datacenters", catalog, "--k", "0"])[0] == 2)
check("--k abc is a usage error", run(["--datacenters", catalog, "--k", "abc"])[0] == 2)
check("--k -1 is a usage error", run(["--datacenters", catalog, "--k", "-1"])[0] == 2)
check("an unknown option is a usage error", run(["--datacenters", catalog, "--bogus"])[0] == 2)
check("a stray argument is a usage error", run(["--datacenters", catalog, "extra"])[0] == 2)
rc, _, err = run(["--datacenters", "/nonexistent/dc.csv"], "1 2\n")
check("a missing file exits 1 and says why", rc == 1 and "nonexistent" in err, err)

with tempfile.TemporaryDirectory() as d:
    # Columns in any order, others ignored, quotes and CRLF.
    p = os.path.join(d, "ok.csv")
    with open(p, "w", newline="") as f:
        f.write('name,lon,"id",lat\r\n"Paris, France",2.35,"par-1",48.86\r\n"Tokyo ""HQ""",139.77,tyo-1,35.68\r\n')
    rc, out, err = run(["--datacenters", p], "48.86 2.35\n35 139\n")
    check("CSV columns in any order, quoted fields, CRLF", rc == 0 and out.split()[0::2] == ["par-1", "tyo-1"],
          out + err)

    p = os.path.join(d, "bad.csv")
    with open(p, "w") as f:
        f.write("id,lat,lon\nok,1,2\nnolat,,2\nfar,95,2\n,1,2\nshort,1\nok,3,4\nsp ace,1,2\n")
    rc, out, err = run(["--datacenters", p], "1 2\n")
    check("bad CSV rows exit 1 and answer nothing", rc == 1 and out == "", out)
    check("each bad CSV row is reported with its line number",
          all(f"bad.csv:{n}:" in err for n in (3, 4, 5, 6, 7, 8)) and "bad.csv:2:" not in err, err)

    p = os.path.join(d, "nohdr.csv")
    with open(p, "w") as f:
        f.write("name,lat,lon\nx,1,2\n")
    rc, _, err = run(["--datacenters", p], "1 2\n")
    check("a header without id is refused", rc == 1 and "id, lat and lon" in err, err)

    p = os.path.join(d, "empty.csv")
    with open(p, "w") as f:
        f.write("id,lat,lon\n")
    rc, out, err = run(["--datacenters", p], "1 2\n")
    check("a catalog without datacenters is refused", rc == 1 and out == "" and "no datacenter" in err, err)

# Streaming: many points through a pipe, one answer each.
n = 200000
rnd = random.Random(3)
big = "".join(f"{rnd.uniform(-90, 90):.5f} {rnd.uniform(-180, 180):.5f}\n" for _ in range(n))
rc, out, err = run(["--datacenters", catalog], big)
check(f"{n} points stream through", rc == 0 and out.count("\n") == n, err[:200])

print(f"1..{len(results)}")
for i, (name, ok, detail) in enumerate(results, 1):
    print(f"{'ok' if ok else 'not ok'} {i} - {name}")
    if not ok and detail:
        for line in str(detail).splitlines()[:10]:
            print(f"#   {line}")
sys.exit(0 if all(ok for _, ok, _ in results) else 1)
