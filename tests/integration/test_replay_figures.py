"""homing replay's figures for people: --json's per_day and restore_cdf, and the
pictures --png draws from them, on hand-made files with a CSV catalog: no
stack. The PNGs are read back with the standard library (zlib, struct)."""
import json
import struct
import subprocess
import zlib

import pytest

from conftest import HOMING_BIN
from replay_files import HOUR, history

GIB = 1 << 30
PICTURES = ("tradeoff.png", "distances.png", "transfers-per-day.png")
ORACLE_GREEN = (0x2C, 0xA0, 0x2C)  # plot_color(2), the oracle's
PRESTAGE_BROWN = (0x8C, 0x56, 0x4B)  # plot_color(5), the first policy beyond homing


def catalog(tmp_path):
    path = tmp_path / "sites.csv"
    path.write_text("id,lat,lon\nx,0,0\ny,0,2\nz,0,40\nw,0,20\n")
    return path


def replay(tmp_path, hist, *args, check=True):
    return subprocess.run([HOMING_BIN, "replay", "--history", str(hist), "--catalog",
                           str(catalog(tmp_path)), "--snapshot-gib", "1", *args],
                          capture_output=True, text=True, check=check)


def png_pixels(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA PNG, unfiltered."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (2, 6)
            bpp = 3 if color == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 0xFF
            elif f == 2:
                line[i] = (line[i] + b) & 0xFF
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(width)])
        prev = line
    return width, height, rows


def has_color(rows, rgb):
    return any(rgb in row for row in rows)


def test_png_writes_the_three_pictures_at_their_size(tmp_path):
    out = tmp_path / "pics"  # made by the replay
    replay(tmp_path, history(tmp_path, 40), "--png", str(out),
           "--sweep-x", "move-margin-m=0,300000,5000000")
    assert sorted(p.name for p in out.iterdir()) == sorted(PICTURES)
    for name in PICTURES:
        data = (out / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">I4sII", data[8:24])[1:] == (b"IHDR", 960, 600)
    width, height, rows = png_pixels(out / "tradeoff.png")
    assert (width, height) == (960, 600)
    assert has_color(rows, ORACLE_GREEN)  # the oracle's marker and legend
    # homing+prestage has a colour of its own, not the swept settings' orange.
    assert has_color(rows, PRESTAGE_BROWN)


def test_the_pictures_follow_the_data(tmp_path):
    """Another trip on another day, other pictures; without the oracle, no
    oracle's colour (its markers, lines and legend are the only things in it)."""
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    replay(tmp_path, history(tmp_path, 40, "a.jsonl"), "--png", str(a))
    replay(tmp_path, history(tmp_path, 20, "b.jsonl", second=60), "--png", str(b))
    for name in PICTURES:
        assert (a / name).read_bytes() != (b / name).read_bytes(), name
    replay(tmp_path, history(tmp_path, 40, "a.jsonl"), "--png", str(c),
           "--policies", "home,naive,homing")
    assert not has_color(png_pixels(c / "tradeoff.png")[2], ORACLE_GREEN)
    assert not has_color(png_pixels(c / "distances.png")[2], ORACLE_GREEN)


def test_an_unwritable_directory_is_refused_before_the_replay(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory\n")
    figures = tmp_path / "figures.json"
    for bad in (blocker / "pics", tmp_path / "missing" / "pics"):
        run = replay(tmp_path, history(tmp_path, 40), "--png", str(bad), "--json", str(figures),
                     check=False)
        assert run.returncode == 1
        assert f"--png {bad}: " in run.stderr
        assert run.stdout == ""  # no table: nothing was claimed done
        assert not figures.exists() and not bad.exists()


def test_a_failed_replay_leaves_no_directory_it_made(tmp_path):
    lines = history(tmp_path, 40).read_text().splitlines() + ["not a record"]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    out = tmp_path / "pics"
    run = replay(tmp_path, bad, "--png", str(out), check=False)
    assert run.returncode == 1
    assert f"bad.jsonl:{len(lines)}: neither a location record" in run.stderr
    assert not out.exists()


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
