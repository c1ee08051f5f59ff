"""Priority levels and replicas as PostgreSQL keeps them (migration 020):
a snapshot's level reaches its open transfers; protection policies per
level; `replicate` transfers beside the one open `move`, a replica that is
kept out of eviction and counted against its datacenter's capacity."""
import pytest

from conftest import Homing, seed_catalog, seed_snapshot


@pytest.fixture(scope="module")
def api(database, db, topics, tmp_path_factory):
    h = Homing(database, topics, "replica-model", "serve", tmp_path_factory.mktemp("rm"))
    h.migrate()
    seed_catalog(db)
    h.start()
    yield h
    h.stop()


def queue(db, snapshot, to_dc, kind=None, from_dc=None, key=None):
    cols = "snapshot_id, from_dc, to_dc, template_id, template_present, reason," \
           " idempotency_key, bytes_total, priority" + (", kind" if kind else "")
    vals = [snapshot, from_dc, to_dc, "tpl-1", True, "test", key or f"{snapshot}-{to_dc}-{kind}",
            500]
    sql = (f"INSERT INTO transfers ({cols}) SELECT %s, %s, %s, %s, %s, %s, %s, %s, s.priority"
           + (", %s" if kind else "") + " FROM snapshots s WHERE s.id = %s RETURNING id")
    return db.execute(sql, vals + ([kind] if kind else []) + [snapshot]).fetchone()[0]


def test_a_snapshots_new_priority_reaches_its_open_transfers_and_the_claim_order(api, db):
    low = seed_snapshot(db, "u-prio-low", "t-paris")
    high = seed_snapshot(db, "u-prio-high", "t-paris")
    t_high = queue(db, high, "t-sydney", from_dc="t-paris")
    t_low = queue(db, low, "t-sydney", from_dc="t-paris")
    admin = api.token("admin")
    snap, headers = api.json("GET", f"/v1/snapshots/{low}", token=admin)
    assert snap["priority"] == 3
    api.json("PATCH", f"/v1/snapshots/{low}", {"priority": 1}, token=admin,
             headers={"If-Match": headers["ETag"]})
    assert db.execute("SELECT priority FROM transfers WHERE id = %s", (t_low,)).fetchone()[0] == 1
    # Queued later, and now more urgent: claimed first.
    first = db.execute("SELECT id FROM homing_transfer_claim('t-sydney', 'o', 30, %s)",
                       ("a" * 64,)).fetchone()[0]
    assert first == t_low
    # An ended transfer keeps the level it ran at.
    db.execute("SELECT homing_transfer_ended(%s, 'cancelled', 'test')", (t_low,))
    snap, headers = api.json("GET", f"/v1/snapshots/{low}", token=admin)
    api.json("PATCH", f"/v1/snapshots/{low}", {"priority": 5}, token=admin,
             headers={"If-Match": headers["ETag"]})
    assert db.execute("SELECT priority FROM transfers WHERE id = %s", (t_low,)).fetchone()[0] == 1
    # Out of range is refused and changes nothing.
    snap, headers = api.json("GET", f"/v1/snapshots/{high}", token=admin)
    api.json("PATCH", f"/v1/snapshots/{high}", {"priority": 0}, token=admin, expect=422,
             headers={"If-Match": headers["ETag"]})
    assert db.execute("SELECT priority FROM transfers WHERE id = %s", (t_high,)).fetchone()[0] == 3


def test_protection_policies_have_defaults_viewers_read_and_operators_set(api, db):
    items = api.json("GET", "/v1/protection-policies")[0]["items"]
    assert [(p["level"], p["replicas"], p["rpo_s"]) for p in items] == \
        [(1, 1, 60), (2, 1, 300), (3, 1, 3600), (4, 0, None), (5, 0, None)]
    policy, headers = api.json("GET", "/v1/protection-policies/4")
    viewer, operator = api.token("viewer"), api.token("operator")
    assert api.request("PUT", "/v1/protection-policies/4", {"replicas": 1, "rpo_s": 600},
                       token=viewer)[0] == 403
    # Bad bodies: refused with the member named, nothing changes.
    for body, pointer in (({"replicas": 1}, "/rpo_s"), ({"replicas": 0, "rpo_s": 60}, "/rpo_s"),
                          ({"replicas": 4, "rpo_s": 60}, "/replicas"),
                          ({"replicas": 1, "rpo_s": 5}, "/rpo_s"),
                          ({"replicas": 1, "rpo_s": 60, "extra": 1}, "/extra")):
        problem = api.json("PUT", "/v1/protection-policies/4", body, token=operator,
                           expect=422)[0]
        assert problem["errors"][0]["pointer"] == pointer, (body, problem)
    for level in ("0", "6", "x", "10"):
        api.json("PUT", f"/v1/protection-policies/{level}", {"replicas": 0}, token=operator,
                 expect=404)
    assert api.json("GET", "/v1/protection-policies/4")[0] == policy
    api.json("PUT", "/v1/protection-policies/4", {"replicas": 2, "rpo_s": 900}, token=operator,
             headers={"If-Match": '"999"'}, expect=412)

    changed, after = api.json("PUT", "/v1/protection-policies/4", {"replicas": 2, "rpo_s": 900},
                              token=operator, headers={"If-Match": headers["ETag"]})
    assert (changed["replicas"], changed["rpo_s"]) == (2, 900)
    assert after["ETag"] != headers["ETag"]
    event = db.execute("SELECT payload FROM outbox WHERE payload->>'type'"
                       " = 'io.homing.protection_policy.updated' ORDER BY id DESC LIMIT 1"
                       ).fetchone()[0]
    from test_audit_events import check_event
    check_event(event)
    assert event["subject"] == "4" and event["data"]["protection_policy"]["replicas"] == 2
    assert event["data"]["actor"]["role"] == "operator"
    api.json("PUT", "/v1/protection-policies/4", {"replicas": 0, "rpo_s": None}, token=operator)
    assert api.json("GET", "/v1/protection-policies/4")[0]["replicas"] == 0
