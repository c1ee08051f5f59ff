"""Test failover, the rehearsal: Paris runs three snapshots, two with warm
replicas at Tokyo (libvirt's test driver at both). An operator starts a
failover test of Paris: Tokyo's agent starts a throwaway VM of each of the
two, under a name of its own, on an overlay of the replica's copy, while
the real VMs keep running at Paris under their epoch and nothing real
changes; the cleanup powers the copies off and deletes their overlays."""

import pytest

from conftest import Homing, free_port, seed_catalog, wait_for
from plane import Agent, agent_vms, qemu_img
from test_audit_events import check_event
from test_failover import conforms

DCS = ("t-paris", "t-tokyo")
SHA = "cd" * 32
FLEET = [("re-1", 1, "t-tokyo"), ("re-2", 2, "t-tokyo"), ("re-4", 4, None)]


@pytest.fixture(scope="module")
def plane(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rehearsal")
    api = Homing(database, topics, "rehearsal", "serve", tmp)
    api.migrate()
    seed_catalog(db)
    api.start()
    p = type("Plane", (), {})()
    p.api, p.agents, p.metrics, p.stores = api, {}, {}, {}
    for dc in DCS:
        p.stores[dc] = tmp / f"store-{dc}"
        p.stores[dc].mkdir()
        p.metrics[dc] = free_port()
        p.agents[dc] = Agent(api, dc, p.stores[dc], tmp, extra={
            "HOMING_DRIVER": "libvirt", "HOMING_LIBVIRT_URI": "test:///default",
            "HOMING_AGENT_RECONCILE_MS": "200",
            "HOMING_METRICS_LISTEN": f"127.0.0.1:{p.metrics[dc]}"}).start()
    yield p
    for agent in p.agents.values():
        if agent.proc and agent.proc.poll() is None:
            agent.stop()
    api.stop()


def running(plane, dc):
    """{VM name: epoch} from the agent's driver list (its metric)."""
    return agent_vms(plane.metrics[dc])


def seed(plane, db):
    """The images first: an agent that sees a row before its file would fail the start."""
    for snap, priority, replica in FLEET:
        for store in plane.stores.values():
            d = store / "snapshots" / snap
            d.mkdir(parents=True)
            qemu_img("create", "-q", "-f", "qcow2", str(d / "v1.qcow2"), "1M")
            (d / "v1.json").write_text('{"vcpus": 1, "memory_mib": 128}')
        db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, priority,"
                   " power) VALUES (%s, %s, 'tpl-1', 65536, %s, 'on')",
                   (snap, f"u-{snap}", priority))
        db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active,"
                   " content_sha256) VALUES (%s, 't-paris', 1, true, %s)", (snap, SHA))
        if replica:
            pid = db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version,"
                             " active, content_sha256) VALUES (%s, %s, 1, false, %s)"
                             " RETURNING id", (snap, replica, SHA)).fetchone()[0]
            db.execute("INSERT INTO replicas (snapshot_id, datacenter_id, placement_id)"
                       " VALUES (%s, %s, %s)", (snap, replica, pid))


def real_state(db):
    return db.execute("SELECT s.id, s.epoch, p.datacenter_id, (SELECT count(*) FROM power_records"
                      " r WHERE r.snapshot_id = s.id) FROM snapshots s JOIN placements p"
                      " ON p.snapshot_id = s.id AND p.active ORDER BY s.id").fetchall()


def test_a_rehearsal_starts_isolated_copies_at_the_replica_site_and_cleans_them_up(plane, db):
    seed(plane, db)
    wait_for(lambda: running(plane, "t-paris") == {"re-1": 1, "re-2": 1, "re-4": 1},
             what="Paris to run its three")
    before = real_state(db)
    tokyo_store = plane.stores["t-tokyo"]
    replica_image = (tokyo_store / "snapshots" / "re-1" / "v1.qcow2").read_bytes()

    operator, viewer = plane.api.token("operator"), plane.api.token("viewer")
    plane.api.json("POST", "/v1/failover-tests", {"datacenter_id": "t-paris"}, token=viewer,
                   expect=403)
    plane.api.json("POST", "/v1/failover-tests", {"datacenter_id": "t-nowhere"},
                   token=operator, expect=422)
    doc, headers = plane.api.json("POST", "/v1/failover-tests", {"datacenter_id": "t-paris"},
                                  token=operator, expect=201)
    tid = doc["id"]
    assert headers["Location"] == f"/v1/failover-tests/{tid}"
    assert doc["state"] == "running"
    assert [(v["snapshot_id"], v["datacenter_id"], v["version"], v["state"])
            for v in doc["vms"]] == [("re-1", "t-tokyo", 1, "pending"),
                                     ("re-2", "t-tokyo", 1, "pending")]
    names = {v["name"]: v["snapshot_id"] for v in doc["vms"]}
    assert all(n.startswith("fotest-") for n in names)

    # Tokyo runs the throwaway copies, under their own names, with no epoch...
    wait_for(lambda: running(plane, "t-tokyo") == {n: 0 for n in names},
             what="Tokyo to run the throwaway copies")
    doc = wait_for(lambda: (d := plane.api.json("GET", f"/v1/failover-tests/{tid}",
                                                token=viewer)[0])["counts"]["powered_on"] == 2
                   and d, what="the test's VMs reported")
    conforms(plane, doc, "FailoverTest")
    vms, _ = plane.api.json("GET", "/v1/agent/vms",
                            token=plane.agents["t-tokyo"].tokens["t-tokyo"])
    conforms(plane, vms, "AgentVms")
    assert [t["snapshot_id"] for t in vms["tests"]] == ["re-1", "re-2"]
    assert doc["counts"] == {"vms": 2, "pending": 0, "powered_on": 2, "failed": 0,
                             "powered_off": 0}
    # ...each on an overlay of the replica's copy, which stays as it was...
    for name in names:
        assert (tokyo_store / "failover-tests" / f"{name}.qcow2").exists()
    assert (tokyo_store / "snapshots" / "re-1" / "v1.qcow2").read_bytes() == replica_image
    # ...while the real VMs run at Paris, and nothing real changed.
    assert running(plane, "t-paris") == {"re-1": 1, "re-2": 1, "re-4": 1}
    assert real_state(db) == before

    doc, _ = plane.api.json("POST", f"/v1/failover-tests/{tid}/cleanup", token=operator,
                            expect=202)
    assert doc["state"] == "cleaning"
    wait_for(lambda: running(plane, "t-tokyo") == {}, what="Tokyo to power the copies off")
    doc = wait_for(lambda: (d := plane.api.json("GET", f"/v1/failover-tests/{tid}",
                                                token=viewer)[0])["state"] == "cleaned" and d,
                   what="the test cleaned")
    assert doc["counts"]["powered_off"] == 2 and doc["cleaned_at"]
    assert list((tokyo_store / "failover-tests").iterdir()) == []
    assert running(plane, "t-paris") == {"re-1": 1, "re-2": 1, "re-4": 1}
    assert real_state(db) == before
    # Cleaning up again changes nothing.
    again, _ = plane.api.json("POST", f"/v1/failover-tests/{tid}/cleanup", token=operator,
                              expect=202)
    assert again["state"] == "cleaned"
    listed, _ = plane.api.json("GET", "/v1/failover-tests", token=viewer)
    conforms(plane, listed, "FailoverTestPage")
    assert [t["id"] for t in listed["items"]] == [tid]
    # A site's rehearsals, not another's.
    mine, _ = plane.api.json("GET", "/v1/failover-tests?datacenter_id=t-paris", token=viewer)
    assert [t["id"] for t in mine["items"]] == [tid]
    other, _ = plane.api.json("GET", "/v1/failover-tests?datacenter_id=t-tokyo", token=viewer)
    assert other["items"] == []

    events = [r[0] for r in db.execute(
        "SELECT payload FROM outbox WHERE payload->>'type' LIKE 'io.homing.failover_test.%'"
        " ORDER BY id")]
    types = [e["type"] for e in events]
    assert types[0] == "io.homing.failover_test.started"
    assert types.count("io.homing.failover_test.vm_reported") == 4
    assert types.count("io.homing.failover_test.cleanup_requested") == 1
    assert types[-1] == "io.homing.failover_test.cleaned"
    for event in events:
        check_event(event)


def test_a_down_site_is_not_rehearsed(plane, db):
    operator = plane.api.token("operator")
    plane.api.json("PUT", "/v1/datacenters/t-sydney/status", {"status": "down"}, token=operator)
    try:
        doc, _ = plane.api.json("POST", "/v1/failover-tests", {"datacenter_id": "t-sydney"},
                                token=operator, expect=409)
        assert doc["type"].endswith("site-down")
    finally:
        plane.api.json("PUT", "/v1/datacenters/t-sydney/status", {"status": "active"},
                       token=operator)
    viewer = plane.api.token("viewer")
    plane.api.json("GET", "/v1/failover-tests/999999", token=viewer, expect=404)
    plane.api.json("POST", "/v1/failover-tests/999999/cleanup", token=operator, expect=404)
