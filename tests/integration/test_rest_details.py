"""The small promises of the REST API: If-Match compares strongly and never
creates, a too-long token name is the client's error, a path that is not
UTF-8 gets a problem answer, the dashboard carries a Content-Security-Policy,
and answers that carry a secret are never cached."""
import json
import socket

import pytest

from conftest import homing_with_catalog

SQUARE = {"type": "Polygon",
          "coordinates": [[[-10, 35], [30, 35], [30, 60], [-10, 60], [-10, 35]]]}


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "test-details", "serve",
                                   tmp_path_factory.mktemp("details"))


@pytest.fixture(scope="module")
def admin(homing):
    return homing.token("admin", "root")


def test_a_weak_etag_does_not_pass_if_match(homing, admin):
    _, headers = homing.json("GET", "/v1/datacenters/t-paris")
    etag = headers["ETag"]
    assert not etag.startswith("W/")
    status, _, raw = homing.request("PATCH", "/v1/datacenters/t-paris", {"name": "weak"},
                                    token=admin, headers={"If-Match": f"W/{etag}"})
    assert status == 412, raw
    assert homing.json("GET", "/v1/datacenters/t-paris")[0]["name"] != "weak"
    # The strong tag itself passes.
    homing.json("PATCH", "/v1/datacenters/t-paris", {"name": "strong"}, token=admin,
                headers={"If-Match": etag})


def test_if_match_star_does_not_create_a_zone(homing, db, admin):
    status, _, raw = homing.request("PUT", "/v1/zones/nowhere",
                                    {"name": "Nowhere", "geojson": SQUARE}, token=admin,
                                    headers={"If-Match": "*"})
    assert status == 412, raw
    assert json.loads(raw)["type"] == "urn:homing:problem:precondition-failed"
    assert db.execute("SELECT count(*) FROM zones WHERE id = 'nowhere'").fetchone()[0] == 0
    # Without If-Match the PUT creates; then If-Match: * replaces.
    homing.json("PUT", "/v1/zones/nowhere", {"name": "Nowhere", "geojson": SQUARE},
                expect=201, token=admin)
    homing.json("PUT", "/v1/zones/nowhere", {"name": "Somewhere", "geojson": SQUARE},
                token=admin, headers={"If-Match": "*"})


def test_a_too_long_token_name_is_refused_as_invalid(homing, db, admin):
    status, headers, raw = homing.request("POST", "/v1/tokens",
                                          {"name": "n" * 200, "role": "viewer"}, token=admin)
    assert status == 422, raw
    assert json.loads(raw)["errors"][0]["pointer"] == "/name"
    assert db.execute("SELECT count(*) FROM operator_tokens WHERE length(name) > 128")\
        .fetchone()[0] == 0


def test_a_path_that_is_not_utf8_gets_a_problem(homing):
    with socket.create_connection(("127.0.0.1", homing.port), timeout=5) as s:
        s.sendall(b"GET /v1/zones/%FF%FE HTTP/1.1\r\nHost: x\r\n"
                  b"Authorization: Bearer " + homing.token("viewer").encode() +
                  b"\r\nConnection: close\r\n\r\n")
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 "), got
    assert b"application/problem+json" in head
    assert json.loads(body)["type"] == "urn:homing:problem:invalid-path"


def test_the_dashboard_carries_a_content_security_policy(homing):
    for path in ("/", "/dashboard/app.js"):
        status, headers, _ = homing.get(path)
        assert status == 200, path
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "'unsafe-inline'" not in csp
        assert headers["X-Content-Type-Options"] == "nosniff"


def test_answers_carrying_a_secret_are_not_cached(homing, admin):
    status, headers, raw = homing.request("POST", "/v1/tokens", {"name": "n", "role": "viewer"},
                                          token=admin)
    assert status == 201 and "token" in json.loads(raw)
    assert headers["Cache-Control"] == "no-store"
    status, headers, raw = homing.request("POST", "/v1/device-tokens",
                                          {"device_id": "d-1", "user_id": "u-1"}, token=admin)
    assert status == 201 and "token" in json.loads(raw)
    assert headers["Cache-Control"] == "no-store"
