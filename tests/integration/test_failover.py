"""Failover, end to end: Paris runs a fleet of mixed priority (its platform is
an operator's command, the exec driver, whose VMs outlive its agent), with
warm replicas at Tokyo and Sydney (libvirt's test driver). Paris's agent is
SIGKILLed and an operator declares Paris down: the snapshots with a replica
are activated there at once, level 1 first, and powered on by those sites'
agents; the data lost per snapshot is its replica's lag; the others are
unrecoverable until Paris returns, and their restore says so. When Paris's
agent comes back it powers its VMs off: nothing runs twice, asked of the
drivers and of the power records."""
import re
import signal
import time

import pytest
from jsonschema import Draft202012Validator

from conftest import Homing, seed_catalog, wait_for
from plane import POWER_DCS as DCS, PowerPlane, agent_vms, powered_on_at
from test_audit_events import check_event

PLATFORM = """#!/bin/sh
vms="$(dirname "$0")/vms-$HOMING_DATACENTER"
touch "$vms"
case $HOMING_ACTION in
activate)
  grep -v "^$HOMING_SNAPSHOT " "$vms" > "$vms.new"; mv "$vms.new" "$vms"
  echo "$HOMING_SNAPSHOT $HOMING_VERSION $HOMING_EPOCH" >> "$vms" ;;
deactivate)
  grep -v "^$HOMING_SNAPSHOT " "$vms" > "$vms.new"; mv "$vms.new" "$vms" ;;
list) cat "$vms" ;;
esac
"""
SHA = "ab" * 32
# (snapshot, priority, replica site or None, the replica's version, the newest version)
FLEET = [
    ("fo-1a", 1, "t-tokyo", 3, 3),   # current: nothing lost
    ("fo-1b", 1, "t-sydney", 2, 3),  # one version behind
    ("fo-1c", 1, "t-tokyo", 1, 3),   # two behind
    ("fo-2a", 2, "t-sydney", 2, 2),
    ("fo-2b", 2, "t-tokyo", 1, 2),
    ("fo-3a", 3, "t-tokyo", 1, 1),
    ("fo-3b", 3, "t-sydney", 2, 4),
    ("fo-4a", 4, None, None, 2),     # level 4 keeps no replica: unrecoverable
    ("fo-5a", 5, None, None, 1),
]
CHANGED = 4096 * 3  # each version's changed bytes


@pytest.fixture(scope="module")
def plane(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failover")
    # standalone: its relay keeps the database-wide gauges; no replica pass
    # touches the replicas seeded here.
    api = Homing(database, topics, "failover", "standalone", tmp,
                 extra={"HOMING_REPLICA_PASS_S": "0"})
    api.migrate()
    seed_catalog(db)
    api.start()
    p = PowerPlane(api, tmp, PLATFORM)
    yield p
    p.stop_agents()
    api.stop()


def conforms(plane, doc, schema):
    """The answer is what the OpenAPI document (served by homing) says of it."""
    spec = plane.api.json("GET", "/v1/openapi.json")[0]
    Draft202012Validator({"$ref": f"#/components/schemas/{schema}",
                          "components": spec["components"]}).validate(doc)


def running(plane, dc):
    """What a site runs: {snapshot: epoch}, from Paris's platform or a libvirt agent's metric."""
    if dc == "t-paris":
        path = plane.platform / "vms-t-paris"
        lines = path.read_text().split("\n") if path.exists() else []
        return {f[0]: int(f[2]) for f in (line.split() for line in lines) if len(f) == 3}
    return agent_vms(plane.metrics[dc])


def metric(plane, name, level):
    text = plane.api.get("/metrics", token=plane.api.token("viewer"))[2].decode()
    m = re.search(rf'^{name}\{{priority="{level}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def seed_fleet(plane, db):
    """Versions 1..newest registered at Paris 100 s apart (the newest now - 100 s), each
    changing CHANGED bytes; Paris active at the newest, the replica's copy at its version."""
    for snap, _, _, _, newest in FLEET:  # the files first: a start would fail without them
        for store in plane.stores.values():
            d = store / "snapshots" / snap
            d.mkdir(parents=True)
            for v in range(1, newest + 1):
                (d / f"v{v}.qcow2").write_bytes(b"")
                (d / f"v{v}.json").write_text('{"vcpus": 1, "memory_mib": 128}')
    for snap, priority, replica, rv, newest in FLEET:
        db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority,"
                   " version, power) VALUES (%s, %s, 'tpl-1', 65536, %s, %s, 'on')",
                   (snap, f"u-{snap}", priority, newest))
        for v in range(1, newest + 1):
            db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
                       " size_bytes, virtual_size, datacenter_id, changed_bytes, created_at)"
                       " VALUES (%s, %s, %s, 65536, 1048576, 't-paris', %s,"
                       "         now() - make_interval(secs => 100 * (%s - %s + 1)))",
                       (snap, v, SHA, CHANGED, newest, v))
        db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
                   " content_sha256) VALUES (%s, 't-paris', %s, true, %s)", (snap, newest, SHA))
        if replica:
            pid = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version,"
                             " active, content_sha256) VALUES (%s, %s, %s, false, %s)"
                             " RETURNING id", (snap, replica, rv, SHA)).fetchone()[0]
            db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id, created_at)"
                       " VALUES (%s, %s, %s, now() - interval '1 hour')", (snap, replica, pid))


def lags(db):
    return {r[0]: (r[1], r[2]) for r in db.execute(
        "SELECT snapshot_id, lag_s, bytes_behind FROM replica_lag WHERE snapshot_id LIKE 'fo-%'")}


def test_a_down_site_fails_over_by_priority_loses_the_replica_lag_and_runs_nothing_twice(
        plane, db):
    seed_fleet(plane, db)
    wait_for(lambda: set(running(plane, "t-paris")) == {f[0] for f in FLEET},
             what="Paris to run the fleet")
    for snap, *_ in FLEET:  # the platform runs it a moment before the agent reports it
        wait_for(lambda: powered_on_at(db, snap) == ["t-paris"],
                 what=f"Paris's record of {snap}")
    # A viewer sees every snapshot restored from Paris under epoch 1.
    viewer = plane.api.token("viewer")
    doc, _ = plane.api.json("GET", "/v1/snapshots/fo-1b/restore", token=viewer)
    assert (doc["state"], doc["datacenter_id"], doc["epoch"], doc["version"]) == \
        ("active", "t-paris", 1, 3)

    paris = plane.agents["t-paris"]
    paris.kill()
    before = lags(db)
    operator = plane.api.token("operator")
    plane.api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "down"}, token=operator)
    after = lags(db)  # the replicas that failed over are gone from the view; the rest aged

    failovers, _ = plane.api.json("GET", "/v1/failovers?datacenter_id=t-paris", token=viewer)
    assert len(failovers["items"]) == 1
    fid = failovers["items"][0]["id"]
    items, _ = plane.api.json("GET", f"/v1/failovers/{fid}/snapshots", token=viewer)
    items = {i["snapshot_id"]: i for i in items["items"]}
    assert set(items) == {f[0] for f in FLEET}
    for snap, priority, replica, rv, newest in FLEET:
        it = items[snap]
        assert it["priority"] == priority
        if replica is None:
            assert (it["outcome"], it["to_dc"], it["epoch"]) == ("unrecoverable", None, None)
            continue
        assert (it["outcome"], it["from_dc"], it["to_dc"], it["epoch"], it["version"],
                it["newest_version"]) == ("failed_over", "t-paris", replica, 2, rv, newest)
        # The data lost is the replica's lag at the failover: its versions and bytes...
        assert it["versions_lost"] == newest - rv
        assert [v["version"] for v in it["lost"]] == list(range(rv + 1, newest + 1))
        assert it["data_loss_bytes"] == before[snap][1] == CHANGED * (newest - rv)
        # ...and its seconds, as the view had them just before (the failover is a moment later).
        assert before[snap][0] <= it["data_loss_s"] <= before[snap][0] + 5
        if rv < newest:
            assert it["data_loss_s"] >= 100 * (newest - rv)
        else:
            assert it["data_loss_s"] == 0
        assert snap not in after
    # The replica's copy is the active placement now; Paris's is a cached copy.
    rows = db.execute("SELECT snapshot_id, datacenter_id, version FROM placements"
                      " WHERE active AND snapshot_id LIKE 'fo-%' ORDER BY 1").fetchall()
    assert {r[0]: (r[1], r[2]) for r in rows} == {
        s: (rep or "t-paris", rv or newest) for s, _, rep, rv, newest in FLEET}

    # The replica sites power them on, level 1 first, without waiting for Paris.
    failed_over = [f for f in FLEET if f[2]]
    for snap, _, replica, _, _ in failed_over:
        wait_for(lambda: running(plane, replica).get(snap) == 2, what=f"{replica} to run {snap}")
    for dc in ("t-tokyo", "t-sydney"):
        order = [r[0] for r in db.execute(
            "SELECT s.priority FROM power_records r JOIN snapshots s ON s.id = r.snapshot_id"
            " WHERE r.datacenter_id = %s AND r.state = 'powered_on' AND r.epoch = 2"
            "   AND r.snapshot_id LIKE 'fo-%%' ORDER BY r.id", (dc,))]
        assert order == sorted(order) and len(order) == len([f for f in FLEET if f[2] == dc])
    doc, _ = plane.api.json("GET", f"/v1/failovers/{fid}", token=viewer)
    conforms(plane, doc, "Failover")
    conforms(plane, failovers, "FailoverPage")
    conforms(plane, plane.api.json("GET", f"/v1/failovers/{fid}/snapshots", token=viewer)[0],
             "FailoverSnapshotPage")
    vms, _ = plane.api.json("GET", "/v1/agent/vms",
                            token=plane.agents["t-tokyo"].tokens["t-tokyo"])
    conforms(plane, vms, "AgentVms")
    assert doc["state"] == "open"
    levels = {lv["level"]: lv for lv in doc["levels"]}
    assert [(levels[n]["snapshots"], levels[n]["failed_over"], levels[n]["to_power_on"],
             levels[n]["powered_on"], levels[n]["unrecoverable"]) for n in range(1, 6)] == \
        [(3, 3, 3, 3, 0), (2, 2, 2, 2, 0), (2, 2, 2, 2, 0), (1, 0, 0, 0, 1), (1, 0, 0, 0, 1)]
    assert levels[1]["versions_lost"] == 3 and levels[1]["data_loss_bytes"] == 3 * CHANGED
    assert levels[1]["last_powered_on_after_s"] is not None
    assert levels[4]["last_powered_on_at"] is None

    # The users' next restore says where from, and what it cost.
    doc, _ = plane.api.json("GET", "/v1/snapshots/fo-1c/restore", token=viewer)
    conforms(plane, doc, "Restore")
    assert (doc["state"], doc["datacenter_id"], doc["epoch"], doc["version"], doc["from_dc"],
            doc["versions_lost"], doc["lost_versions"], doc["failover_id"]) == \
        ("failed_over", "t-tokyo", 2, 1, "t-paris", 2, [2, 3], fid)
    assert "2 newer versions lost" in doc["detail"]
    doc, _ = plane.api.json("GET", "/v1/snapshots/fo-4a/restore", token=viewer)
    conforms(plane, doc, "Restore")
    assert (doc["state"], doc["datacenter_id"], doc["failover_id"]) == \
        ("unrecoverable", "t-paris", fid)
    assert doc["detail"].startswith("unrecoverable until t-paris returns")
    unrecoverable, _ = plane.api.json(
        "GET", f"/v1/failovers/{fid}/snapshots?outcome=unrecoverable", token=viewer)
    assert [i["snapshot_id"] for i in unrecoverable["items"]] == ["fo-4a", "fo-5a"]

    # The audit trail: one event per snapshot, with the loss.
    events = {r[0]: r[1] for r in db.execute(
        "SELECT key, payload FROM outbox WHERE key LIKE 'fo-%%' AND payload->>'type' IN"
        " ('io.homing.snapshot.failed_over', 'io.homing.snapshot.unrecoverable')")}
    assert events["fo-1c"]["type"] == "io.homing.snapshot.failed_over"
    assert (events["fo-1c"]["data"]["versions_lost"], events["fo-1c"]["data"]["to_dc"],
            events["fo-1c"]["data"]["data_loss_bytes"]) == (2, "t-tokyo", 2 * CHANGED)
    assert events["fo-1c"]["data"]["actor"]["role"] == "operator"
    assert events["fo-5a"]["type"] == "io.homing.snapshot.unrecoverable"
    # And the metrics, by level.
    wait_for(lambda: metric(plane, "homing_failover_unrecoverable_snapshots", 4) == 1,
             what="the unrecoverable gauge")
    assert metric(plane, "homing_failover_unrecoverable_snapshots", 1) == 0
    assert metric(plane, "homing_failover_failed_over_snapshots", 1) == 3
    assert metric(plane, "homing_failover_versions_lost", 1) == 3
    assert metric(plane, "homing_failover_data_loss_bytes", 3) == 2 * CHANGED
    for event in events.values():
        check_event(event)
    status = db.execute("SELECT payload FROM outbox WHERE key = 't-paris' AND"
                        " payload->>'type' = 'io.homing.datacenter.status_changed'").fetchone()[0]
    check_event(status)
    assert status["data"]["failover_id"] == fid

    # Paris's platform still runs the VMs its dead agent started. The agent
    # comes back (the site still declared down) and powers off what failed
    # over; a power-on it reports for one is refused.
    assert set(running(plane, "t-paris")) == {f[0] for f in FLEET}
    paris.start()
    wait_for(lambda: set(running(plane, "t-paris")) == {"fo-4a", "fo-5a"},
             what="Paris, back, to power off what failed over")
    for snap, _, replica, _, _ in failed_over:
        wait_for(lambda: powered_on_at(db, snap) == [replica], what=f"Paris's record of {snap}")
        assert [dc for dc in DCS if snap in running(plane, dc)] == [replica]
    plane.api.json("POST", "/v1/agent/vms/fo-1a/power", {"epoch": 1, "state": "powered_on"},
                   token=paris.tokens["t-paris"], expect=409)
    assert powered_on_at(db, "fo-1a") == ["t-tokyo"]

    # Paris returns: the failover ends, the unrecoverable ones are recovered there.
    plane.api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "active"}, token=operator)
    doc, _ = plane.api.json("GET", f"/v1/failovers/{fid}", token=viewer)
    assert doc["state"] == "ended" and doc["ended_at"]
    assert {lv["level"]: lv["recovered"] for lv in doc["levels"]} == {1: 0, 2: 0, 3: 0, 4: 1,
                                                                      5: 1}
    doc, _ = plane.api.json("GET", "/v1/snapshots/fo-4a/restore", token=viewer)
    assert (doc["state"], doc["datacenter_id"]) == ("active", "t-paris")
    wait_for(lambda: metric(plane, "homing_failover_unrecoverable_snapshots", 4) == 0,
             what="the unrecoverable gauge to clear")
    assert metric(plane, "homing_failover_failed_over_snapshots", 1) == 0
    doc, _ = plane.api.json("GET", "/v1/snapshots/fo-1c/restore", token=viewer)
    assert doc["state"] == "failed_over"  # still running from the replica's copy
    for snap, *_ in FLEET:
        assert db.execute("SELECT count(*) FROM placements WHERE snapshot_id = %s AND active",
                          (snap,)).fetchone()[0] == 1


def test_a_failover_is_read_by_viewers_and_bad_ids_are_404(plane):
    viewer = plane.api.token("viewer")
    plane.api.json("GET", "/v1/failovers/999999", token=viewer, expect=404)
    plane.api.json("GET", "/v1/failovers/abc", token=viewer, expect=404)
    plane.api.json("GET", "/v1/failovers/999999/snapshots", token=viewer, expect=404)
    plane.api.json("GET", "/v1/failovers/1/snapshots?outcome=lost", token=viewer, expect=400)
    plane.api.json("GET", "/v1/snapshots/nope/restore", token=viewer, expect=404)
    status, _, _ = plane.api.request("GET", "/v1/failovers", token=None)
    assert status == 401


def test_a_large_sites_failover_is_not_cut_by_the_statement_timeout(plane, database, topics, db,
                                                                    tmp_path):
    """The failover is one statement; an API whose statements may take 50 ms
    still fails over 400 snapshots, which takes longer than that."""
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority)"
               " SELECT 'big-' || i, 'u-big-' || i, 'tpl-1', 4096, 1 + i % 3"
               " FROM generate_series(1, 400) i")
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " SELECT 'big-' || i, 't-frankfurt', 1, true FROM generate_series(1, 400) i")
    db.execute("WITH c AS (INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " SELECT 'big-' || i, 't-tokyo', 1, false FROM generate_series(1, 400) i"
               " RETURNING id, snapshot_id)"
               " INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
               " SELECT snapshot_id, 't-tokyo', id FROM c")
    api = Homing(database, topics, "failover-timeout", "serve", tmp_path,
                 extra={"HOMING_PG_STATEMENT_TIMEOUT_MS": "50"})
    api.start()
    try:
        operator = api.token("operator")
        t0 = time.time()
        api.json("PUT", "/v1/datacenters/t-frankfurt/status", {"status": "down"},
                 token=operator)
        elapsed = time.time() - t0
        fid = api.json("GET", "/v1/failovers?datacenter_id=t-frankfurt")[0]["items"][0]["id"]
        doc, _ = api.json("GET", f"/v1/failovers/{fid}")
        assert sum(lv["failed_over"] for lv in doc["levels"]) == 400
        assert sum(lv["to_power_on"] for lv in doc["levels"]) == 0  # their power is off
        assert elapsed > 0.05, f"the failover took {elapsed:.3f} s: too fast to tell"
        api.json("PUT", "/v1/datacenters/t-frankfurt/status", {"status": "active"},
                 token=operator)
    finally:
        api.stop()
