"""Bad input gets a clear problem document and produces nothing to Kafka."""
import json

import pytest

from conftest import Homing, now_rfc3339, report, topic_message_count

MAX_BODY = 4096


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-validation", "serve", tmp_path_factory.mktemp("ingest"),
               extra={"HOMING_MAX_BODY_BYTES": str(MAX_BODY),
                      "HOMING_MAX_REPORTS_PER_REQUEST": "10"})
    h.migrate()
    h.start()
    yield h
    h.stop()


def with_field(name, value):
    r = report()
    r[name] = value
    return json.dumps(r).encode()


def without_field(name):
    r = report()
    del r[name]
    return json.dumps(r).encode()


CASES = {
    "invalid JSON": (b'{"device_id": "d-1", ', 400, "malformed-json", None),
    "empty body": (b"", 400, "malformed-json", None),
    "NaN": (with_field("lat", 0).replace(b'"lat": 0', b'"lat": NaN'), 400, "malformed-json", None),
    "Infinity": (with_field("lon", 0).replace(b'"lon": 0', b'"lon": Infinity'), 400,
                 "malformed-json", None),
    "a number too large for a double": (with_field("lat", 0).replace(b'"lat": 0', b'"lat": 1e999'),
                                        400, "malformed-json", None),
    "duplicate member": (b'{"lat": 1, "lat": 2}', 400, "malformed-json", None),
    "missing lat": (without_field("lat"), 422, "invalid-report", "/lat"),
    "missing device_id": (without_field("device_id"), 422, "invalid-report", "/device_id"),
    "missing ts": (without_field("ts"), 422, "invalid-report", "/ts"),
    "latitude above 90": (with_field("lat", 90.5), 422, "invalid-report", "/lat"),
    "latitude below -90": (with_field("lat", -91), 422, "invalid-report", "/lat"),
    "longitude above 180": (with_field("lon", 180.0001), 422, "invalid-report", "/lon"),
    "longitude below -180": (with_field("lon", -200), 422, "invalid-report", "/lon"),
    "a string for a number": (with_field("lat", "48.85"), 422, "invalid-report", "/lat"),
    "a boolean for a number": (with_field("accuracy_m", True), 422, "invalid-report", "/accuracy_m"),
    "negative accuracy": (with_field("accuracy_m", -1), 422, "invalid-report", "/accuracy_m"),
    "unparseable timestamp": (with_field("ts", "25/11/2026 19:00"), 422, "invalid-report", "/ts"),
    "timestamp far in the future": (with_field("ts", now_rfc3339(3600)), 422, "invalid-report",
                                    "/ts"),
    "a number for the user id": (with_field("user_id", 42), 422, "invalid-report", "/user_id"),
    "an unknown field": (with_field("altitude", 35), 422, "invalid-report", "/altitude"),
    "an empty array": (b"[]", 422, "invalid-report", None),
    "an array with one bad report": (json.dumps([report(), report(lat=95)]).encode(), 422,
                                     "invalid-report", "/1/lat"),
    "too many reports": (json.dumps([report()] * 11).encode(), 422, "invalid-report", None),
    "a scalar": (b"42", 422, "invalid-report", None),
    "a body over the limit": (json.dumps([report()] * 60).encode(), 413, "body-too-large", None),
}


@pytest.mark.parametrize("case", CASES.keys())
def test_bad_input_gets_a_problem_document(homing, case):
    body, status, slug, pointer = CASES[case]
    assert case != "a body over the limit" or len(body) > MAX_BODY
    got, headers, raw = homing.post("/v1/locations", body)
    assert got == status, raw
    assert headers["Content-Type"] == "application/problem+json"
    problem = json.loads(raw)
    assert problem["type"] == f"urn:homing:problem:{slug}"
    assert problem["status"] == status
    assert problem["title"] and problem["detail"]
    if pointer:
        assert problem["errors"][0]["pointer"] == pointer


def test_a_wrong_content_type_is_refused(homing):
    got, headers, raw = homing.post("/v1/locations", json.dumps(report()).encode(),
                                    content_type="text/plain")
    assert got == 415
    assert json.loads(raw)["type"] == "urn:homing:problem:unsupported-media-type"


def test_unknown_routes_and_methods_are_problems_too(homing):
    got, headers, _ = homing.get("/v1/nowhere")
    assert got == 404 and headers["Content-Type"] == "application/problem+json"
    got, headers, _ = homing.get("/v1/locations")
    assert got == 405 and headers["Content-Type"] == "application/problem+json"


def test_nothing_bad_reached_kafka_and_good_input_still_does(homing, topics):
    # Every case above ran first (pytest keeps file order): none produced anything.
    assert topic_message_count(topics["locations"]) == 0
    got, _, _ = homing.post("/v1/locations", report(ts="2026-11-25T20:00:00.5+01:00"))
    assert got == 202
    assert topic_message_count(topics["locations"]) == 1
