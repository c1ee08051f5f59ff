"""Access control: devices and operators are told apart, and neither may do
what isn't theirs. Every protected route answers 401 without a token and
403 with a role too weak; a device token speaks only for its own device and
user; operator tokens are stored hashed and can be revoked."""
import hashlib
import json
import os
import subprocess
import time

import pytest

from conftest import HOMING_BIN, Homing, report

RANK = {"viewer": 1, "operator": 2, "admin": 3}


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-access", "serve", tmp_path_factory.mktemp("access"))
    h.migrate()
    h.start()
    yield h
    h.stop()


def routes():
    out = subprocess.run([HOMING_BIN, "routes"], check=True, capture_output=True,
                         text=True).stdout
    return [tuple(line.split()[:3]) for line in out.splitlines()]


def concrete(path):
    """A path template with its parameters filled in."""
    return (path.replace("{file}", "app.js").replace("{datacenter_id}", "dc-none")
            .replace("/transfers/{id}", "/transfers/999999").replace("/tokens/{id}", "/tokens/999999")
            .replace("{id}", "none"))


def call(homing, method, path, token):
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return homing.request(method, concrete(path), body, token=token)


PROTECTED = [r for r in routes() if r[2] != "public"]
OPERATOR_ROUTES = [r for r in routes() if r[2] in RANK]
AGENT_ROUTES = [r for r in routes() if r[2] == "agent"]


@pytest.fixture(scope="module")
def agent_token(homing, db):
    db.execute("INSERT INTO datacenters (id, name, lat, lon) VALUES ('dc-agent', 'A', 1, 2)")
    return homing.homing("token", "agent", "--datacenter", "dc-agent")


@pytest.mark.parametrize("method,path,access", PROTECTED,
                         ids=[f"{m} {p}" for m, p, _ in PROTECTED])
def test_every_protected_route_answers_401_without_a_token(homing, method, path, access):
    status, headers, raw = call(homing, method, path, None)
    assert status == 401, raw
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["WWW-Authenticate"].startswith("Bearer")
    assert json.loads(raw)["type"] == "urn:homing:problem:unauthorized"


@pytest.mark.parametrize("method,path,access", OPERATOR_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in OPERATOR_ROUTES])
def test_roles_too_weak_get_403_and_strong_enough_get_through(homing, method, path, access):
    for role in RANK:
        status, _, raw = call(homing, method, path, homing.token(role))
        if RANK[role] < RANK[access]:
            assert status == 403, f"{role}: {raw!r}"
            assert json.loads(raw)["type"] == "urn:homing:problem:forbidden"
        else:
            assert status not in (401, 403), f"{role}: {status} {raw!r}"


@pytest.mark.parametrize("method,path,access", AGENT_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in AGENT_ROUTES])
def test_agent_routes_refuse_operator_and_device_tokens_and_take_agent_tokens(
        homing, agent_token, method, path, access):
    for token in [homing.token(role) for role in RANK] + [homing.device_token()]:
        status, _, raw = call(homing, method, path, token)
        assert status == 403, raw
        assert json.loads(raw)["type"] == "urn:homing:problem:forbidden"
    assert call(homing, method, path, agent_token)[0] not in (401, 403)


@pytest.mark.parametrize("method,path,access", OPERATOR_ROUTES,
                         ids=[f"{m} {p}" for m, p, _ in OPERATOR_ROUTES])
def test_an_agent_token_is_403_on_every_operator_route(homing, agent_token, method, path,
                                                       access):
    status, _, raw = call(homing, method, path, agent_token)
    assert status == 403, raw
    assert json.loads(raw)["type"] == "urn:homing:problem:forbidden"


def test_public_routes_need_no_token(homing):
    for method, path, access in routes():
        if access == "public":
            assert call(homing, method, path, None)[0] not in (401, 403), path


def test_a_device_token_cannot_read_the_operator_api(homing):
    status, _, raw = homing.get("/v1/datacenters", token=homing.device_token())
    assert status == 403, raw


def test_an_operator_token_cannot_post_locations(homing):
    status, _, _ = homing.post("/v1/locations", report(), token=homing.token("admin"))
    assert status == 401


def test_a_device_token_posts_for_its_own_device_and_user(homing):
    token = homing.device_token("d-own", "u-own")
    status, _, raw = homing.post("/v1/locations", report(user="u-own", device="d-own"),
                                 token=token)
    assert status == 202, raw


def test_a_device_token_cannot_post_for_another_user_or_device(homing):
    token = homing.device_token("d-own", "u-own")
    status, headers, raw = homing.post("/v1/locations", report(user="u-other", device="d-own"),
                                       token=token)
    assert status == 403, raw
    assert headers["Content-Type"] == "application/problem+json"
    assert json.loads(raw)["errors"][0]["pointer"] == "/user_id"

    status, _, raw = homing.post("/v1/locations", report(user="u-own", device="d-other"),
                                 token=token)
    assert status == 403 and json.loads(raw)["errors"][0]["pointer"] == "/device_id"

    # One foreign report spoils the whole batch: nothing of it is accepted.
    batch = [report(user="u-own", device="d-own"), report(user="u-other", device="d-own")]
    status, _, raw = homing.post("/v1/locations", batch, token=token)
    assert status == 403 and json.loads(raw)["errors"][0]["pointer"] == "/1/user_id"


def test_expired_forged_and_foreign_device_tokens_get_401(homing):
    expired = homing.device_token("d-1", "u-1", ttl="1s")
    time.sleep(1.2)
    assert homing.post("/v1/locations", report(), token=expired)[0] == 401

    good = homing.device_token("d-1", "u-1")
    flipped = good[:-3] + ("A" if good[-3] != "A" else "B") + good[-2:]
    assert homing.post("/v1/locations", report(), token=flipped)[0] == 401

    other_env = dict(homing.env, HOMING_DEVICE_TOKEN_KEYS="kt:" + "QUJD" * 11)
    foreign = subprocess.run([HOMING_BIN, "token", "device", "--device", "d-1", "--user", "u-1"],
                             env=other_env, check=True, capture_output=True,
                             text=True).stdout.strip()
    assert homing.post("/v1/locations", report(), token=foreign)[0] == 401
    assert homing.post("/v1/locations", report(), token="not-a-token")[0] == 401


def test_keys_rotate_old_tokens_keep_working_while_their_key_is_listed(homing, database, topics,
                                                                       tmp_path_factory):
    old_token = homing.device_token("d-rot", "u-rot")
    new_key = subprocess.run([HOMING_BIN, "token", "key", "--kid", "k2"], check=True,
                             capture_output=True, text=True).stdout.strip()
    rotated = Homing(database, topics, "test-access-rotated", "serve",
                     tmp_path_factory.mktemp("rotated"),
                     extra={"HOMING_DEVICE_TOKEN_KEYS":
                            new_key + "," + homing.env["HOMING_DEVICE_TOKEN_KEYS"]})
    rotated.start()
    try:
        new_token = rotated.device_token("d-rot", "u-rot")
        assert new_token.startswith("v1.k2.")
        body = report(user="u-rot", device="d-rot")
        assert rotated.post("/v1/locations", body, token=old_token)[0] == 202
        assert rotated.post("/v1/locations", body, token=new_token)[0] == 202
        # The old server never heard of k2.
        assert homing.post("/v1/locations", body, token=new_token)[0] == 401
    finally:
        rotated.stop()


def test_operator_tokens_are_stored_hashed_and_can_be_revoked(homing, db):
    admin = homing.token("admin")
    made, headers = homing.json("POST", "/v1/tokens", {"name": "temp", "role": "viewer"},
                                expect=201, token=admin)
    secret = made["token"]
    assert secret.startswith("hop_") and headers["Location"] == f"/v1/tokens/{made['id']}"

    row = db.execute("SELECT * FROM operator_tokens WHERE id = %s", (made["id"],)).fetchone()
    assert hashlib.sha256(secret.encode()).hexdigest() in row
    assert not any(secret in str(col) for col in row)
    listed, _ = homing.json("GET", "/v1/tokens", token=admin)
    assert all("token" not in t for t in listed["items"])

    assert homing.get("/v1/me", token=secret)[0] == 200
    status, _, _ = homing.request("DELETE", f"/v1/tokens/{made['id']}", token=admin)
    assert status == 204
    assert homing.get("/v1/me", token=secret)[0] == 401


def test_a_token_says_who_it_is(homing):
    me, _ = homing.json("GET", "/v1/me", token=homing.token("operator"))
    assert me["kind"] == "operator" and me["role"] == "operator"
    assert me["name"] == "test-operator"


def test_other_authorization_schemes_get_401(homing):
    status, headers, _ = homing.get("/v1/datacenters", token=None,
                                    headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert status == 401 and "Bearer" in headers["WWW-Authenticate"]
