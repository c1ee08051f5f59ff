"""Warm replicas made and kept current by real agents (three datacenters,
each its own `homing agent` process and store):

- a level-1 snapshot active at Paris, its user in Paris, gets its replica
  at Frankfurt (the nearest other site), with the template Frankfurt
  lacked; the active placement stays at Paris;
- a new version written at Paris reaches the replica with only the changed
  blocks on the wire;
- with the replica's agent down, a newer version leaves the replica behind
  beyond its RPO: the audit event, the metric and the snapshot resource say
  so, and once the agent is back the refresh clears it.
"""
import re
import shutil
import time

import pytest

from conftest import Homing, seed_catalog, wait_for
from plane import ENV, MIB, Agent, active, make_overlay, make_template, qemu_io, seed
from test_audit_events import check_event

SNAP = "snap-rep"


@pytest.fixture(scope="module")
def plane(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replicas")
    api = Homing(database, topics, "agent-replicas", "standalone", tmp,
                 extra={**ENV, "HOMING_REPLICA_PASS_S": "1"})
    api.migrate()
    seed_catalog(db)
    db.execute("UPDATE protection_policies SET replicas = 0, rpo_s = NULL WHERE level > 1")
    api.start()
    stores = {"t-paris": tmp / "paris", "t-frankfurt": tmp / "frankfurt",
              "t-tokyo": tmp / "tokyo"}
    make_template(stores["t-paris"], "tpl-1")
    make_template(stores["t-tokyo"], "tpl-1")
    agents = {dc: Agent(api, dc, store, tmp).start() for dc, store in stores.items()}
    yield api, agents, stores, tmp
    for a in agents.values():
        if a.proc.poll() is None:
            a.stop()
    api.stop()
    assert "replica pass failed" not in api.log_text()


def replicate_rows(db):
    return db.execute("SELECT id, from_dc, to_dc, state, bytes_sent, version, reason"
                      " FROM transfers WHERE snapshot_id = %s AND kind = 'replicate'"
                      " ORDER BY id", (SNAP,)).fetchall()


def replica(db):
    return db.execute("SELECT r.datacenter_id, p.version, p.content_sha256 FROM replicas r"
                      " LEFT JOIN placements p ON p.id = r.placement_id"
                      " WHERE r.snapshot_id = %s", (SNAP,)).fetchall()


def new_version(store, version, writes):
    """v<version> at the store: a copy of v<version - 1> with qemu-io writes."""
    d = store / "snapshots" / SNAP
    shutil.copyfile(d / f"v{version - 1}.qcow2", d / f"v{version}.qcow2")
    qemu_io(str(d / f"v{version}.qcow2"), *writes)


def metric(api, name, labels):
    text = api.get("/metrics")[2].decode()
    m = re.search(rf"^{name}\{{{labels}\}} (\S+)$", text, re.M)
    return float(m.group(1)) if m else None


def test_a_level_1_snapshot_gets_its_replica_at_the_nearest_other_site(plane, db):
    api, agents, stores, _ = plane
    seed(db, "u-rep", SNAP, "t-paris")
    db.execute("INSERT INTO device_locations (device_id, user_id, lat, lon, accuracy_m,"
               " reported_at, received_at) VALUES ('d-rep', 'u-rep', 48.86, 2.35, 10,"
               " now(), now())")
    make_overlay(stores["t-paris"], "tpl-1", SNAP, 1,
                 [(i * MIB + 4096, 65536, 0x41) for i in range(0, 48, 2)])
    digest1, _ = agents["t-paris"].register(SNAP, 1)
    # Level 1 (the only level with replicas here) once version 1 is written
    # and registered: the pass, every second, would otherwise queue the copy
    # of a version whose image is not there yet.
    db.execute("UPDATE snapshots SET priority = 1 WHERE id = %s", (SNAP,))

    try:
        wait_for(lambda: replica(db) == [("t-frankfurt", 1, digest1)], timeout=90,
                 what="the replica at Frankfurt")
    except AssertionError as e:  # say what the pass and the agents did instead
        logs = "\n".join(a.log_path.read_text()[-2000:] for a in agents.values())
        raise AssertionError(f"{e}: replica {replica(db)}, replicates {replicate_rows(db)}\n"
                             f"{api.log_text()[-3000:]}\n{logs}") from None
    (tid, src, dst, state, sent, version, reason), = replicate_rows(db)
    assert (src, dst, state, version, reason) == \
        ("t-paris", "t-frankfurt", "succeeded", 1, "replica-missing")
    assert active(db, SNAP) == [("t-paris", 1, digest1)]
    assert (stores["t-frankfurt"] / "snapshots" / SNAP / "v1.qcow2").exists()
    assert (stores["t-frankfurt"] / "templates" / "tpl-1.qcow2").exists()
    snap = api.json("GET", f"/v1/snapshots/{SNAP}")[0]
    assert [(r["datacenter_id"], r["version"], r["lag_s"], r["bytes_behind"])
            for r in snap["replicas"]] == [("t-frankfurt", 1, 0, 0)]
    print(f"\nfirst replica: {sent} bytes on the wire (template and overlay)")


def test_a_new_version_reaches_the_replica_with_only_the_difference(plane, db):
    api, agents, stores, _ = plane
    # About 1 % of the blocks rewritten at Paris: scattered 4 KiB, a few 64 KiB.
    writes = [f"write -P 0x77 {b * 4096 + 2 * MIB} 4096" for b in range(0, 4000, 100)]
    writes += [f"write -P 0x66 {o * MIB} 65536" for o in (5, 17, 40)]
    changed = 40 * 4096 + 3 * 65536
    new_version(stores["t-paris"], 2, writes)
    digest2, size2 = agents["t-paris"].register(SNAP, 2)
    assert db.execute("SELECT changed_bytes FROM snapshot_versions WHERE snapshot_id = %s"
                      " AND version = 2", (SNAP,)).fetchone()[0] == changed

    wait_for(lambda: replica(db) == [("t-frankfurt", 2, digest2)], timeout=90,
             what="the replica refreshed to version 2")
    (tid, src, dst, state, sent, version, reason) = replicate_rows(db)[-1]
    assert (src, dst, state, version, reason) == \
        ("t-paris", "t-frankfurt", "succeeded", 2, "replica-behind")
    # The blocks, the manifest as a patch from v1, the configuration, the framing:
    # within 10 % of the changed bytes, far from the version's own.
    assert 0.5 * changed <= sent <= 1.10 * changed, f"{sent} bytes for {changed} changed"
    assert active(db, SNAP) == [("t-paris", 2, digest2)]
    print(f"\nrefresh: {sent} bytes on the wire for {changed} changed "
          f"({sent / changed:.2f}x), the version holds {size2}")


def test_a_replica_behind_its_rpo_raises_the_event_and_the_metric_then_clears(plane, db):
    api, agents, stores, tmp = plane
    operator = api.token("operator")
    api.json("PUT", "/v1/protection-policies/1", {"replicas": 1, "rpo_s": 10}, token=operator)
    agents["t-frankfurt"].stop()
    new_version(stores["t-paris"], 3, ["write -P 0x55 0 65536"])
    written = time.time()
    agents["t-paris"].register(SNAP, 3)

    def breached_event():
        row = db.execute("SELECT payload FROM outbox WHERE key = %s AND payload->>'type'"
                         " = 'io.homing.replica.rpo_breached'", (SNAP,)).fetchone()
        return row and row[0]
    event = wait_for(breached_event, timeout=60, what="the RPO breach event")
    assert time.time() - written >= 10
    check_event(event)
    assert (event["data"]["datacenter_id"], event["data"]["version"],
            event["data"]["newest_version"], event["data"]["rpo_s"]) == \
        ("t-frankfurt", 2, 3, 10)
    assert event["data"]["lag_s"] > 10 and event["data"]["bytes_behind"] == 65536
    snap = api.json("GET", f"/v1/snapshots/{SNAP}")[0]
    assert snap["replicas"][0]["rpo_breached"] is True and snap["replicas"][0]["lag_s"] > 10
    wait_for(lambda: metric(api, "homing_replica_rpo_breached", 'priority="1"') == 1,
             timeout=20, what="the metric")
    assert metric(api, "homing_replica_lag_seconds", 'priority="1"') > 10
    # Raised once, not every pass.
    time.sleep(2.5)
    assert db.execute("SELECT count(*) FROM outbox WHERE key = %s AND payload->>'type'"
                      " = 'io.homing.replica.rpo_breached'", (SNAP,)).fetchone()[0] == 1

    agents["t-frankfurt"] = Agent(api, "t-frankfurt", stores["t-frankfurt"], tmp).start()
    wait_for(lambda: replica(db)[0][1] == 3, timeout=90, what="the replica caught up")
    wait_for(lambda: metric(api, "homing_replica_rpo_breached", 'priority="1"') == 0,
             timeout=20, what="the metric cleared")
    snap = api.json("GET", f"/v1/snapshots/{SNAP}")[0]
    assert snap["replicas"][0]["rpo_breached"] is False
    assert snap["replicas"][0]["rpo_breached_at"] is None
