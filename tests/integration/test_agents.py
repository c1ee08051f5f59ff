"""Transfer agents move real images (qcow2 overlays on their templates)
between two datacenters' stores, each agent its own process:

- a first move sends the template the target lacks, then the overlay's own
  blocks; the copy at the target is verified (content digest, qemu-img
  check), the placement flips, the template gains a replica;
- a newer version, written at the new site, moves back to the first one,
  which still holds the old version as a cached copy: only the changed
  blocks travel, counted in bytes; and from the newest cached copy when a
  site holds several;
- a cancelled transfer stops within seconds and nothing active changes;
- a target killed mid-transfer resumes from what it had written.
"""
import json
import random
import shutil
import subprocess
import time

import pytest

from conftest import Homing, seed_catalog, wait_for
from plane import (ENV, MIB, Agent, active, go_to, make_overlay, make_template, qemu_io, seed,
                   transfer_rows, wait_transfer)

@pytest.fixture(scope="module")
def plane(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("agents")
    api = Homing(database, topics, "agents", "standalone", tmp, extra=ENV)
    api.migrate()
    seed_catalog(db)
    # Only Paris holds the template: Tokyo must get it first.
    db.execute("DELETE FROM template_replicas WHERE datacenter_id = 't-tokyo'")
    api.start()
    stores = {"t-paris": tmp / "paris", "t-tokyo": tmp / "tokyo"}
    make_template(stores["t-paris"], "tpl-1")
    agents = {dc: Agent(api, dc, store, tmp).start() for dc, store in stores.items()}
    yield api, agents, stores
    for a in agents.values():
        a.stop()
    api.stop()


def test_a_snapshot_moves_with_its_template_then_only_the_changed_blocks_come_back(plane, db):
    api, agents, stores = plane
    rng = random.Random(3)
    seed(db, "u-mover", "snap-mover", "t-paris")
    v1 = [(i * MIB + 8192, 65536, 0x11) for i in range(0, 48, 3)]
    make_overlay(stores["t-paris"], "tpl-1", "snap-mover", 1, v1)
    digest1, size1 = agents["t-paris"].register("snap-mover", 1)
    assert active(db, "snap-mover") == [("t-paris", 1, digest1)]

    # The user flies to Tokyo: the template, then the overlay, travel.
    go_to(api, "u-mover", 35.68, 139.69)
    tid, src, dst, state, sent, done, error = wait_transfer(db, "snap-mover", 1)
    assert (src, dst, error) == ("t-paris", "t-tokyo", None)
    assert active(db, "snap-mover") == [("t-tokyo", 1, digest1)]
    copy = stores["t-tokyo"] / "snapshots" / "snap-mover" / "v1.qcow2"
    assert copy.exists() and (stores["t-tokyo"] / "templates" / "tpl-1.qcow2").exists()
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(copy)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["backing-filename"] == "../../templates/tpl-1.qcow2"
    assert db.execute("SELECT count(*) FROM template_replicas WHERE template_id = 'tpl-1'"
                      " AND datacenter_id = 't-tokyo'").fetchone()[0] == 1
    # The guest sees the same disk at both sites.
    def read(path, off, n):
        return subprocess.run(["qemu-io", "-f", "qcow2", "-r", "-c", f"read -v {off} {n}",
                               str(path)], check=True, capture_output=True, text=True).stdout
    original = stores["t-paris"] / "snapshots" / "snap-mover" / "v1.qcow2"
    for off in (0, 3 * MIB + 8192, 32 * MIB):
        assert read(copy, off, 4096).split("\n")[:64] == read(original, off, 4096).split("\n")[:64]

    # The VM writes at Tokyo: version 2, about 1 % of the blocks changed,
    # scattered 4 KiB writes and clustered 64 KiB ones.
    v2 = stores["t-tokyo"] / "snapshots" / "snap-mover" / "v2.qcow2"
    shutil.copyfile(copy, v2)
    scattered = sorted(rng.sample(range(0, 64 * MIB // 4096), 40))
    writes = [f"write -P 0x77 {b * 4096} 4096" for b in scattered]
    writes += [f"write -P 0x66 {o * MIB} 65536" for o in (5, 17, 40, 61)]
    qemu_io(str(v2), *writes)
    changed = 40 * 4096 + 4 * 65536
    digest2, size2 = agents["t-tokyo"].register("snap-mover", 2)
    assert active(db, "snap-mover") == [("t-tokyo", 2, digest2)]

    # Back to Paris, which keeps version 1 as a cached copy: only the difference moves.
    # (The scheduler notices the first transfer's end within a catalog refresh;
    # the user keeps reporting, as phones do.)
    wait_for(lambda: go_to(api, "u-mover", 48.86, 2.35) or len(transfer_rows(db, "snap-mover")) == 2,
             timeout=30, interval=1, what="the move back")
    tid2, src, dst, state, sent, done, error = wait_transfer(db, "snap-mover", 2)
    assert (src, dst, error) == ("t-tokyo", "t-paris", None)
    assert active(db, "snap-mover") == [("t-paris", 2, digest2)]
    # Everything on the wire (the blocks, the manifest as a patch from v1, the
    # configuration, the framing) is within 10 % of the changed bytes; blocks
    # rewritten with what v1 held need not travel at all.
    assert sent <= 1.10 * changed, f"{sent} bytes travelled for {changed} changed"
    assert sent >= 0.5 * changed
    log = agents["t-paris"].log_path.read_text()
    assert f"transfer {tid2} succeeded" in log

    # Paris writes version 3, and the user flies to Tokyo again. Tokyo holds
    # versions 1 and 2: the delta is from 2, the newer, so version 2's
    # changes do not travel again.
    v3 = stores["t-paris"] / "snapshots" / "snap-mover" / "v3.qcow2"
    shutil.copyfile(stores["t-paris"] / "snapshots" / "snap-mover" / "v2.qcow2", v3)
    qemu_io(str(v3), *[f"write -P 0x55 {o * MIB + 2 * 65536} 65536" for o in range(0, 64, 3)])
    changed3 = 22 * 65536
    digest3, size3 = agents["t-paris"].register("snap-mover", 3)
    wait_for(lambda: go_to(api, "u-mover", 35.68, 139.69) or len(transfer_rows(db, "snap-mover")) == 3,
             timeout=30, interval=1, what="the second move to Tokyo")
    tid3, src, dst, state, sent3, done, error = wait_transfer(db, "snap-mover", 3)
    assert (src, dst, error) == ("t-paris", "t-tokyo", None)
    assert active(db, "snap-mover") == [("t-tokyo", 3, digest3)]
    assert sent3 <= 1.10 * changed3, f"{sent3} bytes travelled for {changed3} changed since v2"


def test_a_cancelled_transfer_stops_and_nothing_active_changes(plane, db, tmp_path):
    api, agents, stores = plane
    seed(db, "u-cancel", "snap-cancel", "t-paris")
    make_overlay(stores["t-paris"], "tpl-1", "snap-cancel", 1,
                 [(i * MIB, MIB, 0x21) for i in range(0, 40)])
    agents["t-paris"].register("snap-cancel", 1)
    # Slow Tokyo down so the transfer is still running when it is cancelled.
    agents["t-tokyo"].stop()
    slow = Agent(api, "t-tokyo", stores["t-tokyo"], tmp_path,
                 extra={"HOMING_AGENT_BANDWIDTH": str(4 * MIB)}).start()
    agents["t-tokyo"] = slow
    go_to(api, "u-cancel", 35.68, 139.69)
    tid = wait_transfer(db, "snap-cancel", 1, states=("running",))[0]
    wait_for(lambda: transfer_rows(db, "snap-cancel")[0][5] > 2 * MIB, timeout=30,
             what="some bytes to arrive")
    body, _ = api.json("POST", f"/v1/transfers/{tid}/cancel", {}, token=api.token("operator"))
    cancelled_at = time.time()
    assert body["state"] == "cancelled"
    wait_for(lambda: f"transfer {tid} stopped" in slow.log_path.read_text(), timeout=10,
             what="the agent to stop")
    assert time.time() - cancelled_at < 5
    assert active(db, "snap-cancel")[0][0] == "t-paris"
    assert not (stores["t-tokyo"] / "snapshots" / "snap-cancel" / "v1.qcow2").exists()


def test_one_process_for_several_datacenters_serves_each_only_what_its_ticket_opens(
        plane, db, tmp_path):
    """The quickstart's shape: the target pulls the template from one datacenter
    and the snapshot from another, both answered by the same process."""
    api, agents, stores = plane
    root = tmp_path / "stores"
    multi = Agent(api, "t-sydney,t-virginia,t-frankfurt", root, tmp_path)
    # Virginia holds the template (the nearest holder for Frankfurt once Paris
    # is down); Sydney holds the snapshot; Frankfurt has nothing.
    for dc in ("t-virginia", "t-sydney"):
        (root / dc / "templates").mkdir(parents=True)
        shutil.copyfile(stores["t-paris"] / "templates" / "tpl-1.qcow2",
                        root / dc / "templates" / "tpl-1.qcow2")
    db.execute("INSERT INTO template_replicas VALUES ('tpl-1', 't-virginia')")
    multi.start()
    seed(db, "u-multi", "snap-multi", "t-sydney")
    make_overlay(root / "t-sydney", "tpl-1", "snap-multi", 1, [(0, 65536, 0x2a)])
    digest, _ = multi.register("snap-multi", 1, dc="t-sydney")
    db.execute("UPDATE datacenters SET status = 'down' WHERE id = 't-paris'")
    try:
        go_to(api, "u-multi", 50.11, 8.68)
        row = wait_transfer(db, "snap-multi", 1, timeout=60)
    finally:
        db.execute("UPDATE datacenters SET status = 'active' WHERE id = 't-paris'")
        multi.stop()
    assert (row[1], row[2], row[6]) == ("t-sydney", "t-frankfurt", None)
    assert active(db, "snap-multi") == [("t-frankfurt", 1, digest)]
    assert (root / "t-frankfurt" / "templates" / "tpl-1.qcow2").exists()


def test_cached_copies_are_evicted_when_their_datacenter_needs_the_room(plane, db):
    """Tokyo keeps snap-mover's old versions as cached copies; short of room,
    it evicts them (the files go, the placements say so), and nothing active."""
    api, agents, stores = plane
    cached = db.execute("SELECT version FROM placements WHERE snapshot_id = 'snap-mover'"
                        " AND datacenter_id = 't-tokyo' AND NOT active AND evicted_at IS NULL"
                        " ORDER BY version").fetchall()
    assert [v for (v,) in cached] == [1, 2]
    body, _ = api.json("GET", "/v1/datacenters/t-tokyo")
    assert body["cached_bytes"] > 0
    active_before = db.execute("SELECT snapshot_id, datacenter_id FROM placements WHERE active"
                               " ORDER BY snapshot_id").fetchall()
    capacity = db.execute("SELECT capacity_bytes FROM datacenters WHERE id = 't-tokyo'").fetchone()[0]
    db.execute("UPDATE datacenters SET capacity_bytes = used_bytes WHERE id = 't-tokyo'")
    try:
        wait_for(lambda: db.execute("SELECT count(*) FROM placements WHERE datacenter_id = 't-tokyo'"
                                    " AND NOT active AND evicted_at IS NULL").fetchone()[0] == 0,
                 timeout=20, what="Tokyo's cached copies to be evicted")
    finally:
        db.execute("UPDATE datacenters SET capacity_bytes = %s WHERE id = 't-tokyo'", (capacity,))
    d = stores["t-tokyo"] / "snapshots" / "snap-mover"
    # The image goes first, then its manifest: wait for both.
    wait_for(lambda: not any((d / f).exists() for f in ("v1.qcow2", "v2.qcow2", "v2.manifest")),
             timeout=10, what="their files to go")
    assert db.execute("SELECT snapshot_id, datacenter_id FROM placements WHERE active"
                      " ORDER BY snapshot_id").fetchall() == active_before
    assert (stores["t-paris"] / "snapshots" / "snap-mover" / "v2.qcow2").exists()
    body, _ = api.json("GET", "/v1/datacenters/t-tokyo")
    assert body["cached_bytes"] == 0
    events = db.execute("SELECT count(*) FROM outbox WHERE payload->>'type' ="
                        " 'io.homing.placement.evicted' AND payload->'data'->>'datacenter_id'"
                        " = 't-tokyo'").fetchone()[0]
    assert events >= 2


def test_agents_pull_from_each_other_over_https(plane, db, tmp_path):
    """With --agent-tls-cert/--agent-tls-key a peer serves HTTPS (and says
    so in its URL); a target trusts it by --agent-tls-ca, or refuses it."""
    api, agents, stores = plane
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True,
                   timeout=60)
    tls = {"HOMING_AGENT_TLS_CERT": str(cert), "HOMING_AGENT_TLS_KEY": str(key),
           "HOMING_AGENT_TLS_CA": str(cert)}
    db.execute("INSERT INTO datacenters (id, name, city, lat, lon, capacity_bytes) VALUES"
               " ('t-london', 'London', 'London', 51.51, -0.13, 1099511627776),"
               " ('t-madrid', 'Madrid', 'Madrid', 40.42, -3.70, 1099511627776)")
    db.execute("INSERT INTO template_replicas VALUES ('tpl-1', 't-london'), ('tpl-1', 't-madrid')")
    london, madrid = tmp_path / "london", tmp_path / "madrid"
    for store in (london, madrid):
        (store / "templates").mkdir(parents=True)
        shutil.copyfile(stores["t-paris"] / "templates" / "tpl-1.qcow2",
                        store / "templates" / "tpl-1.qcow2")
    src = Agent(api, "t-london", london, tmp_path, extra=tls).start()
    dst = Agent(api, "t-madrid", madrid, tmp_path, extra=tls).start()
    try:
        url = db.execute("SELECT agent_url FROM datacenters WHERE id = 't-london'").fetchone()[0]
        assert url.startswith("https://127.0.0.1:")
        seed(db, "u-tls", "snap-tls", "t-london")
        make_overlay(london, "tpl-1", "snap-tls", 1, [(0, 3 * MIB, 0x3c)])
        digest, _ = src.register("snap-tls", 1)
        # The scheduler learns of new datacenters at its next catalog reload
        # (every second here); until then a snapshot placed at one is nowhere.
        time.sleep(2.5)
        go_to(api, "u-tls", 40.42, -3.70)
        row = wait_transfer(db, "snap-tls", 1, timeout=60)
        assert (row[1], row[2], row[6]) == ("t-london", "t-madrid", None)
        assert active(db, "snap-tls") == [("t-madrid", 1, digest)]
        # A client that does not trust the certificate gets no answer from the peer.
        plain = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                                f"{url}/snapshots/snap-tls/versions/1/manifest"],
                               capture_output=True, text=True)
        assert plain.returncode != 0 and plain.stdout == "000"
    finally:
        src.stop()
        dst.stop()
