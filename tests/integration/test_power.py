"""Powering on, end to end: agents as real processes power VMs on and off
through their drivers — libvirt's test driver (test:///default: no
hypervisor, its domains live inside the agent's process) at Tokyo and
Sydney, an operator's command (the exec driver) at Paris — and report to
the API, whose fence in PostgreSQL keeps every VM running at one place at
most. What runs is asked of each agent (its homing_agent_vm metric: the
driver's list) and of the power records."""
import re
import signal
import time
import urllib.request

import pytest

from conftest import Homing, seed_catalog, wait_for
from plane import POWER_DCS as DCS, PowerPlane, make_overlay, make_template, powered_on_at

# A platform for the exec driver: VMs are lines in a file; activating
# waits while a "slow" file exists, so a test can freeze the agent mid-start.
PLATFORM = """#!/bin/sh
here=$(dirname "$0")
vms="$here/vms-$HOMING_DATACENTER"
touch "$vms"
case $HOMING_ACTION in
activate)
  echo "$HOMING_SNAPSHOT" > "$here/starting"
  while [ -f "$here/slow" ]; do sleep 0.1; done
  grep -v "^$HOMING_SNAPSHOT " "$vms" > "$vms.new"; mv "$vms.new" "$vms"
  echo "$HOMING_SNAPSHOT $HOMING_VERSION $HOMING_EPOCH" >> "$vms" ;;
deactivate)
  grep -v "^$HOMING_SNAPSHOT " "$vms" > "$vms.new"; mv "$vms.new" "$vms" ;;
list) cat "$vms" ;;
esac
"""


@pytest.fixture(scope="module")
def plane(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("power")
    api = Homing(database, topics, "power", "serve", tmp)
    api.migrate()
    seed_catalog(db)
    api.start()
    p = PowerPlane(api, tmp, PLATFORM)
    yield p
    p.stop_agents()
    api.stop()


def scrape(plane, dc):
    with urllib.request.urlopen(f"http://127.0.0.1:{plane.metrics[dc]}/metrics",
                                timeout=10) as r:
        return r.read().decode()


def running(plane, dc):
    """What the agent's driver runs: {snapshot: epoch}, from its metric."""
    vms = {}
    for line in scrape(plane, dc).splitlines():
        m = re.match(r'homing_agent_vm\{datacenter="([^"]+)",snapshot="([^"]+)",'
                     r'version="(\d+)",epoch="(\d+)"\} 1', line)
        if m:
            assert m.group(1) == dc
            vms[m.group(2)] = int(m.group(4))
    return vms


def refused(plane, dc):
    m = re.search(r'homing_agent_power_actions_total\{action="power_on",outcome="refused"\} '
                  r'(\d+)', scrape(plane, dc))
    return int(m.group(1)) if m else 0


def records(db, snap):
    return [tuple(r) for r in db.execute(
        "SELECT datacenter_id, epoch, state FROM power_records WHERE snapshot_id = %s"
        " ORDER BY id", (snap,))]


def everywhere(plane, snap):
    """Where the snapshot's VM runs, asked of every agent that is not frozen."""
    return sorted(dc for dc in DCS if snap in running(plane, dc))


def seed(plane, db, snap, at):
    """A snapshot active at `at`, its version 1 in every store (a copy, and its configuration)."""
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
               " VALUES (%s, %s, 'tpl-1', 4096)", (snap, f"u-{snap}"))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, %s, 1, true)", (snap, at))
    for store in plane.stores.values():
        d = store / "snapshots" / snap
        d.mkdir(parents=True)
        (d / "v1.qcow2").write_bytes(b"")
        (d / "v1.json").write_text('{"vcpus": 1, "memory_mib": 128}')


def set_power(plane, snap, power):
    admin = plane.api.token("admin")
    _, headers = plane.api.json("GET", f"/v1/snapshots/{snap}")
    plane.api.json("PATCH", f"/v1/snapshots/{snap}", {"power": power}, token=admin,
                   headers={"If-Match": headers["ETag"]})


def move(db, snap, to_dc, key):
    """A transfer that succeeds: the placement switches, the epoch advances. In
    one transaction: the agents claim transfers, and never see this one."""
    with db.transaction():
        src = db.execute("SELECT datacenter_id FROM placements WHERE snapshot_id = %s"
                         " AND active", (snap,)).fetchone()[0]
        tid = db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
                         " template_present, reason, idempotency_key, bytes_total)"
                         " VALUES (%s, %s, %s, 'tpl-1', true, 'test', %s, 4096) RETURNING id",
                         (snap, src, to_dc, key)).fetchone()[0]
        assert db.execute("SELECT homing_transfer_succeeded(%s)", (tid,)).fetchone()[0] is True
    return db.execute("SELECT epoch FROM snapshots WHERE id = %s", (snap,)).fetchone()[0]


def test_a_vm_with_power_on_runs_at_its_datacenter_exactly_once(plane, db):
    seed(plane, db, "snap-once", "t-tokyo")
    set_power(plane, "snap-once", "on")
    wait_for(lambda: running(plane, "t-tokyo").get("snap-once") == 1, what="Tokyo to run it")
    assert everywhere(plane, "snap-once") == ["t-tokyo"]
    assert records(db, "snap-once") == [("t-tokyo", 1, "powered_on")]
    doc, _ = plane.api.json("GET", "/v1/snapshots/snap-once")
    assert doc["powered_on_at"] == ["t-tokyo"]

    set_power(plane, "snap-once", "off")
    wait_for(lambda: "snap-once" not in running(plane, "t-tokyo"), what="Tokyo to stop it")
    wait_for(lambda: records(db, "snap-once")[-1] == ("t-tokyo", 1, "powered_off"),
             what="the powered_off record")
    assert everywhere(plane, "snap-once") == []


def test_after_a_move_the_old_site_powers_off_and_the_new_one_on_with_the_new_epoch(plane, db):
    seed(plane, db, "snap-moves", "t-paris")
    set_power(plane, "snap-moves", "on")
    wait_for(lambda: running(plane, "t-paris").get("snap-moves") == 1, what="Paris to run it")

    epoch = move(db, "snap-moves", "t-tokyo", "power-move-1")
    assert epoch == 2
    wait_for(lambda: running(plane, "t-tokyo").get("snap-moves") == 2, what="Tokyo to run it")
    assert everywhere(plane, "snap-moves") == ["t-tokyo"]
    # Paris said it stopped before Tokyo was allowed to start.
    assert records(db, "snap-moves") == [("t-paris", 1, "powered_on"),
                                         ("t-paris", 1, "powered_off"),
                                         ("t-tokyo", 2, "powered_on")]

    # And on to Sydney, both libvirt: the same, under epoch 3.
    assert move(db, "snap-moves", "t-sydney", "power-move-2") == 3
    wait_for(lambda: running(plane, "t-sydney").get("snap-moves") == 3, what="Sydney to run it")
    assert everywhere(plane, "snap-moves") == ["t-sydney"]
    assert powered_on_at(db, "snap-moves") == ["t-sydney"]


def test_an_agent_frozen_mid_start_during_a_move_is_refused_and_powers_off(plane, db):
    """Paris is starting the VM (epoch 1) when it is frozen; the snapshot
    moves to Tokyo, which powers it on under epoch 2. Paris wakes, finishes
    its start, reports epoch 1: refused, and it powers its VM off."""
    seed(plane, db, "snap-frozen", "t-paris")
    starting = plane.platform / "starting"
    starting.unlink(missing_ok=True)
    (plane.platform / "slow").write_text("")
    set_power(plane, "snap-frozen", "on")
    wait_for(lambda: starting.exists() and starting.read_text().strip() == "snap-frozen",
             what="Paris to start the VM")
    paris = plane.agents["t-paris"]
    paris.proc.send_signal(signal.SIGSTOP)
    try:
        (plane.platform / "slow").unlink()
        assert move(db, "snap-frozen", "t-tokyo", "power-frozen") == 2
        wait_for(lambda: running(plane, "t-tokyo").get("snap-frozen") == 2,
                 what="Tokyo to run it")
    finally:
        paris.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: refused(plane, "t-paris") >= 1, what="Paris to be refused")
    wait_for(lambda: "snap-frozen" not in running(plane, "t-paris"),
             what="Paris to power its VM off")
    assert everywhere(plane, "snap-frozen") == ["t-tokyo"]
    wait_for(lambda: records(db, "snap-frozen")[-1] == ("t-paris", 1, "powered_off"),
             what="Paris's powered_off record")
    assert records(db, "snap-frozen") == [("t-tokyo", 2, "powered_on"),
                                          ("t-paris", 1, "powered_off")]
    assert powered_on_at(db, "snap-frozen") == ["t-tokyo"]
    refusal = db.execute("SELECT payload->'data' FROM outbox WHERE key = 'snap-frozen'"
                         " AND payload->>'type' = 'io.homing.vm.power_refused'").fetchone()[0]
    assert (refusal["datacenter_id"], refusal["refusal"]) == ("t-paris", "stale-epoch")


def test_a_site_declared_down_is_not_waited_for_and_demotes_its_vm_when_back(plane, db):
    """Tokyo runs the VM and freezes (an outage). The snapshot moves to
    Sydney, which waits while Tokyo's record says the VM runs there; once
    an operator declares Tokyo down, Sydney powers it on without Tokyo's
    word. Tokyo comes back and powers its VM off."""
    seed(plane, db, "snap-outage", "t-tokyo")
    set_power(plane, "snap-outage", "on")
    wait_for(lambda: running(plane, "t-tokyo").get("snap-outage") == 1, what="Tokyo to run it")
    tokyo = plane.agents["t-tokyo"]
    tokyo.proc.send_signal(signal.SIGSTOP)
    try:
        assert move(db, "snap-outage", "t-sydney", "power-outage") == 2
        vms = plane.api.json("GET", "/v1/agent/vms",
                             token=plane.agents["t-sydney"].tokens["t-sydney"])[0]["vms"]
        assert [v["blocked_by"] for v in vms if v["snapshot_id"] == "snap-outage"] == ["t-tokyo"]
        time.sleep(1)  # five of Sydney's passes
        assert "snap-outage" not in running(plane, "t-sydney")
        assert powered_on_at(db, "snap-outage") == ["t-tokyo"]
        operator = plane.api.token("operator")
        plane.api.json("PUT", "/v1/datacenters/t-tokyo/status", {"status": "down"},
                       token=operator)
        wait_for(lambda: running(plane, "t-sydney").get("snap-outage") == 2,
                 what="Sydney to run it")
        assert powered_on_at(db, "snap-outage") == ["t-sydney", "t-tokyo"]  # Tokyo is silent
    finally:
        tokyo.proc.send_signal(signal.SIGCONT)
    wait_for(lambda: "snap-outage" not in running(plane, "t-tokyo"),
             what="Tokyo to demote its VM")
    wait_for(lambda: powered_on_at(db, "snap-outage") == ["t-sydney"],
             what="Tokyo's powered_off record")
    assert records(db, "snap-outage")[-1] == ("t-tokyo", 1, "powered_off")
    assert everywhere(plane, "snap-outage") == ["t-sydney"]
    plane.api.json("PUT", "/v1/datacenters/t-tokyo/status", {"status": "active"},
                   token=plane.api.token("operator"))


def test_a_vm_starts_at_the_new_site_only_from_a_verified_copy(plane, db):
    """A real move: Sydney's agent pulls the image from Tokyo's, verifies it,
    and the placement flips; only then is the VM powered off at Tokyo and on
    at Sydney, from Sydney's own copy. A site without a copy reports why."""
    for dc in ("t-tokyo", "t-sydney"):
        make_template(plane.stores[dc], "tpl-1")
    db.execute("INSERT INTO template_replicas VALUES ('tpl-1', 't-sydney')")
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
               " VALUES ('snap-carried', 'u-carried', 'tpl-1', 4194304)")
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES ('snap-carried', 't-tokyo', 1, true)")
    make_overlay(plane.stores["t-tokyo"], "tpl-1", "snap-carried", 1, [(0, 1048576, 0x42)])
    plane.agents["t-tokyo"].register("snap-carried", 1)
    set_power(plane, "snap-carried", "on")
    wait_for(lambda: running(plane, "t-tokyo").get("snap-carried") == 1, what="Tokyo to run it")

    db.execute("INSERT INTO transfers (snapshot_id, from_dc, to_dc, template_id,"
               " template_present, reason, idempotency_key, bytes_total)"
               " VALUES ('snap-carried', 't-tokyo', 't-sydney', 'tpl-1', true, 'test',"
               " 'power-carried', 4194304)")
    wait_for(lambda: running(plane, "t-sydney").get("snap-carried") == 2, timeout=60,
             what="Sydney to run it from its copy")
    assert db.execute("SELECT state FROM transfers WHERE idempotency_key = 'power-carried'"
                      ).fetchone()[0] == "succeeded"
    assert (plane.stores["t-sydney"] / "snapshots" / "snap-carried" / "v1.qcow2").exists()
    assert everywhere(plane, "snap-carried") == ["t-sydney"]
    assert records(db, "snap-carried") == [("t-tokyo", 1, "powered_on"),
                                           ("t-tokyo", 1, "powered_off"),
                                           ("t-sydney", 2, "powered_on")]

    # Powered on where no copy was ever made: failed, with the reason, and nothing runs.
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes, power)"
               " VALUES ('snap-nowhere', 'u-nowhere', 'tpl-1', 4096, 'on')")
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES ('snap-nowhere', 't-sydney', 1, true)")
    wait_for(lambda: records(db, "snap-nowhere"), what="Sydney's report")
    [(dc, epoch, state)] = records(db, "snap-nowhere")
    assert (dc, epoch, state) == ("t-sydney", 1, "failed")
    reason = db.execute("SELECT reason FROM power_records WHERE snapshot_id = 'snap-nowhere'"
                        ).fetchone()[0]
    assert reason.startswith("no copy of version 1 here")
    assert everywhere(plane, "snap-nowhere") == []


def test_an_agent_killed_and_started_again_demotes_what_moved_away_meanwhile(plane, db):
    """Paris's platform keeps its VMs when the agent dies (the exec driver's
    state is the platform's). Paris is SIGKILLed, declared down, the
    snapshot fails over to Tokyo; the agent started again finds the VM still
    running and powers it off before anything else."""
    seed(plane, db, "snap-crash", "t-paris")
    set_power(plane, "snap-crash", "on")
    wait_for(lambda: running(plane, "t-paris").get("snap-crash") == 1, what="Paris to run it")
    paris = plane.agents["t-paris"]
    paris.kill()
    operator = plane.api.token("operator")
    plane.api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "down"}, token=operator)
    try:
        assert move(db, "snap-crash", "t-tokyo", "power-crash") == 2
        wait_for(lambda: running(plane, "t-tokyo").get("snap-crash") == 2,
                 what="Tokyo to run it")
        vms = (plane.platform / "vms-t-paris").read_text()
        assert "snap-crash 1 1" in vms  # the dead agent's VM still runs on its platform
        paris.start()
        wait_for(lambda: "snap-crash" not in (plane.platform / "vms-t-paris").read_text(),
                 what="Paris, back, to power its VM off")
        wait_for(lambda: powered_on_at(db, "snap-crash") == ["t-tokyo"],
                 what="Paris's powered_off record")
        assert records(db, "snap-crash") == [("t-paris", 1, "powered_on"),
                                             ("t-tokyo", 2, "powered_on"),
                                             ("t-paris", 1, "powered_off")]
        assert everywhere(plane, "snap-crash") == ["t-tokyo"]
    finally:
        plane.api.json("PUT", "/v1/datacenters/t-paris/status", {"status": "active"},
                       token=operator)
