"""Failback sends only the difference: a level-1 snapshot active at Paris with
its warm replica at Frankfurt (real qcow2 images, moved by real agents)
fails over when Paris's agent is SIGKILLed and Paris declared down; a new
version is written at Frankfurt; Paris comes back and an operator fails
back. Paris still holds its copy from before (demoted, a cached one), the
target builds from it, and the move carries about the changed bytes, not the
version's."""
import re
import shutil

import pytest

from conftest import Homing, seed_catalog, wait_for
from plane import MIB, Agent, active, make_overlay, make_template, qemu_io, seed
from test_audit_events import check_event

SNAP = "snap-fb"


@pytest.fixture(scope="module")
def plane(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("failback")
    api = Homing(database, topics, "failback", "standalone", tmp,
                 extra={"HOMING_REPLICA_PASS_S": "0"})
    api.migrate()
    seed_catalog(db)
    db.execute("INSERT INTO template_replicas VALUES ('tpl-1', 't-frankfurt')")
    api.start()
    stores = {"t-paris": tmp / "paris", "t-frankfurt": tmp / "frankfurt"}
    for store in stores.values():
        make_template(store, "tpl-1")
    agents = {dc: Agent(api, dc, store, tmp).start() for dc, store in stores.items()}
    yield api, agents, stores
    for agent in agents.values():
        if agent.proc and agent.proc.poll() is None:
            agent.stop()
    api.stop()


def test_failback_builds_from_the_returned_sites_copy_and_sends_only_the_difference(plane, db):
    api, agents, stores = plane
    seed(db, "u-fb", SNAP, "t-paris")
    db.execute("UPDATE snapshots SET priority = 1 WHERE id = %s", (SNAP,))
    make_overlay(stores["t-paris"], "tpl-1", SNAP, 1,
                 [(i * MIB + 4096, 65536, 0x41) for i in range(0, 48, 2)])
    digest1, size1 = agents["t-paris"].register(SNAP, 1)
    # The warm replica at Frankfurt, made by a replicate as the replica pass queues one.
    db.execute("INSERT INTO replicas (snapshot_id, datacenter_id) VALUES (%s, 't-frankfurt')",
               (SNAP,))
    db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
               " template_present, priority, reason, idempotency_key, bytes_total, kind,"
               " version) VALUES (%s, 't-paris', 't-frankfurt', 'tpl-1', true, 1,"
               " 'replica-missing', 'fb-replica', %s, 'replicate', 1)", (SNAP, size1))
    wait_for(lambda: db.execute("SELECT p.version FROM replicas r JOIN placements p"
                                " ON p.id = r.placement_id WHERE r.snapshot_id = %s",
                                (SNAP,)).fetchone() == (1,), timeout=90,
             what="the replica at Frankfurt")

    agents["t-paris"].kill()
    operator = api.token("operator")
    api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "down"}, token=operator)
    assert active(db, SNAP) == [("t-frankfurt", 1, digest1)]
    fid = api.json("GET", "/v1/failovers?datacenter_id=t-paris")[0]["items"][0]["id"]
    # Failing back while Paris is down is refused, and queues nothing.
    doc, _ = api.json("POST", f"/v1/failovers/{fid}/failback", token=operator, expect=409)
    assert doc["type"].endswith("site-not-active")

    # Frankfurt runs it now and writes version 2: about 1 % of the blocks.
    d = stores["t-frankfurt"] / "snapshots" / SNAP
    shutil.copyfile(d / "v1.qcow2", d / "v2.qcow2")
    writes = [f"write -P 0x77 {b * 4096 + 2 * MIB} 4096" for b in range(0, 4000, 100)]
    writes += [f"write -P 0x66 {o * MIB} 65536" for o in (5, 17, 40)]
    changed = 40 * 4096 + 3 * 65536
    qemu_io(str(d / "v2.qcow2"), *writes)
    digest2, size2 = agents["t-frankfurt"].register(SNAP, 2)

    # Paris returns with its copy of version 1, demoted: a cached one.
    agents["t-paris"].start()
    api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "active"}, token=operator)
    assert db.execute("SELECT version FROM placements WHERE snapshot_id = %s AND NOT active"
                      " AND datacenter_id = 't-paris' AND evicted_at IS NULL",
                      (SNAP,)).fetchall() == [(1,)]
    doc, _ = api.json("POST", f"/v1/failovers/{fid}/failback", token=operator, expect=202)
    assert doc["levels"][0]["failback_queued"] == 1
    again, _ = api.json("POST", f"/v1/failovers/{fid}/failback", token=operator, expect=202)
    assert again["levels"][0]["failback_queued"] == 1  # nothing queued twice
    events = [r[0] for r in db.execute(
        "SELECT payload FROM outbox WHERE payload->>'type' = 'io.homing.failover.failback_started'"
        " ORDER BY id")]
    assert [e["data"]["transfers"] for e in events] == [1, 0]
    for event in events:
        check_event(event)

    def moved_back():
        row = db.execute("SELECT state, bytes_sent, from_dc, to_dc, reason FROM transfers"
                         " WHERE snapshot_id = %s AND reason = 'failback'", (SNAP,)).fetchone()
        return row if row and row[0] in ("succeeded", "failed") else None
    state, sent, src, dst, _ = wait_for(moved_back, timeout=90, what="the failback move")
    assert (state, src, dst) == ("succeeded", "t-frankfurt", "t-paris")
    assert active(db, SNAP) == [("t-paris", 2, digest2)]
    # Only the difference travelled (blocks, the manifest's patch, the framing)...
    assert 0.5 * changed <= sent <= 1.10 * changed, f"{sent} bytes for {changed} changed"
    # ...because Paris built version 2 from its own copy of version 1.
    line = [ln for ln in agents["t-paris"].log_path.read_text().splitlines()
            if "succeeded" in ln and "held here" in ln][-1]
    held = int(re.search(r"(\d+) held here", line).group(1))
    assert held > 0, line
    doc, _ = api.json("GET", f"/v1/failovers/{fid}")
    assert doc["levels"][0]["failed_back"] == 1
    restore, _ = api.json("GET", f"/v1/snapshots/{SNAP}/restore")
    # Epochs: 1 at Paris, 2 the failover, 3 version 2 at Frankfurt, 4 the failback.
    assert (restore["state"], restore["datacenter_id"], restore["epoch"]) == \
        ("active", "t-paris", 4)
    print(f"\nfailback: {sent} bytes on the wire for {changed} changed "
          f"({sent / changed:.2f}x); version 2 holds {size2}, {held} held at Paris")
