"""The API's agent routes (agent/README.md) against the real PostgreSQL: agent
tokens scoped to one datacenter; claims by priority, then age; leases that
expire and are taken over; cancel, success and failure seen by the agent
holding the transfer; pull tickets; version registration; and bad bodies
that change nothing. Every event the agents cause fits its schema."""
import hashlib
import json
import subprocess
import time
from datetime import datetime, timezone

import pytest

from conftest import homing_with_catalog, seed_snapshot, wait_for
from test_audit_events import check_event

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64
AGENT_EVENTS = {"io.homing.transfer.running", "io.homing.transfer.succeeded",
                "io.homing.transfer.failed", "io.homing.transfer.requeued",
                "io.homing.snapshot.version_registered"}
JOB_KEYS = {"transfer_id", "snapshot_id", "version", "content_sha256", "template_id",
            "template_present", "from_dc", "source_url", "template_source_url", "priority",
            "bytes_total", "lease_s", "lease_expires_at", "attempt", "max_attempts", "ticket",
            "have_versions"}


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "test-agent-api", "serve",
                                   tmp_path_factory.mktemp("agent"),
                                   extra={"HOMING_TOKEN_CACHE_S": "2"})


@pytest.fixture(autouse=True)
def nothing_in_flight(homing, db):
    """Each test starts with no open transfer, so claims see only its own."""
    db.execute("UPDATE transfers SET state = 'cancelled', finished_at = now()"
               " WHERE state IN ('queued', 'running')")


TOKENS = {}


def agent(homing, dc):
    if dc not in TOKENS:
        TOKENS[dc] = homing.homing("token", "agent", "--datacenter", dc)
    return TOKENS[dc]


def call(homing, dc, method, path, body=None, **kw):
    """An agent route as the agent of dc (or with token=...): (status, doc)."""
    token = kw.pop("token", None) or agent(homing, dc)
    status, headers, raw = homing.request(method, path, body, token=token, **kw)
    if status >= 400:
        assert headers["Content-Type"] == "application/problem+json", raw
    return status, (json.loads(raw) if raw else None)


def claim(homing, dc, owner="agent-1", lease_s=30):
    return call(homing, dc, "POST", "/v1/agent/claim", {"owner": owner, "lease_s": lease_s})


def progress(homing, dc, tid, owner="agent-1", done=100, sent=50):
    return call(homing, dc, "POST", f"/v1/agent/transfers/{tid}/progress",
                {"owner": owner, "bytes_done": done, "bytes_sent": sent})


def succeed(homing, dc, tid, owner="agent-1", digest=DIGEST_A, sent=400):
    return call(homing, dc, "POST", f"/v1/agent/transfers/{tid}/succeeded",
                {"owner": owner, "content_sha256": digest, "bytes_sent": sent})


def fail(homing, dc, tid, owner="agent-1", retry=True, error="disk full"):
    return call(homing, dc, "POST", f"/v1/agent/transfers/{tid}/failed",
                {"owner": owner, "error": error, "retry": retry})


def verify(homing, dc, tid, ticket):
    return call(homing, dc, "POST", "/v1/agent/pulls/verify",
                {"transfer_id": tid, "ticket": ticket})


def register(homing, dc, snapshot, version, digest=DIGEST_B, size=600):
    return call(homing, dc, "POST", f"/v1/agent/snapshots/{snapshot}/versions",
                {"version": version, "content_sha256": digest, "size_bytes": size,
                 "virtual_size": 4096, "config": {"vcpus": 2, "memory_mib": 2048}})


class Seq:
    n = 0


def add_transfer(db, from_dc, to_dc, priority=3, age_s=0, present=True, snapshot=None,
                 bytes_total=500):
    """A snapshot at from_dc and a queued transfer of it to to_dc, created age_s ago."""
    Seq.n += 1
    snapshot = snapshot or seed_snapshot(db, f"u-agent-{Seq.n}", from_dc)
    return db.execute(
        "INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id, template_present,"
        " priority, reason, idempotency_key, bytes_total, created_at)"
        " VALUES (%s, %s, %s, 'tpl-1', %s, %s, 'closer', %s, %s,"
        "         now() - make_interval(secs => %s)) RETURNING id",
        (snapshot, from_dc, to_dc, present, priority, f"test-{Seq.n}", bytes_total, age_s),
    ).fetchone()[0]


def transfer_row(db, tid):
    row = db.execute("SELECT to_jsonb(t) FROM transfers t WHERE id = %s", (tid,)).fetchone()
    return row[0]


def placements(db, snapshot):
    return db.execute("SELECT datacenter_id, version, active, content_sha256,"
                      " evicted_at IS NULL FROM placements WHERE snapshot_id = %s ORDER BY id",
                      (snapshot,)).fetchall()


def outbox_count(db):
    return db.execute("SELECT count(*) FROM outbox").fetchone()[0]


def parse_time(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


# ---- tokens ------------------------------------------------------------------------------


def test_agent_tokens_are_stored_hashed_and_say_which_datacenter(homing, db):
    token = agent(homing, "t-paris")
    assert token.startswith("hag_") and len(token) == 4 + 43
    row = db.execute("SELECT datacenter_id, name, secret_sha256 FROM agent_tokens"
                     " WHERE secret_sha256 = %s",
                     (hashlib.sha256(token.encode()).hexdigest(),)).fetchone()
    assert row[:2] == ("t-paris", "agent-t-paris")
    assert not db.execute("SELECT count(*) FROM agent_tokens WHERE secret_sha256 = %s"
                          " OR name = %s", (token, token)).fetchone()[0]
    named = homing.homing("token", "agent", "--datacenter", "t-paris", "--name", "paris-2")
    assert named != token
    with pytest.raises(subprocess.CalledProcessError):
        homing.homing("token", "agent", "--datacenter", "t-atlantis")
    with pytest.raises(subprocess.CalledProcessError):
        homing.homing("token", "agent")


def test_agent_routes_take_agent_tokens_only(homing):
    for token, status in ((None, 401), ("hag_" + "A" * 43, 401), ("not-a-token", 401),
                          (homing.token("admin"), 403), ("hop_" + "A" * 43, 401),
                          (homing.device_token(), 403)):
        got, headers, raw = homing.request("POST", "/v1/agent/claim", {"owner": "x"},
                                           token=token)
        assert got == status, f"{token}: {got} {raw!r}"
        assert headers["Content-Type"] == "application/problem+json"
        if status == 401:
            assert headers["WWW-Authenticate"].startswith("Bearer")


def test_an_agent_token_opens_no_other_route(homing):
    token = agent(homing, "t-paris")
    for method, path in (("GET", "/v1/datacenters"), ("GET", "/v1/me"),
                         ("GET", "/v1/transfers"), ("POST", "/v1/transfers/1/cancel"),
                         ("POST", "/v1/tokens"), ("GET", "/metrics")):
        status, _, raw = homing.request(method, path, {} if method == "POST" else None,
                                        token=token)
        assert status == 403, f"{method} {path}: {status} {raw!r}"
        assert json.loads(raw)["type"] == "urn:homing:problem:forbidden"


def test_a_revoked_agent_token_is_401(homing, db):
    token = homing.homing("token", "agent", "--datacenter", "t-sydney", "--name", "gone")
    assert call(homing, None, "POST", "/v1/agent/claim", {"owner": "x"}, token=token)[0] == 204
    db.execute("UPDATE agent_tokens SET revoked_at = now() WHERE name = 'gone'")
    # Revoked behind the API's back: refused once --token-cache-s has passed.
    wait_for(lambda: call(homing, None, "POST", "/v1/agent/claim", {"owner": "x"},
                          token=token)[0] == 401, timeout=10, interval=0.5,
             what="the revoked token to be refused")


def test_an_agent_claims_and_touches_only_its_own_datacenters_transfers(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    assert claim(homing, "t-paris")[0] == 204
    assert claim(homing, "t-tokyo")[0] == 204
    status, job = claim(homing, "t-frankfurt")
    assert status == 200 and job["transfer_id"] == tid
    # Another datacenter's agent cannot see it, whatever owner name it gives.
    for dc in ("t-paris", "t-tokyo"):
        assert progress(homing, dc, tid)[0] == 404
        assert succeed(homing, dc, tid)[0] == 404
        assert fail(homing, dc, tid)[0] == 404
    assert transfer_row(db, tid)["state"] == "running"
    assert progress(homing, "t-frankfurt", 999999)[0] == 404
    assert progress(homing, "t-frankfurt", "abc")[0] == 404


# ---- claims -----------------------------------------------------------------------------


def test_claims_go_by_priority_then_age_and_skip_what_is_not_due(homing, db):
    old3 = add_transfer(db, "t-paris", "t-frankfurt", priority=3, age_s=300)
    new1 = add_transfer(db, "t-paris", "t-frankfurt", priority=1, age_s=10)
    new3 = add_transfer(db, "t-tokyo", "t-frankfurt", priority=3, age_s=100)
    oldest5 = add_transfer(db, "t-tokyo", "t-frankfurt", priority=5, age_s=900)
    backoff = add_transfer(db, "t-paris", "t-frankfurt", priority=1, age_s=999)
    db.execute("UPDATE transfers SET not_before = now() + interval '1 hour' WHERE id = %s",
               (backoff,))
    elsewhere = add_transfer(db, "t-paris", "t-virginia", priority=1, age_s=999)

    order = []
    while True:
        status, job = claim(homing, "t-frankfurt")
        if status == 204:
            break
        assert status == 200
        order.append(job["transfer_id"])
    assert order == [new1, old3, new3, oldest5]
    assert transfer_row(db, backoff)["state"] == "queued"
    assert transfer_row(db, elsewhere)["state"] == "queued"


def test_a_claim_answers_the_job_and_keeps_only_the_tickets_hash(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt", priority=2, bytes_total=52428800)
    before = datetime.now(timezone.utc)
    status, job = claim(homing, "t-frankfurt", owner="fra-a", lease_s=20)
    assert status == 200
    assert set(job) == JOB_KEYS
    assert (job["transfer_id"], job["from_dc"], job["priority"], job["bytes_total"],
            job["lease_s"], job["attempt"], job["template_id"]) == \
        (tid, "t-paris", 2, 52428800, 20, 1, "tpl-1")
    assert job["version"] == 1 and job["content_sha256"] is None
    assert job["have_versions"] == []
    assert len(job["ticket"]) == 43
    row = transfer_row(db, tid)
    assert row["state"] == "running" and row["lease_owner"] == "fra-a"
    assert row["attempts"] == 1 and row["started_at"] is not None
    assert row["pull_ticket_sha256"] == hashlib.sha256(job["ticket"].encode()).hexdigest()
    assert job["ticket"] not in json.dumps(row)
    expires = parse_time(job["lease_expires_at"])
    assert 15 <= (expires - before).total_seconds() <= 25
    # The ticket is in the answer only: not in the transfer, not in the audit event.
    [event] = db.execute("SELECT payload FROM outbox WHERE payload->>'type' ="
                         " 'io.homing.transfer.running' AND (payload->'data'->>'transfer_id')"
                         "::bigint = %s", (tid,)).fetchone()
    assert job["ticket"] not in json.dumps(event)
    actor = event["data"]["actor"]
    assert (actor["kind"], actor["name"], actor["datacenter_id"]) == \
        ("agent", "agent-t-frankfurt", "t-frankfurt")
    shown, _ = homing.json("GET", f"/v1/transfers/{tid}")
    assert shown["lease_owner"] == "fra-a" and shown["version"] == 1
    assert shown["lease_expires_at"] == job["lease_expires_at"]
    assert shown["bytes_sent"] == 0 and shown["finished_at"] is None and shown["started_at"]


def test_the_job_names_the_sources_and_the_cached_copies(homing, db):
    urls = {}
    for dc in ("t-paris", "t-tokyo", "t-virginia"):
        urls[dc] = f"http://127.0.0.1:7001/dc/{dc}"
        status, doc = call(homing, dc, "PUT", "/v1/agent/endpoint", {"url": urls[dc]})
        assert status == 200 and doc == {"datacenter_id": dc, "url": urls[dc]}
    dc_doc, _ = homing.json("GET", "/v1/datacenters/t-paris")
    assert dc_doc["agent_url"] == urls["t-paris"]

    # From Ashburn, which lacks the template, to Frankfurt: the nearest holder
    # of the template with an agent is Paris (Tokyo holds it too).
    snapshot = seed_snapshot(db, "u-agent-sources", "t-virginia")
    db.execute("UPDATE snapshots SET version = 3 WHERE id = %s", (snapshot,))
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size) VALUES (%s, 3, %s, 500, 4096)", (snapshot, DIGEST_A))
    for version, evicted in ((1, False), (2, False), (2, False), (1, True)):
        db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
                   " evicted_at) VALUES (%s, 't-frankfurt', %s, false,"
                   " CASE WHEN %s THEN now() END)", (snapshot, version, evicted))
    tid = add_transfer(db, "t-virginia", "t-frankfurt", present=False, snapshot=snapshot)
    status, job = claim(homing, "t-frankfurt")
    assert status == 200 and job["transfer_id"] == tid
    assert job["version"] == 3 and job["content_sha256"] == DIGEST_A
    assert job["source_url"] == urls["t-virginia"]
    assert job["template_present"] is False
    assert job["template_source_url"] == urls["t-paris"]
    assert job["have_versions"] == [1, 2]

    # Once the target holds the template, it is not named.
    db.execute("INSERT INTO template_replicas VALUES ('tpl-1', 't-sydney')")
    tid = add_transfer(db, "t-virginia", "t-sydney", present=False)
    status, job = claim(homing, "t-sydney")
    assert job["transfer_id"] == tid
    assert job["template_present"] is True and job["template_source_url"] is None
    db.execute("DELETE FROM template_replicas WHERE datacenter_id = 't-sydney'")


def test_an_endpoint_that_is_not_a_url_is_refused(homing, db):
    before = db.execute("SELECT agent_url, row_version FROM datacenters"
                        " WHERE id = 't-tokyo'").fetchone()
    for url in ("ftp://x", "http://", "http://a b", "", 7, None):
        status, doc = call(homing, "t-tokyo", "PUT", "/v1/agent/endpoint", {"url": url})
        assert status == 422 and doc["errors"][0]["pointer"] == "/url", (url, doc)
    assert db.execute("SELECT agent_url, row_version FROM datacenters"
                      " WHERE id = 't-tokyo'").fetchone() == before


# ---- leases, cancel ---------------------------------------------------------------------


def test_an_expired_lease_is_taken_over_and_the_old_owner_must_stop(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    _, first = claim(homing, "t-frankfurt", owner="fra-a", lease_s=30)
    # A live lease is not claimable.
    assert claim(homing, "t-frankfurt", owner="fra-b")[0] == 204
    status, doc = progress(homing, "t-frankfurt", tid, owner="fra-a", done=10, sent=10)
    assert status == 200 and doc["state"] == "running"
    assert transfer_row(db, tid)["bytes_done"] == 10

    db.execute("UPDATE transfers SET lease_expires_at = now() - interval '1 second'"
               " WHERE id = %s", (tid,))
    status, second = claim(homing, "t-frankfurt", owner="fra-b", lease_s=30)
    assert status == 200 and second["transfer_id"] == tid and second["attempt"] == 2
    assert second["ticket"] != first["ticket"]

    status, doc = progress(homing, "t-frankfurt", tid, owner="fra-a")
    assert status == 409 and doc["type"] == "urn:homing:problem:transfer-not-running"
    assert succeed(homing, "t-frankfurt", tid, owner="fra-a")[0] == 409
    assert fail(homing, "t-frankfurt", tid, owner="fra-a")[0] == 409
    assert verify(homing, "t-paris", tid, first["ticket"])[0] == 403
    assert verify(homing, "t-paris", tid, second["ticket"])[0] == 200

    lease = "SELECT lease_expires_at FROM transfers WHERE id = %s"
    before = db.execute(lease, (tid,)).fetchone()[0]
    time.sleep(0.05)
    status, doc = progress(homing, "t-frankfurt", tid, owner="fra-b", done=300, sent=200)
    assert status == 200
    row = transfer_row(db, tid)
    assert row["lease_owner"] == "fra-b" and db.execute(lease, (tid,)).fetchone()[0] > before
    assert (row["bytes_done"], row["bytes_sent"]) == (300, 200)
    assert parse_time(doc["lease_expires_at"]) > datetime.now(timezone.utc)


def test_a_transfer_whose_agent_went_silent_on_its_last_attempt_fails(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    db.execute("UPDATE transfers SET max_attempts = 2 WHERE id = %s", (tid,))
    reserved = db.execute("SELECT reserved_bytes FROM datacenters WHERE id = 't-frankfurt'"
                          ).fetchone()[0]
    for attempt in (1, 2):
        status, job = claim(homing, "t-frankfurt", owner=f"fra-{attempt}", lease_s=30)
        assert status == 200 and job["transfer_id"] == tid and job["attempt"] == attempt
        # The agent dies: its lease runs out.
        db.execute("UPDATE transfers SET lease_expires_at = now() - interval '1 second'"
                   " WHERE id = %s", (tid,))
    # Out of attempts: the next claim ends it failed instead of taking it over.
    assert claim(homing, "t-frankfurt", owner="fra-3")[0] == 204
    row = transfer_row(db, tid)
    assert row["state"] == "failed" and row["attempts"] == 2
    assert "lease ran out on attempt 2 of 2" in row["error"]
    event = db.execute("SELECT payload FROM outbox WHERE payload->>'type' ="
                       " 'io.homing.transfer.failed' AND (payload->'data'->>'transfer_id')::bigint"
                       " = %s", (tid,)).fetchone()[0]
    check_event(event)
    assert event["data"]["retry"] is False and event["data"]["transfer"]["state"] == "failed"
    assert db.execute("SELECT reserved_bytes FROM datacenters WHERE id = 't-frankfurt'"
                      ).fetchone()[0] <= reserved


def test_a_cancelled_transfer_tells_its_agent_to_stop(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    _, job = claim(homing, "t-frankfurt")
    assert progress(homing, "t-frankfurt", tid)[0] == 200
    homing.json("POST", f"/v1/transfers/{tid}/cancel", token=homing.token("operator"))
    status, doc = progress(homing, "t-frankfurt", tid)
    assert status == 409 and doc["type"] == "urn:homing:problem:transfer-not-running"
    assert "cancelled" in doc["detail"]
    assert succeed(homing, "t-frankfurt", tid)[0] == 409
    assert fail(homing, "t-frankfurt", tid)[0] == 409
    assert verify(homing, "t-paris", tid, job["ticket"])[0] == 403
    assert transfer_row(db, tid)["state"] == "cancelled"


# ---- success, failure -------------------------------------------------------------------


def test_success_moves_the_placement_to_the_verified_copy(homing, db):
    snapshot = seed_snapshot(db, "u-agent-success", "t-paris")
    # Paris, where the snapshot is, registers the content of its version 1.
    status, doc = register(homing, "t-paris", snapshot, 1, digest=DIGEST_A, size=500)
    assert status == 201 and doc["version"] == 1 and doc["datacenter_id"] == "t-paris"
    assert placements(db, snapshot) == [("t-paris", 1, True, DIGEST_A, True)]

    tid = add_transfer(db, "t-paris", "t-frankfurt", snapshot=snapshot)
    _, job = claim(homing, "t-frankfurt")
    assert job["content_sha256"] == DIGEST_A
    outbox = outbox_count(db)

    status, doc = succeed(homing, "t-frankfurt", tid, digest=DIGEST_B)
    assert status == 422 and doc["type"] == "urn:homing:problem:digest-mismatch"
    assert doc["errors"][0]["pointer"] == "/content_sha256"
    assert status == 422 and transfer_row(db, tid)["state"] == "running"
    assert succeed(homing, "t-frankfurt", tid, owner="someone-else")[0] == 409
    assert placements(db, snapshot) == [("t-paris", 1, True, DIGEST_A, True)]
    assert outbox_count(db) == outbox

    status, doc = succeed(homing, "t-frankfurt", tid, digest=DIGEST_A, sent=123)
    assert status == 200 and doc["state"] == "succeeded" and doc["id"] == tid
    assert doc["bytes_sent"] == 123 and doc["finished_at"] and doc["lease_expires_at"] is None
    # Exactly one active copy, the verified one; the old one stays cached.
    assert placements(db, snapshot) == [("t-paris", 1, False, DIGEST_A, True),
                                        ("t-frankfurt", 1, True, DIGEST_A, True)]
    assert succeed(homing, "t-frankfurt", tid)[0] == 409

    # Coming back to Paris, the agent there is told of its cached copy.
    back = add_transfer(db, "t-frankfurt", "t-paris", snapshot=snapshot)
    _, job = claim(homing, "t-paris")
    assert job["transfer_id"] == back and job["have_versions"] == [1]


def test_a_legacy_version_without_a_digest_takes_the_agents(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    snapshot = transfer_row(db, tid)["snapshot_id"]
    claim(homing, "t-frankfurt")
    assert succeed(homing, "t-frankfurt", tid, digest=DIGEST_B)[0] == 200
    assert placements(db, snapshot)[-1] == ("t-frankfurt", 1, True, DIGEST_B, True)


def test_a_failure_is_retried_after_a_back_off_then_fails_for_good(homing, db):
    tid = first = add_transfer(db, "t-paris", "t-frankfurt", bytes_total=700)
    db.execute("UPDATE transfers SET max_attempts = 2 WHERE id = %s", (tid,))
    reserved = db.execute("SELECT reserved_bytes FROM datacenters WHERE id = 't-frankfurt'"
                          ).fetchone()[0]
    db.execute("UPDATE datacenters SET reserved_bytes = reserved_bytes + 700"
               " WHERE id = 't-frankfurt'")
    claim(homing, "t-frankfurt")
    status, doc = fail(homing, "t-frankfurt", tid, retry=True, error="peer went away")
    assert status == 200 and doc["state"] == "queued" and doc["error"] == "peer went away"
    assert doc["lease_owner"] is None and doc["lease_expires_at"] is None
    wait = (parse_time(doc["not_before"]) - datetime.now(timezone.utc)).total_seconds()
    assert 0.5 < wait <= 2.5, wait  # 2^1 seconds after the first attempt
    assert claim(homing, "t-frankfurt")[0] == 204  # backing off
    time.sleep(wait + 0.2)
    status, job = claim(homing, "t-frankfurt", owner="agent-2")
    assert status == 200 and job["transfer_id"] == tid and job["attempt"] == 2

    # No attempts left: a retry is not granted.
    status, doc = fail(homing, "t-frankfurt", tid, owner="agent-2", retry=True,
                       error="peer went away again")
    assert status == 200 and doc["state"] == "failed"
    assert doc["error"] == "peer went away again" and doc["finished_at"]
    assert db.execute("SELECT reserved_bytes FROM datacenters WHERE id = 't-frankfurt'"
                      ).fetchone()[0] == reserved
    assert claim(homing, "t-frankfurt")[0] == 204
    assert fail(homing, "t-frankfurt", tid, owner="agent-2")[0] == 409

    # Without retry, the first failure is the last.
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    claim(homing, "t-frankfurt")
    status, doc = fail(homing, "t-frankfurt", tid, retry=False, error="template corrupt")
    assert status == 200 and doc["state"] == "failed" and doc["attempts"] == 1

    types = [r[0] for r in db.execute(
        "SELECT payload->>'type' FROM outbox WHERE payload->'data'->>'transfer_id' IN (%s, %s)"
        " ORDER BY id", (str(first), str(tid))).fetchall()]
    assert types == ["io.homing.transfer.running", "io.homing.transfer.requeued",
                     "io.homing.transfer.running", "io.homing.transfer.failed",
                     "io.homing.transfer.running", "io.homing.transfer.failed"]


# ---- pull tickets -----------------------------------------------------------------------


def test_a_pull_ticket_opens_its_running_transfer_at_its_source_only(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    other = add_transfer(db, "t-paris", "t-virginia")
    _, job = claim(homing, "t-frankfurt")
    _, other_job = claim(homing, "t-virginia")
    status, doc = verify(homing, "t-paris", tid, job["ticket"])
    assert status == 200
    assert doc["transfer_id"] == tid and doc["to_dc"] == "t-frankfurt"
    assert doc["version"] == 1 and doc["template_id"] == "tpl-1" and doc["serves"] == "snapshot"
    assert doc["snapshot_id"] == transfer_row(db, tid)["snapshot_id"]

    assert verify(homing, "t-paris", tid, "x" * 43)[0] == 403            # a wrong ticket
    assert verify(homing, "t-paris", tid, other_job["ticket"])[0] == 403  # another's ticket
    assert verify(homing, "t-paris", other, job["ticket"])[0] == 403
    assert verify(homing, "t-tokyo", tid, job["ticket"])[0] == 403       # not the source
    assert verify(homing, "t-frankfurt", tid, job["ticket"])[0] == 403   # the target itself
    assert verify(homing, "t-paris", 999999, job["ticket"])[0] == 403
    succeed(homing, "t-frankfurt", tid)
    assert verify(homing, "t-paris", tid, job["ticket"])[0] == 403       # finished

    # A target that lacks the template pulls it from a datacenter holding it.
    tid = add_transfer(db, "t-virginia", "t-frankfurt", present=False)
    _, job = claim(homing, "t-frankfurt")
    status, doc = verify(homing, "t-tokyo", tid, job["ticket"])
    assert status == 200 and doc["serves"] == "template"
    assert verify(homing, "t-virginia", tid, job["ticket"])[1]["serves"] == "snapshot"
    assert verify(homing, "t-sydney", tid, job["ticket"])[0] == 403


# ---- versions -----------------------------------------------------------------------------


def test_versions_are_registered_in_order_where_the_snapshot_is_active(homing, db):
    snapshot = seed_snapshot(db, "u-agent-versions", "t-tokyo")
    status, doc = register(homing, "t-paris", snapshot, 2)
    assert status == 409 and doc["type"] == "urn:homing:problem:not-active-here"
    status, doc = register(homing, "t-tokyo", snapshot, 3)
    assert status == 409 and doc["type"] == "urn:homing:problem:not-next-version"
    assert doc["next_version"] == 2
    assert register(homing, "t-tokyo", "snap-nobody", 2)[0] == 404
    assert placements(db, snapshot) == [("t-tokyo", 1, True, None, True)]

    queued = add_transfer(db, "t-tokyo", "t-sydney", snapshot=snapshot)
    status, doc = register(homing, "t-tokyo", snapshot, 2, digest=DIGEST_B, size=800)
    assert status == 201
    assert doc == {"snapshot_id": snapshot, "version": 2, "content_sha256": DIGEST_B,
                   "size_bytes": 800, "virtual_size": 4096,
                   "config": {"vcpus": 2, "memory_mib": 2048}, "datacenter_id": "t-tokyo",
                   "changed_bytes": None, "created_at": doc["created_at"]}
    assert placements(db, snapshot) == [("t-tokyo", 1, False, None, True),
                                        ("t-tokyo", 2, True, DIGEST_B, True)]
    snap, _ = homing.json("GET", f"/v1/snapshots/{snapshot}")
    assert snap["version"] == 2 and snap["size_bytes"] == 800
    assert snap["placement"]["version"] == 2
    assert register(homing, "t-tokyo", snapshot, 2)[0] == 409
    # A transfer that has not started moves the new version.
    assert transfer_row(db, queued)["version"] == 2
    # One that runs blocks the next version until it ends.
    _, job = claim(homing, "t-sydney")
    assert job["version"] == 2 and job["content_sha256"] == DIGEST_B
    status, doc = register(homing, "t-tokyo", snapshot, 3)
    assert status == 409 and doc["type"] == "urn:homing:problem:snapshot-in-transfer"
    assert succeed(homing, "t-sydney", queued, digest=DIGEST_B)[0] == 200
    # Now it is active at Sydney, and Tokyo holds two cached copies.
    assert register(homing, "t-tokyo", snapshot, 3)[0] == 409
    assert register(homing, "t-sydney", snapshot, 3, digest=DIGEST_A)[0] == 201
    assert [p[:3] for p in placements(db, snapshot)] == [
        ("t-tokyo", 1, False), ("t-tokyo", 2, False), ("t-sydney", 2, False),
        ("t-sydney", 3, True)]

    [event] = [r[0] for r in db.execute(
        "SELECT payload FROM outbox WHERE payload->>'type' ="
        " 'io.homing.snapshot.version_registered' AND payload->>'subject' = %s"
        " AND (payload->'data'->>'version')::int = 2", (snapshot,)).fetchall()]
    assert event["data"]["datacenter_id"] == "t-tokyo"
    assert event["data"]["content_sha256"] == DIGEST_B
    assert event["data"]["placement_moved"] is True


# ---- bad bodies ---------------------------------------------------------------------------


def test_bad_bodies_get_a_problem_and_change_nothing(homing, db):
    tid = add_transfer(db, "t-paris", "t-frankfurt")
    _, job = claim(homing, "t-frankfurt")
    snapshot = transfer_row(db, tid)["snapshot_id"]
    good = {"owner": "agent-1", "bytes_done": 1, "bytes_sent": 1}
    cases = [
        ("POST", "/v1/agent/claim", {"owner": "a", "lease_s": 1}, 422, "/lease_s"),
        ("POST", "/v1/agent/claim", {"owner": "a", "lease_s": 99999}, 422, "/lease_s"),
        ("POST", "/v1/agent/claim", {"lease_s": 30}, 422, "/owner"),
        ("POST", "/v1/agent/claim", {"owner": ""}, 422, "/owner"),
        ("POST", "/v1/agent/claim", {"owner": "a", "hurry": True}, 422, "/hurry"),
        ("POST", "/v1/agent/claim", [], 422, ""),
        ("POST", f"/v1/agent/transfers/{tid}/progress", {**good, "bytes_done": -1}, 422,
         "/bytes_done"),
        ("POST", f"/v1/agent/transfers/{tid}/progress", {**good, "bytes_sent": 1.5}, 422,
         "/bytes_sent"),
        ("POST", f"/v1/agent/transfers/{tid}/progress", {**good, "owner": 7}, 422, "/owner"),
        ("POST", f"/v1/agent/transfers/{tid}/succeeded",
         {"owner": "agent-1", "content_sha256": "A" * 64, "bytes_sent": 1}, 422,
         "/content_sha256"),
        ("POST", f"/v1/agent/transfers/{tid}/succeeded",
         {"owner": "agent-1", "content_sha256": "a" * 63, "bytes_sent": 1}, 422,
         "/content_sha256"),
        ("POST", f"/v1/agent/transfers/{tid}/succeeded",
         {"owner": "agent-1", "content_sha256": DIGEST_A}, 422, "/bytes_sent"),
        ("POST", f"/v1/agent/transfers/{tid}/failed",
         {"owner": "agent-1", "error": "x", "retry": "yes"}, 422, "/retry"),
        ("POST", f"/v1/agent/transfers/{tid}/failed", {"owner": "agent-1", "retry": True},
         422, "/error"),
        ("POST", "/v1/agent/pulls/verify", {"transfer_id": "1", "ticket": job["ticket"]},
         422, "/transfer_id"),
        ("POST", "/v1/agent/pulls/verify", {"transfer_id": tid}, 422, "/ticket"),
        ("POST", f"/v1/agent/snapshots/{snapshot}/versions",
         {"version": 0, "content_sha256": DIGEST_A, "size_bytes": 1, "virtual_size": 1},
         422, "/version"),
        ("POST", f"/v1/agent/snapshots/{snapshot}/versions",
         {"version": 2, "content_sha256": DIGEST_A, "size_bytes": 1, "virtual_size": 1,
          "config": []}, 422, "/config"),
        ("POST", f"/v1/agent/snapshots/{snapshot}/versions",
         {"version": 2, "content_sha256": "nope", "size_bytes": 1, "virtual_size": 1},
         422, "/content_sha256"),
        ("PUT", "/v1/agent/endpoint", {"url": "http://x", "extra": 1}, 422, "/extra"),
    ]
    before_transfers = db.execute("SELECT to_jsonb(t) FROM transfers t ORDER BY id").fetchall()
    before_placements = db.execute("SELECT to_jsonb(p) FROM placements p ORDER BY id").fetchall()
    before_snapshots = db.execute("SELECT to_jsonb(s) FROM snapshots s ORDER BY id").fetchall()
    before_outbox = outbox_count(db)
    for method, path, body, status, pointer in cases:
        got, doc = call(homing, "t-frankfurt" if "versions" not in path else "t-paris",
                        method, path, body)
        assert got == status, (path, body, doc)
        assert doc["errors"][0]["pointer"] == pointer, (path, body, doc)
    for method, path in (("POST", "/v1/agent/claim"), ("POST", f"/v1/agent/transfers/{tid}/progress"),
                         ("POST", f"/v1/agent/transfers/{tid}/succeeded"),
                         ("POST", "/v1/agent/pulls/verify"), ("PUT", "/v1/agent/endpoint")):
        got, doc = call(homing, "t-frankfurt", method, path, b'{"owner": "agent-1",')
        assert got == 400 and doc["type"] == "urn:homing:problem:malformed-json"
        got, doc = call(homing, "t-frankfurt", method, path, b'{"owner": "a", "owner": "b"}')
        assert got == 400
        got, doc = call(homing, "t-frankfurt", method, path, b'{"owner": "agent-1"}',
                        content_type="text/plain")
        assert got == 415
    assert db.execute("SELECT to_jsonb(t) FROM transfers t ORDER BY id").fetchall() == \
        before_transfers
    assert db.execute("SELECT to_jsonb(p) FROM placements p ORDER BY id").fetchall() == \
        before_placements
    assert db.execute("SELECT to_jsonb(s) FROM snapshots s ORDER BY id").fetchall() == \
        before_snapshots
    assert outbox_count(db) == before_outbox


# ---- events -------------------------------------------------------------------------------


def test_every_event_the_agents_caused_fits_its_schema(homing, db):
    events = [r[0] for r in db.execute(
        "SELECT payload FROM outbox WHERE payload->'data'->'actor'->>'kind' = 'agent'"
        " ORDER BY id").fetchall()]
    assert {e["type"] for e in events} == AGENT_EVENTS
    for event in events:
        check_event(event)
        assert event["source"] == "/homing/api"
        assert event["data"]["actor"]["kind"] == "agent"
