"""Announced trips (/v1/trips): a device stores its user's booked trip,
lists and withdraws it; bad input is a problem document and stores nothing;
a device may not post faster than its bucket; operators read any user's
trips and remove one, audited."""
import json

import pytest

from conftest import Homing, now_rfc3339

BURST = 8


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-trips", "serve", tmp_path_factory.mktemp("trips"),
               extra={"HOMING_INGEST_RATE_PER_DEVICE": "0.01",
                      "HOMING_INGEST_BURST_PER_DEVICE": str(BURST)})
    h.migrate()
    h.start()
    yield h
    h.stop()


def trip(lat=52.52, lon=13.405, arrive=86400, back=4 * 86400):
    t = {"lat": lat, "lon": lon, "arrive_at": now_rfc3339(arrive)}
    if back is not None:
        t["return_at"] = now_rfc3339(back)
    return t


def stored(db, user):
    return db.execute("SELECT count(*) FROM trips WHERE user_id = %s", (user,)).fetchone()[0]


def test_a_device_announces_lists_and_withdraws_a_trip(homing, db):
    token = homing.device_token("d-t1", "u-t1")
    body = trip()
    got, headers = homing.json("POST", "/v1/trips", body, expect=201, token=token)
    assert got["user_id"] == "u-t1" and got["device_id"] == "d-t1"
    assert (got["lat"], got["lon"]) == (52.52, 13.405)
    assert got["arrive_at"].startswith(body["arrive_at"][:19])
    assert got["return_at"].startswith(body["return_at"][:19])
    assert headers["Location"] == f"/v1/trips/{got['id']}"
    # one-way: no return told
    one_way, _ = homing.json("POST", "/v1/trips", trip(back=None), expect=201, token=token)
    assert one_way["return_at"] is None

    listed, _ = homing.json("GET", "/v1/trips", token=token)
    assert [t["id"] for t in listed["items"]] == [got["id"], one_way["id"]]
    # another user's device sees none of them, and cannot withdraw them
    other = homing.device_token("d-t2", "u-t2")
    assert homing.json("GET", "/v1/trips", token=other)[0]["items"] == []
    status, _, _ = homing.request("DELETE", f"/v1/trips/{got['id']}", token=other)
    assert status == 404
    assert stored(db, "u-t1") == 2

    status, _, _ = homing.request("DELETE", f"/v1/trips/{got['id']}", token=token)
    assert status == 204
    assert [t["id"] for t in homing.json("GET", "/v1/trips", token=token)[0]["items"]] == \
        [one_way["id"]]
    status, _, _ = homing.request("DELETE", f"/v1/trips/{got['id']}", token=token)
    assert status == 404


CASES = {
    "latitude above 90": (dict(trip(), lat=91), "/lat"),
    "longitude below -180": (dict(trip(), lon=-180.5), "/lon"),
    "a string for a number": (dict(trip(), lat="52.5"), "/lat"),
    "no arrival": ({"lat": 1, "lon": 2}, "/arrive_at"),
    "an unparseable arrival": (dict(trip(), arrive_at="tomorrow"), "/arrive_at"),
    "an arrival two days ago": (trip(arrive=-2 * 86400, back=None), "/arrive_at"),
    "an arrival two years ahead": (trip(arrive=2 * 366 * 86400, back=None), "/arrive_at"),
    "a return before the arrival": (trip(arrive=86400, back=3600), "/return_at"),
    "a stay over 90 days": (trip(arrive=86400, back=92 * 86400), "/return_at"),
    "an unknown member": (dict(trip(), altitude=30), "/altitude"),
}


@pytest.mark.parametrize("case", CASES.keys())
def test_bad_trips_get_a_problem_document_and_store_nothing(homing, db, case):
    body, pointer = CASES[case]
    token = homing.device_token("d-bad", "u-bad")
    status, headers, raw = homing.post("/v1/trips", body, token=token)
    assert status == 422, raw
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(raw)
    assert problem["errors"][0]["pointer"] == pointer
    assert problem["detail"]
    assert stored(db, "u-bad") == 0


def test_malformed_json_is_400_and_no_token_is_401(homing, db):
    token = homing.device_token("d-bad", "u-bad")
    status, _, raw = homing.post("/v1/trips", b'{"lat": ', token=token)
    assert status == 400 and json.loads(raw)["type"] == "urn:homing:problem:malformed-json"
    status, _, _ = homing.post("/v1/trips", trip(), token=None)
    assert status == 401
    # an operator token is not a device's: it cannot announce a trip
    status, _, _ = homing.post("/v1/trips", trip(), token=homing.token("admin"))
    assert status == 401
    assert stored(db, "u-bad") == 0


def test_a_device_past_its_bucket_gets_429_and_stores_nothing(homing, db):
    token = homing.device_token("d-rate", "u-rate")
    answers = [homing.post("/v1/trips", trip(arrive=86400 + k), token=token)
               for k in range(BURST + 2)]
    statuses = [a[0] for a in answers]
    assert statuses[:BURST] == [201] * BURST, statuses
    assert statuses[BURST:] == [429, 429]
    assert int(answers[-1][1]["Retry-After"]) >= 1
    assert json.loads(answers[-1][2])["type"] == "urn:homing:problem:rate-limited"
    assert stored(db, "u-rate") == BURST


def test_operators_read_a_users_trips_and_remove_one_audited(homing, db):
    token = homing.device_token("d-op", "u-op")
    got, _ = homing.json("POST", "/v1/trips", trip(lat=-33.87, lon=151.21), expect=201,
                         token=token)
    listed, _ = homing.json("GET", "/v1/users/u-op/trips", token=homing.token("viewer"))
    assert [t["id"] for t in listed["items"]] == [got["id"]]
    path = f"/v1/users/u-op/trips/{got['id']}"
    assert homing.request("DELETE", path, token=homing.token("viewer"))[0] == 403
    assert homing.request("DELETE", "/v1/users/u-other/trips/%d" % got["id"],
                          token=homing.token("operator"))[0] == 404
    assert homing.request("DELETE", path, token=homing.token("operator"))[0] == 204
    assert stored(db, "u-op") == 0
    event = db.execute("SELECT payload FROM outbox WHERE payload::text LIKE "
                       "'%io.homing.trip.deleted%'").fetchone()
    assert event is not None
