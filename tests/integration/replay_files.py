"""What the replay tests without a stack feed `homing replay --history`: one
user's hand-made history (u-1 and its device d-1, on the equator), a JSON
line a record, timed in hours from a fixed start."""
import json
import time

HOUR = 3600
T0 = 1767571200  # 2026-01-05T00:00:00Z


def rfc3339(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def report_line(h, lon):
    """d-1's report at (0, lon), h hours after T0, received a second later."""
    ts = T0 + int(h * HOUR)
    return json.dumps({"device_id": "d-1", "user_id": "u-1", "lat": 0, "lon": lon,
                       "accuracy_m": 10, "ts": rfc3339(ts), "received_at": rfc3339(ts + 1)})


def restore_line(h, lat, lon):
    """u-1 restores its VM at (lat, lon), h hours after T0."""
    return json.dumps({"restore": {"user_id": "u-1", "ts": rfc3339(T0 + int(h * HOUR)),
                                   "lat": lat, "lon": lon}})


def history(tmp_path, far_lon, name="history.jsonl", second=36):
    """One user at x (0, 0) takes a trip to y (222 km) and, `second` hours
    later, one to far_lon, restoring 111 km north of each place; six hours
    between places, so no speed limit refuses a report."""
    lines = []
    for base, lon in ((0, 2), (second, far_lon)):
        lines += [report_line(base + h, 0) for h in range(0, 3)]
        lines += [report_line(base + h, lon) for h in range(8, 18)]
        lines.append(restore_line(base + 14, 1, lon))
        lines += [report_line(base + h, 0) for h in range(23, 30)]
    lines.append(restore_line(second + 29, 1, 0))
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path
