#!/usr/bin/env python3
"""A small demo fleet: devices of the 200 demo users that travel between the
cities of the demo catalog, stay a while, and report their location to
homing over HTTP, as phones would, each with its own device token.
Standard library only.

Usage: fleet.py URL --tokens FILE [--users N] [--rate R] [--seconds S]

FILE has "device user token" lines, as `homing token device --stdin` prints
them for "device user" lines (deploy/quickstart makes it).
"""
import argparse
import csv
import json
import random
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def cities():
    seen, out = set(), []
    with open(HERE / "datacenters.csv") as f:
        for row in csv.DictReader(f):
            key = (row["lat"], row["lon"])
            if key not in seen:
                seen.add(key)
                out.append((row["city"], float(row["lat"]), float(row["lon"])))
    return out


def read_tokens(path):
    tokens = {}
    if path:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    tokens[parts[0]] = parts[2]
    return tokens


def post(url, body, token):
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url + "/v1/locations", data=json.dumps(body).encode(),
                                 headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=15) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("url")
    ap.add_argument("--tokens", help="file of 'device user token' lines")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--rate", type=float, default=20, help="reports per second")
    ap.add_argument("--seconds", type=float, default=0, help="stop after this long (0: never)")
    args = ap.parse_args()

    tokens = read_tokens(args.tokens)
    rng = random.Random(42)
    places = cities()
    # Each user is somewhere, and leaves for another city after a while.
    where = {u: rng.choice(places) for u in range(1, args.users + 1)}
    leaves = {u: time.time() + rng.uniform(5, 120) for u in where}
    counts, started, last_print = {}, time.time(), time.time()

    while not args.seconds or time.time() - started < args.seconds:
        tick = time.time()
        user = rng.randrange(1, args.users + 1)
        if tick >= leaves[user]:
            where[user] = rng.choice(places)
            leaves[user] = tick + rng.uniform(30, 300)
            print(f"fleet: u-{user:04d} flew to {where[user][0]}", flush=True)
        city, lat, lon = where[user]
        device = f"d-{user:04d}"
        status = post(args.url, {
            "device_id": f"d-{user:04d}", "user_id": f"u-{user:04d}",
            "lat": round(lat + rng.uniform(-0.05, 0.05), 5),
            "lon": round(lon + rng.uniform(-0.05, 0.05), 5),
            "accuracy_m": round(rng.uniform(5, 60), 1),
            "ts": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }, tokens.get(device))
        counts[status] = counts.get(status, 0) + 1
        if time.time() - last_print >= 10:
            print("fleet: responses " + ", ".join(f"{k or 'no answer'}: {v}"
                                                  for k, v in sorted(counts.items())), flush=True)
            last_print = time.time()
        time.sleep(max(0.0, 1.0 / args.rate - (time.time() - tick)))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
