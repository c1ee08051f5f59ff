"""The audit topic against its contract: every CloudEvent homing publishes to
homing.audit.v1 is valid against the envelope schema (schemas/cloudevent.json)
and against the schema of its type (schemas/events/<type>.json), read back
with kcat, a consumer we did not write. Causes the events a consumer sees:
a move (the scheduler), a superseding move, and operator actions (the API).

An event type without a schema fails the test: add one under schemas/events/
and list it in schemas/README.md."""
import json
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

from conftest import brokers, homing_with_catalog, now_rfc3339, report, seed_snapshot, wait_for

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ENVELOPE = "https://homing.io/schemas/v1/cloudevent.json"
EVENTS = "https://homing.io/schemas/v1/events/"


def load_schemas():
    docs = [json.loads(p.read_text()) for p in sorted(SCHEMAS.rglob("*.json"))]
    registry = Registry().with_resources(
        (doc["$id"], Resource.from_contents(doc)) for doc in docs)
    return docs, registry


DOCS, REGISTRY = load_schemas()


def validator(uri):
    return Draft202012Validator(REGISTRY.contents(uri), registry=REGISTRY,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


def check_event(event):
    """Raises ValidationError unless the event fits the envelope and its type."""
    validator(ENVELOPE).validate(event)
    uri = EVENTS + event["type"] + ".json"
    assert uri in {doc["$id"] for doc in DOCS}, \
        f"no schema for {event['type']}: add schemas/events/{event['type']}.json"
    validator(uri).validate(event)
    # The pattern says RFC 3339; this says it is a real instant.
    datetime.fromisoformat(event["time"].replace("Z", "+00:00"))


def read_audit(topic):
    """Every message of the topic, from the start to its end, with kcat: (key, event)."""
    out = subprocess.run(["kcat", "-b", brokers(), "-C", "-t", topic, "-o", "beginning", "-e",
                          "-J", "-q"], check=True, capture_output=True, text=True, timeout=60)
    messages = []
    for line in out.stdout.splitlines():
        if line.strip():
            m = json.loads(line)
            messages.append((m["key"], json.loads(m["payload"])))
    return messages


def outbox_drained(db):
    return db.execute("SELECT count(*) = 0 FROM outbox WHERE sent_at IS NULL").fetchone()[0]


def processed(db, n):
    return db.execute("SELECT coalesce(sum(next_offset), 0) >= %s FROM consumer_offsets",
                      (n,)).fetchone()[0]


def published_events(db, topic):
    """Once the relay sent everything: the audit topic, every event checked."""
    wait_for(lambda: outbox_drained(db), what="the relay to drain the outbox")
    messages = read_audit(topic)
    seen = {}
    for key, event in messages:
        check_event(event)
        assert key == event["subject"], "the Kafka key is the event's subject"
        # A resend by the relay repeats an event exactly; nothing else shares its id.
        ident = (event["source"], event["id"])
        assert seen.setdefault(ident, event) == event, f"two events with id {ident}"
    return [event for _, event in messages]


@pytest.fixture(scope="module")
def homing(database, db, topics, tmp_path_factory):
    # The first credible report near a better site moves (no dwell, no cooldown);
    # a scheduler that has no such settings ignores the variables.
    yield from homing_with_catalog(db, database, topics, f"test-{topics['locations']}",
                                   "standalone", tmp_path_factory.mktemp("audit"),
                                   extra={"HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "1",
                                          "HOMING_COOLDOWN_S": "0",
                                          "HOMING_AUDIT_STAY_SAMPLE": "1"})


class Posted:
    n = 0


def post_report(homing, **kw):
    status, _, raw = homing.post("/v1/locations", report(**kw))
    assert status == 202, raw
    Posted.n += 1


def test_the_schemas_are_valid_2020_12_and_listed():
    readme = (SCHEMAS / "README.md").read_text()
    for doc in DOCS:
        Draft202012Validator.check_schema(doc)
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        if doc["$id"].startswith(EVENTS):
            assert f"`{doc['title']}`" in readme, f"{doc['title']} is not in schemas/README.md"
            # Every $ref resolves: validating something walks them all.
            errors = list(validator(doc["$id"]).iter_errors({}))
            assert errors


def test_a_bad_event_is_refused():
    good = {"specversion": "1.0", "id": "transfer-1-queued", "source": "/homing/scheduler",
            "type": "io.homing.transfer.queued", "time": "2026-11-25T19:00:00.000Z",
            "subject": "snap-1", "datacontenttype": "application/json",
            "data": {"transfer_id": 1, "snapshot_id": "snap-1", "user_id": "u-1",
                     "from_dc": "t-paris", "to_dc": "t-tokyo", "reason": "closer",
                     "from_distance_m": 9.7e6, "to_distance_m": 12.5,
                     "template_present": True}}
    check_event(good)
    for broken in (dict(good, specversion="0.3"), dict(good, time="25/11/2026 19:00"),
                   dict(good, datacontenttype="text/plain"),
                   {k: v for k, v in good.items() if k != "subject"},
                   dict(good, data=dict(good["data"], transfer_id="1")),
                   dict(good, data={k: v for k, v in good["data"].items() if k != "to_dc"})):
        with pytest.raises(ValidationError):
            check_event(broken)


def test_a_move_publishes_valid_events_naming_its_transfer(homing, db, topics):
    snapshot = seed_snapshot(db, "u-audit", "t-paris")
    # Twelve hours ago, so that the flight on to Sydney (next test) is plausible.
    post_report(homing, user="u-audit", device="d-audit", lat=35.68, lon=139.69,
                ts=now_rfc3339(-12 * 3600))
    transfer_id = wait_for(lambda: db.execute(
        "SELECT id FROM transfers WHERE snapshot_id = %s", (snapshot,)).fetchone(),
        what="the transfer")[0]

    events = [e for e in published_events(db, topics["audit"]) if e["subject"] == snapshot]
    by_type = {e["type"]: e for e in events}
    # The scheduler today emits transfer.queued; the policy scheduler also
    # placement.decided. Either way every event of the move names its transfer.
    assert "io.homing.transfer.queued" in by_type, [e["type"] for e in events]
    assert set(by_type) <= {"io.homing.transfer.queued", "io.homing.placement.decided"}
    for event in events:
        assert event["source"] == "/homing/scheduler"
        data = event["data"]
        assert data["transfer_id"] == transfer_id
        assert (data["snapshot_id"], data["user_id"]) == (snapshot, "u-audit")
        assert (data["from_dc"], data["to_dc"]) == ("t-paris", "t-tokyo")
        assert data["from_distance_m"] > 9_000_000 > 10_000 > data["to_distance_m"]


def test_a_superseding_move_publishes_valid_events(homing, db, topics):
    """The user flies on before the transfer ran. A scheduler that supersedes
    cancels the first transfer (io.homing.transfer.cancelled) and queues a
    second; one that waits for the transfer does nothing. Whatever it does,
    what it publishes is valid."""
    snapshot = "snap-u-audit"
    first = db.execute("SELECT id FROM transfers WHERE snapshot_id = %s", (snapshot,)).fetchone()[0]
    post_report(homing, user="u-audit", device="d-audit", lat=-33.87, lon=151.21)
    wait_for(lambda: processed(db, Posted.n), what="the scheduler to take the report")

    events = [e for e in published_events(db, topics["audit"]) if e["subject"] == snapshot]
    later = db.execute("SELECT id, to_dc FROM transfers WHERE snapshot_id = %s AND id > %s",
                       (snapshot, first)).fetchall()
    cancelled = [e for e in events if e["type"] == "io.homing.transfer.cancelled"]
    if later:
        assert later[0][1] == "t-sydney"
        assert [e["data"]["transfer_id"] for e in cancelled] == [first]
        assert cancelled[0]["data"]["reason"] == "superseded"
        assert {e["type"] for e in events if e["data"]["transfer_id"] == later[0][0]} >= \
            {"io.homing.transfer.queued"}
    else:
        assert cancelled == []


def test_operator_actions_publish_valid_events(homing, db, topics):
    admin, operator = homing.token("admin", "audit-admin"), homing.token("operator", "audit-op")
    _, created = homing.json("POST", "/v1/templates",
                             {"id": "tpl-audit", "name": "audited", "size_bytes": 10},
                             expect=201, token=admin)
    homing.json("PATCH", "/v1/templates/tpl-audit", {"name": "audited twice"}, token=admin,
                headers={"If-Match": created["ETag"]})
    homing.json("PUT", "/v1/templates/tpl-audit/replicas/t-tokyo", expect=201, token=admin)
    assert homing.request("DELETE", "/v1/templates/tpl-audit/replicas/t-tokyo",
                          token=admin)[0] == 204
    assert homing.request("DELETE", "/v1/templates/tpl-audit", token=admin)[0] == 204
    homing.json("PUT", "/v1/datacenters/t-frankfurt/status", {"status": "draining"},
                token=operator)
    homing.json("PUT", "/v1/datacenters/t-frankfurt/status", {"status": "active"},
                token=operator)

    events = [e for e in published_events(db, topics["audit"]) if e["source"] == "/homing/api"]
    types = [e["type"] for e in events]
    assert types == ["io.homing.template.created", "io.homing.template.updated",
                     "io.homing.template.replica_added", "io.homing.template.replica_removed",
                     "io.homing.template.deleted", "io.homing.datacenter.status_changed",
                     "io.homing.datacenter.status_changed"]
    assert [e["data"]["to"] for e in events[-2:]] == ["draining", "active"]
    assert all(e["data"]["actor"]["kind"] == "operator" for e in events)


def test_an_operator_cancel_and_retry_publish_valid_events(homing, db, topics):
    transfer_id = db.execute("SELECT id FROM transfers WHERE state = 'queued'"
                             " ORDER BY id DESC LIMIT 1").fetchone()[0]
    operator = homing.token("operator", "audit-op")
    homing.json("POST", f"/v1/transfers/{transfer_id}/cancel", token=operator)
    retried, _ = homing.json("POST", f"/v1/transfers/{transfer_id}/retry", expect=201,
                             token=operator)

    events = [e for e in published_events(db, topics["audit"])
              if e["source"] == "/homing/api" and e["type"].startswith("io.homing.transfer.")]
    assert [e["type"] for e in events] == ["io.homing.transfer.cancelled",
                                           "io.homing.transfer.retried"]
    cancelled, retry = events
    assert cancelled["data"]["transfer_id"] == transfer_id
    assert cancelled["data"]["transfer"]["state"] == "cancelled"
    assert retry["data"]["transfer_id"] == retried["id"]
    assert retry["data"]["retry_of"] == transfer_id
    assert cancelled["subject"] == retry["subject"] == "snap-u-audit"


def test_a_stay_is_published_when_sampled(homing, db, topics):
    """Every recorded stay is sampled here (--audit-stay-sample 1): a user near
    the snapshot's datacenter makes an io.homing.placement.stayed event."""
    snapshot = seed_snapshot(db, "u-stays", "t-sydney")
    post_report(homing, user="u-stays", device="d-stays", lat=-33.9, lon=151.2)
    wait_for(lambda: processed(db, Posted.n), what="the scheduler to take the report")
    decision = db.execute("SELECT id, reason FROM decisions WHERE snapshot_id = %s",
                          (snapshot,)).fetchone()
    assert decision[1] == "already_nearest"
    events = [e for e in published_events(db, topics["audit"]) if e["subject"] == snapshot]
    [stayed] = [e for e in events if e["type"] == "io.homing.placement.stayed"]
    assert stayed["id"] == f"decision-{decision[0]}"
    assert stayed["data"]["reason"] == "already_nearest"
    assert stayed["data"]["current_dc"] == "t-sydney"
    assert "audited" not in stayed["data"]["details"]


def test_a_transfer_agents_reports_publish_valid_events(homing, db, topics):
    """An agent at Ashburn claims a transfer, fails once with a retry, claims
    it again and succeeds; the agent where the snapshot now is registers its
    next version; another transfer fails for good. All of it reaches the
    audit topic as events of their schemas."""
    agent = homing.homing("token", "agent", "--datacenter", "t-virginia")
    snapshot = seed_snapshot(db, "u-agent-audit", "t-paris")
    db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
               " template_present, reason, idempotency_key, bytes_total)"
               " VALUES (%s, 't-paris', 't-virginia', 'tpl-1', false, 'closer', 'audit-agent',"
               " 1500)", (snapshot,))

    def call(path, body, expect=200):
        return homing.json("POST", path, body, expect=expect, token=agent)[0]

    job = call("/v1/agent/claim", {"owner": "va-1"})
    tid = job["transfer_id"]
    call(f"/v1/agent/transfers/{tid}/progress", {"owner": "va-1", "bytes_done": 10,
                                                 "bytes_sent": 10})
    call(f"/v1/agent/transfers/{tid}/failed", {"owner": "va-1", "error": "reset by peer",
                                               "retry": True})
    db.execute("UPDATE transfers SET not_before = now() WHERE id = %s", (tid,))
    assert call("/v1/agent/claim", {"owner": "va-2"})["attempt"] == 2
    call(f"/v1/agent/transfers/{tid}/succeeded", {"owner": "va-2", "content_sha256": "c" * 64,
                                                  "bytes_sent": 1500})
    call(f"/v1/agent/snapshots/{snapshot}/versions",
         {"version": 2, "content_sha256": "d" * 64, "size_bytes": 600, "virtual_size": 4096,
          "config": {"vcpus": 2}}, expect=201)
    other = seed_snapshot(db, "u-agent-audit-2", "t-paris")
    db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
               " template_present, reason, idempotency_key, bytes_total)"
               " VALUES (%s, 't-paris', 't-virginia', 'tpl-1', false, 'closer', 'audit-agent-2',"
               " 1500)", (other,))
    failed = call("/v1/agent/claim", {"owner": "va-1"})["transfer_id"]
    call(f"/v1/agent/transfers/{failed}/failed", {"owner": "va-1", "error": "no space",
                                                  "retry": False})

    events = [e for e in published_events(db, topics["audit"])
              if e["data"].get("actor", {}).get("kind") == "agent"]
    # Ordered per key (a snapshot's events share a partition), not across keys.
    mine = [e for e in events if e["subject"] == snapshot]
    assert [e["type"] for e in mine] == [
        "io.homing.transfer.running", "io.homing.transfer.requeued",
        "io.homing.transfer.running", "io.homing.transfer.succeeded",
        "io.homing.snapshot.version_registered"]
    assert [e["type"] for e in events if e["subject"] == other] == [
        "io.homing.transfer.running", "io.homing.transfer.failed"]
    assert all(e["data"]["actor"]["datacenter_id"] == "t-virginia" for e in events)
    assert mine[3]["data"]["transfer"]["state"] == "succeeded"
    assert mine[4]["data"]["version"] == 2


def test_power_reports_and_refusals_publish_valid_events(homing, db, topics):
    """An operator wants a snapshot's VM on; the agent where it is active
    reports it powered on, the placement moves, the old agent's late report
    is refused, it powers off, and the new site's start fails."""
    admin = homing.token("admin", "audit-admin")
    paris, tokyo = (homing.homing("token", "agent", "--datacenter", dc)
                    for dc in ("t-paris", "t-tokyo"))
    snapshot = seed_snapshot(db, "u-power-audit", "t-paris")
    _, headers = homing.json("GET", f"/v1/snapshots/{snapshot}")
    homing.json("PATCH", f"/v1/snapshots/{snapshot}", {"power": "on"}, token=admin,
                headers={"If-Match": headers["ETag"]})

    def power(token, epoch, state, expect=201, **extra):
        homing.json("POST", f"/v1/agent/vms/{snapshot}/power",
                    {"epoch": epoch, "state": state, **extra}, expect=expect, token=token)
    power(paris, 1, "powered_on")
    db.execute("UPDATE placements SET active = false WHERE snapshot_id = %s", (snapshot,))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, 't-tokyo', 1, true)", (snapshot,))
    power(paris, 1, "powered_on", expect=409)
    power(tokyo, 2, "powered_on", expect=409)
    power(paris, 1, "powered_off", reason="no longer active here")
    power(tokyo, 2, "failed", reason="virDomainCreate: no memory")

    events = [e for e in published_events(db, topics["audit"]) if e["subject"] == snapshot]
    assert [e["type"] for e in events] == [
        "io.homing.snapshot.updated", "io.homing.vm.powered_on", "io.homing.vm.power_refused",
        "io.homing.vm.power_refused", "io.homing.vm.powered_off", "io.homing.vm.power_failed"]
    assert events[0]["data"]["changes"] == {"power": "on"}
    assert [e["data"]["refusal"] for e in events[2:4]] == ["stale-epoch",
                                                           "powered-on-elsewhere"]
    assert events[3]["data"]["elsewhere"] == "t-paris"
    assert [e["data"]["datacenter_id"] for e in events[1:]] == [
        "t-paris", "t-paris", "t-tokyo", "t-paris", "t-tokyo"]
    assert events[5]["data"]["reason"] == "virDomainCreate: no memory"
