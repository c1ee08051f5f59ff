"""homing replay's figures for people: --json's per_day and restore_cdf,
on hand-made files with a CSV catalog: no stack."""
import json
import subprocess
import time

import pytest

from conftest import HOMING_BIN

HOUR = 3600
GIB = 1 << 30
T0 = 1767571200  # 2026-01-05T00:00:00Z


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def history(tmp_path, far_lon, name="history.jsonl", second=36):
    """One user at x (0, 0) takes a trip to y (222 km) and, `second` hours
    later, one to far_lon, restoring 111 km north of each place."""
    lines = []

    def at(h, lon):
        ts = T0 + h * HOUR
        lines.append(json.dumps({"device_id": "d-1", "user_id": "u-1", "lat": 0, "lon": lon,
                                 "accuracy_m": 10, "ts": rfc3339(ts),
                                 "received_at": rfc3339(ts + 1)}))

    def restore(h, lon):
        lines.append(json.dumps({"restore": {"user_id": "u-1", "ts": rfc3339(T0 + h * HOUR),
                                             "lat": 1, "lon": lon}}))

    for base, lon in ((0, 2), (second, far_lon)):
        for h in range(0, 3):
            at(base + h, 0)
        for h in range(8, 18):
            at(base + h, lon)
        restore(base + 14, lon)
        for h in range(23, 30):
            at(base + h, 0)
    restore(second + 29, 0)
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def catalog(tmp_path):
    path = tmp_path / "sites.csv"
    path.write_text("id,lat,lon\nx,0,0\ny,0,2\nz,0,40\nw,0,20\n")
    return path


def replay(tmp_path, hist, *args, check=True):
    return subprocess.run([HOMING_BIN, "replay", "--history", str(hist), "--catalog",
                           str(catalog(tmp_path)), "--snapshot-gib", "1", *args],
                          capture_output=True, text=True, check=check)


def test_json_gives_each_day_s_transfers_and_bytes_and_the_distances_percentiles(tmp_path):
    """Transfers taking 20 hours: the naive policy's trips are withdrawn
    part-sent, so its bytes are not whole snapshots, yet its days add up."""
    figures = tmp_path / "figures.json"
    replay(tmp_path, history(tmp_path, 40), "--json", str(figures),
           "--bandwidth", str(GIB / (20 * HOUR)), "--sweep-x", "move-margin-m=0,5000000")
    policies = {p["name"]: p for p in json.loads(figures.read_text())["policies"]}
    naive = policies["naive"]
    assert naive["cancelled"] > 0 and naive["bytes"] % GIB != 0
    assert policies["move-margin-m=5e+06"]["per_day"] == []
    for name, p in policies.items():
        days = p["per_day"]
        assert sum(d["transfers"] for d in days) == p["transfers"], name
        assert sum(d["bytes"] for d in days) == p["bytes"], name
        assert {d["day"]: d["transfers"] for d in days} == p["transfers_per_day"], name
        assert all(len(d["day"]) == 10 and d["day"][4] == "-" for d in days)
        cdf = p["restore_cdf"]
        assert len(cdf) == 101, name
        assert [share for _, share in cdf] == pytest.approx([k / 100 for k in range(101)])
        assert cdf[-1][1] == 1
        kms = [km for km, _ in cdf]
        assert kms == sorted(kms), name
        assert cdf[50][0] == p["restores"]["p50_km"]
        assert cdf[95][0] == p["restores"]["p95_km"] and cdf[99][0] == p["restores"]["p99_km"]
    assert policies["oracle"]["restore_cdf"][-1][0] == pytest.approx(111.2, abs=1)
    assert policies["home"]["restore_cdf"][-1][0] > 4000  # the far trip, from home
