"""`homing diff` and `homing compose` on a datacenter's store, with real
qcow2 images written by the test (qemu-img, qemu-io) and registered as a
hypervisor would (`homing snapshot register`, against the API):

- the diff of two versions names exactly the configuration items and the
  disk extents the test changed, nothing else;
- a composed version reads, byte for byte, as the base outside the chosen
  extents and as the other version inside them, has the base's
  configuration with exactly the chosen items of the other, and registers
  as the next version with the digest compose printed;
- bad input (an unknown version, an extent outside the disk or not whole
  blocks, a path that is not a JSON Pointer or names nothing, an existing
  version) is refused with a reason and writes nothing;
- through the API: the versions and the diff of their configurations, and a
  composition the agent of the active datacenter writes and registers (or
  reports failed), with its audit events; bad requests are 422 problems
  and write nothing.
"""
import json
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import HOMING_BIN, Homing, seed_catalog, wait_for
from plane import MIB, Agent, make_overlay, make_template, qemu_io, seed
from test_audit_events import check_event

KIB = 1024
SNAP = "snap-d"
CONFIG = {
    1: {"vcpus": 2, "memory_mib": 4096, "meta": {"owner": "ann", "a/b": 1},
        "nics": [{"net": "lan", "mac": "52:54:00:00:00:01"}]},
    2: {"vcpus": 4, "memory_mib": 4096, "meta": {"owner": "ann", "team": "ops"},
        "nics": [{"net": "wan", "mac": "52:54:00:00:00:01"}]},
}
# (offset, length, byte). The template holds 0x5a in 0..8 MiB and 0x33 in 32..36 MiB.
WRITES = {
    1: [(1 * MIB, 64 * KIB, "0x11"), (20 * MIB, 8 * KIB, "0x12"), (40 * MIB, 4 * KIB, "0x13")],
    2: [(1 * MIB, 64 * KIB, "0x11"), (1 * MIB + 16 * KIB, 4 * KIB, "0x21"),
        (20 * MIB, 8 * KIB, "0x12"), (48 * MIB, 128 * KIB, "0x22"),
        (33 * MIB, 4 * KIB, "0x33")],  # the template's own bytes there: no change
}
# v2 also zeroes 2 MiB..+4 KiB (template data there) and drops 40 MiB (back to the template).
CHANGED = [(1 * MIB + 16 * KIB, 4 * KIB), (2 * MIB, 4 * KIB), (40 * MIB, 4 * KIB),
           (48 * MIB, 128 * KIB)]


@pytest.fixture(scope="module")
def site(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diff")
    api = Homing(database, topics, "diff", "serve", tmp)
    api.migrate()
    seed_catalog(db)
    api.start()
    store = tmp / "paris"
    make_template(store, "tpl-1")
    seed(db, "u-diff", SNAP, "t-paris")
    token = api.homing("token", "agent", "--datacenter", "t-paris", "--name", "agent-diff")
    env = dict(api.env, HOMING_STORE=str(store), HOMING_AGENT_TOKEN=token,
               HOMING_API_URL=api.url)
    for v in (1, 2):
        path = make_overlay(store, "tpl-1", SNAP, v, WRITES[v])
        if v == 2:
            qemu_io(str(path), f"write -z {2 * MIB} {4 * KIB}")
        (tmp / f"c{v}.json").write_text(json.dumps(CONFIG[v]))
        register(env, v, tmp / f"c{v}.json")
    yield api, env, store
    api.stop()


def register(env, version, config):
    out = subprocess.run([HOMING_BIN, "snapshot", "register", "--snapshot", SNAP, "--version",
                          str(version), "--config", str(config)], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.split()[2]  # the digest


def homing(env, *args):
    return subprocess.run([HOMING_BIN, *args], env=env, capture_output=True, text=True,
                          timeout=120)


def raw(path):
    """The guest-visible bytes of an image (through its backing chain)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "disk.raw"
        subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(path), str(out)],
                       check=True, capture_output=True, timeout=60)
        return out.read_bytes()


def files(store):
    return sorted(p.name for p in (store / "snapshots" / SNAP).iterdir())


def test_the_diff_names_exactly_what_changed(site):
    _, env, _ = site
    out = homing(env, "diff", SNAP, "1", "2")
    assert out.returncode == 0, out.stderr
    d = json.loads(out.stdout)
    assert (d["snapshot_id"], d["from"], d["to"]) == (SNAP, 1, 2)
    assert d["config"]["changes"] == [
        {"path": "/meta/a~1b", "change": "removed", "old": 1},
        {"path": "/meta/team", "change": "added", "new": "ops"},
        {"path": "/nics/0/net", "change": "changed", "old": "lan", "new": "wan"},
        {"path": "/vcpus", "change": "changed", "old": 2, "new": 4},
    ]
    assert d["config"]["patch"] == [
        {"op": "remove", "path": "/meta/a~1b"},
        {"op": "add", "path": "/meta/team", "value": "ops"},
        {"op": "replace", "path": "/nics/0/net", "value": "wan"},
        {"op": "replace", "path": "/vcpus", "value": 4},
    ]
    disk = d["disk"]
    assert [(x["offset"], x["length"]) for x in disk["extents"]] == CHANGED
    assert disk["changed_bytes"] == sum(n for _, n in CHANGED)
    assert disk["virtual_size"] == 64 * MIB
    # The same two versions the other way round: the same extents, the inverse changes.
    back = json.loads(homing(env, "diff", SNAP, "2", "1").stdout)
    assert back["disk"]["extents"] == disk["extents"]
    assert {c["path"] for c in back["config"]["changes"]} == {
        c["path"] for c in d["config"]["changes"]}
    # A version against itself: nothing.
    same = json.loads(homing(env, "diff", SNAP, "2", "2").stdout)
    assert same["config"]["changes"] == [] and same["disk"]["extents"] == []


def test_a_composed_version_is_the_base_with_exactly_the_chosen_items(site):
    _, env, store = site
    chosen = [(48 * MIB, 128 * KIB), (1 * MIB + 16 * KIB, 4 * KIB)]
    args = ["compose", SNAP, "--base", "1", "--from", "2", "--config", "/vcpus",
            "--config", "/meta/team"]
    for off, n in chosen:
        args += ["--disk-extent", f"{off}:{n}"]
    out = homing(env, *args)
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    assert made["version"] == 3 and made["base"] == 1 and made["from"] == 2
    assert files(store) == [f"v{v}.{x}" for v in (1, 2, 3) for x in ("json", "manifest", "qcow2")]

    d = store / "snapshots" / SNAP
    v1, v2, v3 = raw(d / "v1.qcow2"), raw(d / "v2.qcow2"), raw(d / "v3.qcow2")
    assert len(v3) == 64 * MIB
    want = bytearray(v1)
    for off, n in chosen:
        want[off:off + n] = v2[off:off + n]
    assert v3 == bytes(want)
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(d / "v3.qcow2")],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["backing-filename"] == "../../templates/tpl-1.qcow2"

    config = json.loads((d / "v3.json").read_text())
    assert config == dict(CONFIG[1], vcpus=4, meta={"owner": "ann", "a/b": 1, "team": "ops"})
    assert made["config"] == config

    # What differs from either source is exactly what came from the other one.
    from_base = json.loads(homing(env, "diff", SNAP, "1", "3").stdout)
    assert [(x["offset"], x["length"]) for x in from_base["disk"]["extents"]] == sorted(chosen)
    assert [c["path"] for c in from_base["config"]["changes"]] == ["/meta/team", "/vcpus"]
    from_other = json.loads(homing(env, "diff", SNAP, "2", "3").stdout)
    assert [(x["offset"], x["length"]) for x in from_other["disk"]["extents"]] == [
        x for x in CHANGED if x not in chosen]

    # Ready for registration: the API takes it as the next version, with the same digest.
    assert register(env, 3, d / "v3.json") == made["content_sha256"]


def test_the_whole_disk_of_another_version_has_its_digest(site):
    api, env, store = site
    out = homing(env, "compose", SNAP, "--base", "1", "--from", "2", "--whole-disk")
    assert out.returncode == 0, out.stderr
    made = json.loads(out.stdout)
    d = store / "snapshots" / SNAP
    assert made["version"] == 4
    assert raw(d / "v4.qcow2") == raw(d / "v2.qcow2")
    assert json.loads((d / "v4.json").read_text()) == CONFIG[1]
    # The same top layer as v2's: the same content digest.
    v2 = json.loads(homing(env, "diff", SNAP, "2", "4").stdout)
    assert v2["disk"]["extents"] == []
    digest2 = subprocess.run(["sha256sum", str(d / "v2.manifest")], check=True,
                             capture_output=True, text=True).stdout.split()[0]
    assert made["content_sha256"] == digest2
    assert register(env, 4, d / "v4.json") == digest2


@pytest.mark.parametrize("args,reason", [
    (["--base", "1", "--from", "9", "--config", "/vcpus"], "has no version 9"),
    (["--base", "9", "--from", "1", "--config", "/vcpus"], "has no version 9"),
    (["--base", "1", "--from", "2", "--disk-extent", f"{64 * MIB}:4096"], "outside the disk"),
    (["--base", "1", "--from", "2", "--disk-extent", f"{64 * MIB - 4096}:8192"],
     "outside the disk"),
    (["--base", "1", "--from", "2", "--disk-extent", "4097:4096"], "whole blocks"),
    (["--base", "1", "--from", "2", "--disk-extent", "0:0"], "whole blocks"),
    (["--base", "1", "--from", "2", "--disk-extent", "4k:4k"], "OFFSET:LENGTH"),
    (["--base", "1", "--from", "2", "--config", "vcpus"], "is not a JSON Pointer"),
    (["--base", "1", "--from", "2", "--config", "/a~2"], "is not a JSON Pointer"),
    (["--base", "1", "--from", "2", "--config", "/vcpus", "--config", "/nope"],
     "names an item of neither version"),
    (["--base", "1", "--from", "2", "--config", "/vcpus", "--version", "2"], "exists"),
    (["--base", "1", "--from", "2"], "nothing chosen"),
    (["--base", "0", "--from", "2", "--whole-disk"], "positive integers"),
])
def test_bad_input_is_refused_and_writes_nothing(site, args, reason):
    _, env, store = site
    before = files(store)
    out = homing(env, "compose", SNAP, *args)
    assert out.returncode != 0
    assert reason in out.stderr
    assert out.stdout == ""
    assert files(store) == before


@pytest.mark.parametrize("args,reason", [
    ([SNAP, "1", "9"], "has no version 9"),
    (["no-such-snapshot", "1", "2"], "has no version 1"),
    (["../snapshots", "1", "2"], "is not a snapshot id"),
    ([SNAP, "1", "x"], "positive integers"),
])
def test_a_diff_of_what_is_not_there_is_refused(site, args, reason):
    _, env, _ = site
    out = homing(env, "diff", *args)
    assert out.returncode != 0 and reason in out.stderr and out.stdout == ""


# ---- the API: the configurations are in PostgreSQL --------------------------------------

def test_the_api_lists_the_versions_and_diffs_them_through_the_agent(site, tmp_path):
    api, env, store = site
    page, _ = api.json("GET", f"/v1/snapshots/{SNAP}/versions")
    versions = [v["version"] for v in page["items"]]
    assert versions[:2] == [1, 2] and versions == sorted(versions)
    assert all(len(v["content_sha256"]) == 64 and v["datacenter_id"] == "t-paris"
               for v in page["items"])

    d, _ = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=1&to=2")
    cli = json.loads(homing(env, "diff", SNAP, "1", "2").stdout)
    assert (d["snapshot_id"], d["from"], d["to"]) == (SNAP, 1, 2)
    assert d["config"] == cli["config"]  # the same items, old and new values, and patch
    assert [v["version"] for v in d["versions"]] == [1, 2]
    assert d["versions"][:2] == page["items"][:2]
    # The disks' diff needs both images: the first GET queues it for the agent at Paris.
    assert d["disk"]["state"] == "queued" and d["disk"]["datacenter_id"] == "t-paris"
    same, _ = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=2&to=2")
    assert same["config"] == {"changes": [], "patch": []}
    agent = Agent(api, "t-paris", store, tmp_path).start()
    try:
        disk = wait_for(lambda: (lambda x: x["state"] in ("succeeded", "failed") and x)(
            api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=1&to=2")[0]["disk"]), timeout=60,
            what="the disk diff")
        assert disk["state"] == "succeeded", disk
        assert disk["extents"] == cli["disk"]["extents"]
        assert [(x["offset"], x["length"]) for x in disk["extents"]] == CHANGED
        assert disk["changed_bytes"] == cli["disk"]["changed_bytes"]
        none = wait_for(lambda: (lambda x: x["state"] == "succeeded" and x)(
            api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=2&to=2")[0]["disk"]), timeout=60,
            what="the disk diff of a version with itself")
        assert none["extents"] == [] and none["changed_bytes"] == 0
    finally:
        agent.stop()


def test_the_api_refuses_a_diff_of_what_is_not_there(site, db):
    api, _, _ = site
    # A version another snapshot has, this one not.
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
               " VALUES ('snap-other', 'u-other', 'tpl-1', 0) ON CONFLICT DO NOTHING")
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size) VALUES ('snap-other', 7, repeat('a', 64), 0, 0)"
               " ON CONFLICT DO NOTHING")
    for query, status, detail in [
        ("from=1&to=7", 404, "no version 7 of snapshot 'snap-d'"),
        ("from=9&to=1", 404, "no version 9 of snapshot 'snap-d'"),
        ("from=1", 400, "version numbers"),
        ("from=0&to=1", 400, "version numbers"),
        ("from=1&to=x", 400, "version numbers"),
        ("from=1&to=-2", 400, "version numbers"),
    ]:
        status_got, headers, raw = api.get(f"/v1/snapshots/{SNAP}/diff?{query}")
        assert status_got == status, (query, raw)
        assert headers["Content-Type"] == "application/problem+json"
        assert detail in json.loads(raw)["detail"], (query, raw)
    assert api.get("/v1/snapshots/no-such/diff?from=1&to=2")[0] == 404
    assert api.get("/v1/snapshots/no-such/versions")[0] == 404
    assert api.get(f"/v1/snapshots/{SNAP}/diff?from=1&to=2", token=None)[0] == 401


def outbox(db, types):
    return [row[0] for row in db.execute(
        "SELECT payload FROM outbox WHERE payload->>'type' = ANY(%s) ORDER BY id",
        (list(types),)).fetchall()]


COMPOSE_EVENTS = ("io.homing.snapshot.composition_requested",
                  "io.homing.snapshot.version_composed", "io.homing.snapshot.composition_failed")


def test_the_agent_writes_a_composition_the_api_queued(site, db, tmp_path):
    api, env, store = site
    agent = Agent(api, "t-paris", store, tmp_path).start()
    try:
        extent = {"offset": 48 * MIB, "length": 128 * KIB}
        c, headers = api.json("POST", f"/v1/snapshots/{SNAP}/versions",
                              {"base": 1, "from": 2, "config": ["/vcpus"],
                               "disk_extents": [extent]},
                              expect=202, token=api.token("operator"))
        assert c["state"] == "queued" and c["datacenter_id"] == "t-paris"
        assert (c["base"], c["from"], c["config"], c["disk_extents"]) == (1, 2, ["/vcpus"],
                                                                            [extent])
        done = wait_for(lambda: (lambda x: x["state"] in ("succeeded", "failed") and x)(
            api.json("GET", f"/v1/compositions/{c['id']}")[0]), timeout=60,
            what="the composition to end")
        assert done["state"] == "succeeded", done
        assert done["version"] == 5 and done["error"] is None
    finally:
        agent.stop()
    d = store / "snapshots" / SNAP
    want = bytearray(raw(d / "v1.qcow2"))
    want[48 * MIB:48 * MIB + 128 * KIB] = raw(d / "v2.qcow2")[48 * MIB:48 * MIB + 128 * KIB]
    assert raw(d / "v5.qcow2") == bytes(want)
    row = db.execute("SELECT config, datacenter_id FROM snapshot_versions"
                     " WHERE snapshot_id = %s AND version = 5", (SNAP,)).fetchone()
    assert row == (dict(CONFIG[1], vcpus=4), "t-paris")
    assert db.execute("SELECT version FROM placements WHERE snapshot_id = %s AND active",
                      (SNAP,)).fetchone()[0] == 5
    events = outbox(db, COMPOSE_EVENTS)
    assert [e["type"] for e in events] == list(COMPOSE_EVENTS[:2])
    for e in events:
        check_event(e)
        assert e["subject"] == SNAP and e["data"]["composition"]["id"] == c["id"]
    assert events[1]["data"]["composition"]["version"] == 5


def test_a_composition_the_agent_cannot_write_is_reported_failed(site, db, tmp_path):
    api, _, store = site
    # Registered in PostgreSQL, never written to this store.
    seed(db, "u-ghost", "snap-ghost", "t-paris")
    for v in (1, 2):
        db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256,"
                   " size_bytes, virtual_size, config, datacenter_id)"
                   " VALUES ('snap-ghost', %s, repeat('b', 64), 0, %s, '{\"a\": 1}', 't-paris')",
                   (v, 64 * MIB))
    agent = Agent(api, "t-paris", store, tmp_path).start()
    try:
        c, _ = api.json("POST", "/v1/snapshots/snap-ghost/versions",
                        {"base": 1, "from": 2, "whole_disk": True}, expect=202,
                        token=api.token("operator"))
        done = wait_for(lambda: (lambda x: x["state"] in ("succeeded", "failed") and x)(
            api.json("GET", f"/v1/compositions/{c['id']}")[0]), timeout=60,
            what="the composition to end")
        disk = wait_for(lambda: (lambda x: x["state"] in ("succeeded", "failed") and x)(
            api.json("GET", "/v1/snapshots/snap-ghost/diff?from=1&to=2")[0]["disk"]),
            timeout=60, what="the disk diff to end")
    finally:
        agent.stop()
    assert disk["state"] == "failed" and "has no version 1" in disk["error"]
    assert "extents" not in disk
    assert done["state"] == "failed" and "has no version 1" in done["error"]
    assert not (store / "snapshots" / "snap-ghost").exists() or \
        not list((store / "snapshots" / "snap-ghost").iterdir())
    failed = [e for e in outbox(db, COMPOSE_EVENTS) if e["subject"] == "snap-ghost"]
    assert [e["type"] for e in failed] == [COMPOSE_EVENTS[0], COMPOSE_EVENTS[2]]
    for e in failed:
        check_event(e)


@pytest.mark.parametrize("body,pointer,detail", [
    ({"base": 1, "from": 9, "config": ["/vcpus"]}, "/from", "not a registered version"),
    ({"base": 7, "from": 1, "config": ["/vcpus"]}, "/base", "not a registered version"),
    ({"base": 1, "from": 2, "config": ["vcpus"]}, "/config/0", "not a JSON Pointer"),
    ({"base": 1, "from": 2, "config": ["/vcpus", "/a~2"]}, "/config/1", "not a JSON Pointer"),
    ({"base": 1, "from": 2, "config": ["/nope"]}, "/config/0", "neither version"),
    ({"base": 1, "from": 2, "config": [3]}, "/config/0", "must be a string"),
    ({"base": 1, "from": 2, "disk_extents": [{"offset": 4097, "length": 4096}]},
     "/disk_extents/0", "whole blocks"),
    ({"base": 1, "from": 2, "disk_extents": [{"offset": 0, "length": 0}]},
     "/disk_extents/0", "whole blocks"),
    ({"base": 1, "from": 2, "disk_extents": [{"offset": 64 * MIB, "length": 4096}]},
     "/disk_extents/0", "outside the disk"),
    ({"base": 1, "from": 2, "disk_extents": [{"offset": 0}]}, "/disk_extents/0", "two whole"),
    ({"base": 1, "from": 2}, "/config", "choose at least one item"),
    ({"base": 0, "from": 2, "whole_disk": True}, "/base", "within"),
    ({"base": 1, "from": 2, "whole_disk": True, "extra": 1}, "/extra", ""),
])
def test_a_bad_composition_is_a_422_and_writes_nothing(site, db, body, pointer, detail):
    api, _, _ = site
    # Version 7 of another snapshot (test_the_api_refuses_a_diff_of_what_is_not_there).
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
               " VALUES ('snap-other', 'u-other', 'tpl-1', 0) ON CONFLICT DO NOTHING")
    db.execute("INSERT INTO snapshot_versions (snapshot_id, version, content_sha256, size_bytes,"
               " virtual_size) VALUES ('snap-other', 7, repeat('a', 64), 0, 0)"
               " ON CONFLICT DO NOTHING")
    before = db.execute("SELECT (SELECT count(*) FROM compositions),"
                        " (SELECT count(*) FROM outbox)").fetchone()
    status, headers, raw_body = api.post(f"/v1/snapshots/{SNAP}/versions", body,
                                         token=api.token("operator"))
    problem = json.loads(raw_body)
    assert status == 422, problem
    assert headers["Content-Type"] == "application/problem+json"
    assert problem["errors"][0]["pointer"] == pointer
    assert detail in problem["errors"][0]["detail"]
    assert db.execute("SELECT (SELECT count(*) FROM compositions),"
                      " (SELECT count(*) FROM outbox)").fetchone() == before


def test_only_operators_compose_and_unknown_ones_are_404(site):
    api, _, _ = site
    body = {"base": 1, "from": 2, "whole_disk": True}
    assert api.post(f"/v1/snapshots/{SNAP}/versions", body)[0] == 403  # a viewer
    assert api.post("/v1/snapshots/no-such/versions", body,
                    token=api.token("operator"))[0] == 404
    assert api.get("/v1/compositions/999999")[0] == 404
    assert api.get("/v1/compositions/x")[0] == 404
