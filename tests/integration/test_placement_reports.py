"""Placement reports (/v1/placement-reports, migration 027): the figures
`homing replay --json` writes, stored under a name by an operator, listed
newest first in pages, read back whole and deleted, each write with its
audit event (valid against its schema). A body whose shape the dashboard
could not draw is refused with the member named, and nothing is stored; a
viewer may read but not write, and nobody without a token may do either.
`homing replay --publish NAME` posts a real replay's figures, exactly those
--json writes, and says what the API refused when it refuses."""
import copy
import json
import socket
import subprocess
from datetime import datetime, timezone

import pytest

from conftest import HOMING_BIN, Homing
from test_audit_events import check_event

PATH = "/v1/placement-reports"


def policy(name, kind, mean, transfers, bytes_, **extra):
    return {"name": name, "kind": kind, "swept": False, "pareto": kind == "engine",
            "restores": {"n": 40, "mean_km": mean, "p50_km": mean * 0.8, "p95_km": mean * 2,
                         "p99_km": mean * 3},
            "reports": {"n": 900, "mean_km": mean + 1, "p50_km": mean, "p95_km": mean,
                        "p99_km": mean},
            "transfers": transfers, "arrived": transfers, "cancelled": 0, "flaps": 1,
            "bytes": bytes_, "peak_datacenter": "t-paris", "peak_snapshots": 3,
            "peaks": {"t-paris": 3}, **extra}


def sample_report():
    def cdf():
        return [[i * 12.5, i / 100] for i in range(101)]

    def days():
        return [{"day": "2026-12-01", "transfers": 2, "bytes": 2000},
                {"day": "2026-12-02", "transfers": 1, "bytes": 1000}]

    return {"users": 30, "user_days": 300.0, "reports": 900, "restores": 40,
            "measured_at": "restores", "snapshot_bytes": 1000, "bandwidth_bps": 12500000,
            "policies": [
                policy("oracle", "oracle", 120.5, 50, 0),
                policy("home", "home", 900.25, 0, 0),
                policy("naive", "engine", 150.0, 40, 40000, restore_cdf=cdf(), per_day=days()),
                policy("homing", "engine", 210.75, 3, 3000,
                       goals={"oracle_distance": 1.749, "home_distance": 0.234,
                              "naive_transfers": 0.075},
                       restore_cdf=cdf(), per_day=days(),
                       transfers_per_day={"2026-12-01": 2, "2026-12-02": 1}),
            ]}


def answered(doc):
    """The document as the API answers it: reals to 15 significant digits."""
    if isinstance(doc, dict):
        return {k: answered(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [answered(v) for v in doc]
    return float(f"{doc:.15g}") if isinstance(doc, float) else doc


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-placement-reports", "serve",
               tmp_path_factory.mktemp("placement-reports"))
    h.migrate()
    h.start()
    yield h
    h.stop()


def stored(db):
    return db.execute("SELECT count(*) FROM placement_reports").fetchone()[0]


def events(db, kind):
    rows = db.execute("SELECT key, payload FROM outbox WHERE payload->>'type' = %s ORDER BY id",
                      (f"io.homing.placement_report.{kind}",)).fetchall()
    for _, event in rows:
        check_event(event)
    return rows


def test_a_report_is_stored_listed_read_and_deleted(homing, db):
    operator = homing.token("operator", "quality-op")
    report = sample_report()
    first, headers = homing.json("POST", f"{PATH}?name=first%20run", report, expect=201,
                                 token=operator)
    assert headers["Location"] == f"{PATH}/{first['id']}"
    assert first["name"] == "first run" and first["created_by"] == "quality-op"
    assert first["summary"]["users"] == 30 and first["summary"]["measured_at"] == "restores"
    assert [p["name"] for p in first["summary"]["policies"]] == ["oracle", "home", "naive",
                                                                  "homing"]
    assert first["summary"]["policies"][3] == {"name": "homing", "kind": "engine",
                                               "mean_km": 210.75, "transfers": 3}
    assert "report" not in first
    second, _ = homing.json("POST", f"{PATH}?name=second", report, expect=201, token=operator)

    # Read back whole: what was posted, every member kept (peaks, settings, ...),
    # numbers as every answer of the API writes them (15 significant digits).
    got, _ = homing.json("GET", f"{PATH}/{first['id']}")
    assert got["report"] == answered(report)
    assert {k: got[k] for k in first} == first

    # Newest first, in pages that follow the cursor.
    page, _ = homing.json("GET", f"{PATH}?limit=1")
    assert [i["id"] for i in page["items"]] == [second["id"]] and page["next_cursor"]
    assert "report" not in page["items"][0]
    rest, _ = homing.json("GET", f"{PATH}?limit=1&cursor={page['next_cursor']}")
    assert [i["id"] for i in rest["items"]] == [first["id"]]

    # Deleted: gone from the list and the table, 404 after.
    assert homing.request("DELETE", f"{PATH}/{first['id']}", token=operator)[0] == 204
    assert homing.get(f"{PATH}/{first['id']}")[0] == 404
    assert homing.request("DELETE", f"{PATH}/{first['id']}", token=operator)[0] == 404
    assert [i["id"] for i in homing.json("GET", PATH)[0]["items"]] == [second["id"]]
    assert db.execute("SELECT count(*) FROM placement_reports WHERE id = %s",
                      (first["id"],)).fetchone()[0] == 0

    created = events(db, "created")
    assert [key for key, _ in created] == [str(first["id"]), str(second["id"])]
    data = created[0][1]["data"]
    assert data["name"] == "first run" and data["placement_report_id"] == first["id"]
    assert data["summary"] == first["summary"]
    assert data["actor"]["name"] == "quality-op"
    deleted = events(db, "deleted")
    assert len(deleted) == 1 and deleted[0][1]["data"]["placement_report_id"] == first["id"]
    assert deleted[0][1]["data"]["name"] == "first run"


def without(path):
    def change(r):
        *parents, last = path
        for k in parents:
            r = r[k]
        del r[last]
    return change


def setting(path, value):
    def change(r):
        *parents, last = path
        for k in parents:
            r = r[k]
        r[last] = value
    return change


BAD = [
    ("no policies", without(["policies"]), "/policies", "is required"),
    ("policies empty", setting(["policies"], []), "/policies", "1 to 64"),
    ("policies not an array", setting(["policies"], {"homing": 1}), "/policies", "1 to 64"),
    ("a policy not an object", setting(["policies", 1], "home"), "/policies/1", "object"),
    ("no name", without(["policies", 0, "name"]), "/policies/0/name", "name"),
    ("a name twice", setting(["policies", 1, "name"], "oracle"), "/policies/1/name",
     "named before"),
    ("unknown kind", setting(["policies", 2, "kind"], "magic"), "/policies/2/kind",
     "engine, oracle or home"),
    ("no restores", without(["policies", 3, "restores"]), "/policies/3/restores",
     "is required"),
    ("no p95", without(["policies", 3, "restores", "p95_km"]), "/policies/3/restores/p95_km",
     "is required"),
    ("mean as text", setting(["policies", 0, "restores", "mean_km"], "12"),
     "/policies/0/restores/mean_km", "must be a number"),
    ("negative p99", setting(["policies", 0, "restores", "p99_km"], -1),
     "/policies/0/restores/p99_km", "within"),
    ("n not whole", setting(["policies", 0, "restores", "n"], 1.5),
     "/policies/0/restores/n", "whole"),
    ("no transfers", without(["policies", 2, "transfers"]), "/policies/2/transfers",
     "is required"),
    ("bytes negative", setting(["policies", 2, "bytes"], -5), "/policies/2/bytes", "within"),
    ("no bytes", without(["policies", 1, "bytes"]), "/policies/1/bytes", "is required"),
    ("cdf point not a pair", setting(["policies", 3, "restore_cdf", 4], [1]),
     "/policies/3/restore_cdf/4", "pair"),
    ("cdf share over 1", setting(["policies", 3, "restore_cdf", 100], [1250, 1.5]),
     "/policies/3/restore_cdf/100/1", "within"),
    ("cdf falling", setting(["policies", 3, "restore_cdf", 50], [10, 0.5]),
     "/policies/3/restore_cdf/50", "fall"),
    ("a day without its date", setting(["policies", 2, "per_day", 1, "day"], "yesterday"),
     "/policies/2/per_day/1/day", "YYYY-MM-DD"),
    ("a day's bytes as text", setting(["policies", 2, "per_day", 0, "bytes"], "2000"),
     "/policies/2/per_day/0/bytes", "whole"),
    ("a day's count under no day", setting(["policies", 3, "transfers_per_day", "Monday"], 1),
     "/policies/3/transfers_per_day/Monday", "YYYY-MM-DD"),
    ("a day's count as text", setting(["policies", 3, "transfers_per_day", "2026-12-02"], "1"),
     "/policies/3/transfers_per_day/2026-12-02", "whole"),
    ("a goal as text", setting(["policies", 3, "goals", "home_distance"], "0.2"),
     "/policies/3/goals/home_distance", "number"),
    ("users negative", setting(["users"], -1), "/users", "within"),
    ("measured elsewhere", setting(["measured_at"], "elsewhere"), "/measured_at",
     "restores or reports"),
    ("at reports without them", lambda r: (r.update(measured_at="reports"),
                                           r["policies"][1].pop("reports")),
     "/policies/1/reports", "is required"),
]


@pytest.mark.parametrize("what,change,pointer,words", BAD, ids=[b[0] for b in BAD])
def test_a_bad_report_is_refused_naming_the_member_and_nothing_is_stored(
        homing, db, what, change, pointer, words):
    before = stored(db)
    body = copy.deepcopy(sample_report())
    change(body)
    status, headers, raw = homing.post(f"{PATH}?name=bad", body,
                                       token=homing.token("operator"))
    assert status == 422, raw
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(raw)
    assert problem["errors"][0]["pointer"] == pointer
    assert words in problem["errors"][0]["detail"], problem
    assert stored(db) == before


@pytest.mark.parametrize("query,body,content_type,status,says", [
    ("", sample_report(), "application/json", 400, "name"),
    ("?name=", sample_report(), "application/json", 400, "name"),
    ("?name=" + "x" * 129, sample_report(), "application/json", 400, "name"),
    ("?name=%ff", sample_report(), "application/json", 400, "name"),
    ("?name=ok", b"{not json", "application/json", 400, "line 1"),
    ("?name=ok", b"[1, 2]", "application/json", 422, "object"),
    ("?name=ok", json.dumps(sample_report()).encode(), "text/plain", 415, "application/json"),
], ids=["no name", "empty name", "long name", "name not UTF-8", "not JSON", "not an object",
        "not application/json"])
def test_a_bad_request_is_refused_and_nothing_is_stored(homing, db, query, body, content_type,
                                                        status, says):
    before = stored(db)
    got, headers, raw = homing.request("POST", PATH + query, body, content_type=content_type,
                                       token=homing.token("operator"))
    assert got == status, raw
    assert headers["Content-Type"] == "application/problem+json"
    assert says in json.loads(raw)["detail"], raw
    assert stored(db) == before


def refused_from_the_head(homing, path, token, length):
    """The answer to a POST's head alone, announcing `length` bytes: status and body."""
    with socket.create_connection(("127.0.0.1", homing.port), timeout=10) as s:
        s.sendall((f"POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                   f"Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n").encode())
        got = b""
        while b"\r\n\r\n" not in got or not got.rstrip().endswith(b"}"):
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def test_a_report_may_be_bigger_than_other_bodies_up_to_its_own_limit(homing, db):
    operator = homing.token("operator")
    before = stored(db)
    # Other writes keep --max-body-bytes (256 KiB); reports go to 4 MiB, refused from the head.
    status, problem = refused_from_the_head(homing, "/v1/templates", homing.token("admin"),
                                            300_000)
    assert (status, problem["detail"]) == (413, "the body exceeds 262144 bytes")
    status, problem = refused_from_the_head(homing, f"{PATH}?name=too-big", operator,
                                            (4 << 20) + 1)
    assert (status, problem["detail"]) == (413, "the body exceeds 4194304 bytes")
    assert stored(db) == before
    big = sample_report()
    big["padding"] = "x" * 300_000
    made, _ = homing.json("POST", f"{PATH}?name=big", big, expect=201, token=operator)
    assert homing.json("GET", f"{PATH}/{made['id']}")[0]["report"]["padding"] == big["padding"]


def test_writes_need_an_operator_and_reads_a_viewer(homing, db):
    before = stored(db)
    for token, expect in ((None, 401), (homing.token("viewer"), 403)):
        status, _, raw = homing.post(f"{PATH}?name=x", sample_report(), token=token)
        assert status == expect, raw
    assert stored(db) == before
    made, _ = homing.json("POST", f"{PATH}?name=kept", sample_report(), expect=201,
                          token=homing.token("admin"))
    for token, expect in ((None, 401), (homing.token("viewer"), 403)):
        assert homing.request("DELETE", f"{PATH}/{made['id']}", token=token)[0] == expect
    assert homing.get(PATH, token=None)[0] == 401
    assert homing.get(f"{PATH}/{made['id']}", token=None)[0] == 401
    assert homing.get(f"{PATH}/{made['id']}", token=homing.token("viewer"))[0] == 200
    assert homing.get(f"{PATH}/none")[0] == 404


def a_history(tmp_path):
    """One user at x who spends a day at y (222 km) and restores there, three sites."""
    catalog = tmp_path / "sites.csv"
    catalog.write_text("id,lat,lon\nx,0,0\ny,0,2\nz,0,40\n")
    t0 = 1767571200  # 2026-01-05T00:00:00Z

    def at(h):
        return datetime.fromtimestamp(t0 + h * 3600, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    lines = [json.dumps({"device_id": "d-1", "user_id": "u-1", "lat": 0, "lon": lon,
                         "accuracy_m": 10, "ts": at(h), "received_at": at(h)})
             for h, lon in [(h, 0) for h in range(3)] + [(h, 2) for h in range(8, 30)]]
    lines.append(json.dumps({"restore": {"user_id": "u-1", "ts": at(28), "lat": 1, "lon": 2}}))
    history = tmp_path / "history.jsonl"
    history.write_text("\n".join(lines) + "\n")
    return history, catalog


def replay(homing, history, catalog, *args, token=None):
    env = dict(homing.env, HOMING_API_URL=homing.url + "/")
    if token is not None:
        env["HOMING_OPERATOR_TOKEN"] = token
    return subprocess.run([HOMING_BIN, "replay", "--history", str(history), "--catalog",
                           str(catalog), "--snapshot-gib", "1", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_replay_publish_posts_the_figures_json_writes(homing, db, tmp_path):
    history, catalog = a_history(tmp_path)
    figures = tmp_path / "figures.json"
    run = replay(homing, history, catalog, "--json", str(figures), "--publish", "a day at y",
                 token=homing.token("operator", "replayer"))
    assert run.returncode == 0, run.stderr
    rid = db.execute("SELECT max(id) FROM placement_reports").fetchone()[0]
    assert f'published as placement report {rid}, "a day at y": {homing.url}' \
           f"/v1/placement-reports/{rid}" in run.stdout
    got, _ = homing.json("GET", f"{PATH}/{rid}")
    assert got["name"] == "a day at y" and got["created_by"] == "replayer"
    assert got["report"] == answered(json.loads(figures.read_text()))
    assert [p["name"] for p in got["report"]["policies"]] == ["oracle", "home", "naive",
                                                              "homing", "homing+prestage"]
    # The oracle moved to y for the restore there: distance from (1, 2) to (0, 2), 111 km.
    assert got["report"]["policies"][0]["restores"]["mean_km"] == pytest.approx(110.6, abs=0.5)


def test_replay_publish_says_what_the_api_refused(homing, db, tmp_path):
    history, catalog = a_history(tmp_path)
    before = stored(db)
    # No token: refused before the replay runs.
    run = replay(homing, history, catalog, "--publish", "x", token="")
    assert run.returncode == 2 and "operator token" in run.stderr
    # A viewer's token: the API's 403, said.
    run = replay(homing, history, catalog, "--publish", "x", token=homing.token("viewer"))
    assert run.returncode == 1
    assert "the API answered 403" in run.stderr, run.stderr
    # A name the API refuses (over 128 characters): its 400, said.
    run = replay(homing, history, catalog, "--publish", "n" * 129,
                 token=homing.token("operator"))
    assert run.returncode == 1 and "the API answered 400: name" in run.stderr, run.stderr
    assert stored(db) == before


def test_a_report_measured_at_reports_is_summed_up_by_those(homing):
    report = sample_report()
    report.update(measured_at="reports", restores=0)
    made, _ = homing.json("POST", f"{PATH}?name=no-restores", report, expect=201,
                          token=homing.token("operator"))
    assert made["summary"]["measured_at"] == "reports"
    assert [p["mean_km"] for p in made["summary"]["policies"]] == [121.5, 901.25, 151.0, 211.75]
