"""Priority levels and replicas as PostgreSQL keeps them (migration 020):
a snapshot's level reaches its open transfers; protection policies per
level; `replicate` transfers beside the one open `move`, a replica that is
kept out of eviction and counted against its datacenter's capacity."""
import pytest

from conftest import homing_with_catalog, seed_snapshot


@pytest.fixture(scope="module")
def api(database, db, topics, tmp_path_factory):
    yield from homing_with_catalog(db, database, topics, "replica-model", "serve",
                                   tmp_path_factory.mktemp("rm"))


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


def used(db, dc):
    return db.execute("SELECT used_bytes, reserved_bytes FROM datacenters WHERE id = %s",
                      (dc,)).fetchone()


def placements(db, snapshot):
    return db.execute("SELECT datacenter_id, version, active FROM placements"
                      " WHERE snapshot_id = %s AND evicted_at IS NULL ORDER BY id",
                      (snapshot,)).fetchall()


def reserve(db, transfer):
    db.execute("UPDATE datacenters d SET reserved_bytes = reserved_bytes + t.bytes_total"
               " FROM transfers t WHERE t.id = %s AND d.id = t.to_dc", (transfer,))


def test_one_move_open_and_one_replicate_per_target_beside_it(api, db):
    import psycopg
    snap = seed_snapshot(db, "u-kinds", "t-paris")
    queue(db, snap, "t-tokyo", from_dc="t-paris", key="k-move-1")
    with pytest.raises(psycopg.errors.UniqueViolation):
        queue(db, snap, "t-sydney", from_dc="t-paris", key="k-move-2")
    queue(db, snap, "t-frankfurt", kind="replicate", from_dc="t-paris", key="k-rep-1")
    queue(db, snap, "t-virginia", kind="replicate", from_dc="t-paris", key="k-rep-2")
    with pytest.raises(psycopg.errors.UniqueViolation):
        queue(db, snap, "t-frankfurt", kind="replicate", from_dc="t-paris", key="k-rep-3")
    with pytest.raises(psycopg.errors.CheckViolation):
        queue(db, snap, "t-sydney", kind="copy", from_dc="t-paris", key="k-rep-4")
    kinds = api.json("GET", f"/v1/transfers?snapshot_id={snap}")[0]["items"]
    assert sorted(t["kind"] for t in kinds) == ["move", "replicate", "replicate"]
    only = api.json("GET", f"/v1/transfers?snapshot_id={snap}&kind=replicate")[0]["items"]
    assert sorted(t["to_dc"] for t in only) == ["t-frankfurt", "t-virginia"]
    assert api.json("GET", "/v1/transfers?kind=copy", expect=400)[0]["type"] == \
        "urn:homing:problem:invalid-query"


def test_a_replicate_makes_the_replica_copy_without_flipping_and_counts_it(api, db):
    snap = seed_snapshot(db, "u-rep", "t-paris", size=500)
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size) VALUES (%s, 1, %s, 500, 4096)", (snap, "1" * 64))
    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id) VALUES (%s, 't-frankfurt')",
               (snap,))
    before = used(db, "t-frankfurt")
    tid = queue(db, snap, "t-frankfurt", kind="replicate", from_dc="t-paris")
    reserve(db, tid)
    assert used(db, "t-frankfurt") == (before[0], before[1] + 500)
    assert db.execute("SELECT homing_transfer_succeeded(%s, %s)", (tid, "1" * 64)).fetchone()[0]
    # The active placement stays; the target holds a verified inactive copy: the replica.
    assert placements(db, snap) == [("t-paris", 1, True), ("t-frankfurt", 1, False)]
    assert used(db, "t-frankfurt") == (before[0] + 500, before[1])
    assert db.execute("SELECT r.bytes, p.datacenter_id FROM replicas r JOIN placements p"
                      " ON p.id = r.placement_id WHERE r.snapshot_id = %s",
                      (snap,)).fetchone() == (500, "t-frankfurt")
    dc = api.json("GET", "/v1/datacenters/t-frankfurt")[0]
    assert dc["used_bytes"] == before[0] + 500 and dc["cached_bytes"] == 0

    # Never evicted while designated, whatever its age or the room.
    db.execute("UPDATE placements SET created_at = now() - interval '30 days'"
               " WHERE snapshot_id = %s", (snap,))
    assert db.execute("SELECT * FROM homing_cache_evict('t-frankfurt', 0, 0)").fetchall() == []
    # Released, it is a cached copy like any other: its bytes leave used_bytes, then it goes.
    db.execute("DELETE FROM replicas WHERE snapshot_id = %s", (snap,))
    assert used(db, "t-frankfurt")[0] == before[0]
    assert api.json("GET", "/v1/datacenters/t-frankfurt")[0]["cached_bytes"] == 500
    evicted = db.execute("SELECT snapshot_id FROM homing_cache_evict('t-frankfurt', 0, 0)"
                         ).fetchall()
    assert evicted == [(snap,)]


def test_a_move_to_the_replica_site_ends_its_designation_and_counts_the_bytes_once(api, db):
    snap = seed_snapshot(db, "u-promote", "t-paris", size=500)
    db.execute("UPDATE datacenters SET used_bytes = used_bytes + 500 WHERE id = 't-paris'")
    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id) VALUES (%s, 't-tokyo')",
               (snap,))
    rep = queue(db, snap, "t-tokyo", kind="replicate", from_dc="t-paris")
    db.execute("SELECT homing_transfer_succeeded(%s)", (rep,))
    paris, tokyo = used(db, "t-paris")[0], used(db, "t-tokyo")[0]
    move = queue(db, snap, "t-tokyo", from_dc="t-paris", key="promote-move")
    reserve(db, move)
    db.execute("SELECT homing_transfer_succeeded(%s)", (move,))
    assert [p for p in placements(db, snap) if p[2]] == [("t-tokyo", 1, True)]
    assert db.execute("SELECT count(*) FROM replicas WHERE snapshot_id = %s",
                      (snap,)).fetchone()[0] == 0
    # Tokyo: the replica's 500 became the active copy's 500; Paris let go of its 500.
    assert used(db, "t-tokyo")[0] == tokyo and used(db, "t-paris")[0] == paris - 500


def test_a_replicate_running_does_not_hold_back_a_new_version_at_the_active_site(api, db):
    snap = seed_snapshot(db, "u-writer", "t-paris")
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size) VALUES (%s, 1, %s, 500, 4096)", (snap, "1" * 64))
    rep = queue(db, snap, "t-tokyo", kind="replicate", from_dc="t-paris")
    db.execute("UPDATE transfers SET state = 'running' WHERE id = %s", (rep,))
    agent = api.homing("token", "agent", "--datacenter", "t-paris", "--name", "writer")
    api.json("POST", f"/v1/agent/snapshots/{snap}/versions",
             {"version": 2, "content_sha256": "2" * 64, "size_bytes": 600, "virtual_size": 4096},
             token=agent, expect=201)
    # The copy the replicate sends stays at its source until it is done.
    db.execute("UPDATE placements SET deactivated_at = now() - interval '30 days'"
               " WHERE snapshot_id = %s AND NOT active", (snap,))
    assert db.execute("SELECT * FROM homing_cache_evict('t-paris', 0, 0)"
                      " WHERE snapshot_id = %s", (snap,)).fetchall() == []
    # A move running holds the next version back.
    db.execute("SELECT homing_transfer_ended(%s, 'cancelled', 'test')", (rep,))
    move = queue(db, snap, "t-tokyo", from_dc="t-paris", key="writer-move")
    db.execute("UPDATE transfers SET state = 'running' WHERE id = %s", (move,))
    api.json("POST", f"/v1/agent/snapshots/{snap}/versions",
             {"version": 3, "content_sha256": "3" * 64, "size_bytes": 600, "virtual_size": 4096},
             token=agent, expect=409)
