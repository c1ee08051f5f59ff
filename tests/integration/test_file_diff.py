"""Guest files in a diff (libguestfs), on a small ext4 image the test makes
(mkfs.ext4 -d for the template, then one guestfish appliance that changes
two overlays of it):

- `homing diff --files` names exactly the files changed, added and removed,
  with a unified diff of a small text file;
- through the API, `?files=true` queues a file diff at the agent of the
  snapshot's active datacenter, which starts it within a few seconds (its
  eviction period is a minute: jobs have their own poll), says its phase
  and percent as it goes, and posts the same files as the CLI;
- an agent where libguestfs cannot run reports so, the API answers the file
  diff as a 501 problem naming libguestfs, and the configuration and disk
  diffs still work;
- `homing compose --file` takes guest files from another version into a
  new one (copied back, a changed file and a removed one read as they did
  there, and nothing else changes); a path that is not one, or names a file
  of neither version, is refused and writes nothing; a composition asked of
  the API with `files` is written by the agent the same way.

Each appliance launch takes tens of seconds without KVM: eight in all.
"""
import json
import subprocess
import time

import pytest

from conftest import HOMING_BIN, Homing, seed_catalog, wait_for
from plane import Agent, seed

SNAP = "snap-files"

GUESTFISH = """run
mkmountpoint /a
mkmountpoint /b
mount /dev/sda /a
mount /dev/sdb /b
write /b/etc/hostname "beta\\n"
write /b/etc/new.conf "x = 1\\n"
rm /b/gone.txt
chmod 0755 /b/keep.txt
"""


def run(*args, **kw):
    out = subprocess.run(args, capture_output=True, text=True, timeout=600, **kw)
    assert out.returncode == 0, (args, out.stderr)
    return out


@pytest.fixture(scope="module")
def site(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("files")
    api = Homing(database, topics, "files", "serve", tmp)
    api.migrate()
    seed_catalog(db)
    api.start()
    store = tmp / "paris"
    src = tmp / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc" / "hostname").write_text("alpha\n")
    (src / "etc" / "motd").write_text("hello\n")
    (src / "gone.txt").write_text("bye\n")
    (src / "keep.txt").write_text("same\n")
    (src / "keep.txt").chmod(0o644)
    (store / "templates").mkdir(parents=True)
    (store / "snapshots" / SNAP).mkdir(parents=True)
    run("mkfs.ext4", "-q", "-F", "-d", str(src), str(tmp / "tpl.raw"), "16M")
    run("qemu-img", "convert", "-O", "qcow2", str(tmp / "tpl.raw"),
        str(store / "templates" / "tpl-1.qcow2"))
    images = [store / "snapshots" / SNAP / f"v{v}.qcow2" for v in (1, 2)]
    for image in images:
        run("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
            "../../templates/tpl-1.qcow2", str(image))
    run("guestfish", "--rw", "--format=qcow2", "-a", str(images[0]), "-a", str(images[1]),
        input=GUESTFISH)
    seed(db, "u-files", SNAP, "t-paris")
    token = api.homing("token", "agent", "--datacenter", "t-paris", "--name", "agent-files")
    env = dict(api.env, HOMING_STORE=str(store), HOMING_AGENT_TOKEN=token,
               HOMING_API_URL=api.url)
    for v in (1, 2):
        (tmp / f"c{v}.json").write_text(json.dumps({"vcpus": v}))
        run(HOMING_BIN, "snapshot", "register", "--snapshot", SNAP, "--version", str(v),
            "--config", str(tmp / f"c{v}.json"), env=env)
    yield api, env, store
    api.stop()


def by_path(files):
    return {f["path"]: f for f in files["files"]}


def check_files(files):
    assert files["filesystems"] == ["/dev/sda"]
    assert (files["added"], files["removed"], files["changed"]) == (1, 1, 2)
    got = by_path(files)
    assert sorted(got) == ["/etc/hostname", "/etc/new.conf", "/gone.txt", "/keep.txt"]
    host = got["/etc/hostname"]
    assert host["change"] == "changed" and host["content_changed"] is True
    assert (host["old_size"], host["new_size"]) == (6, 5)
    assert host["diff"].startswith("--- a/etc/hostname\n+++ b/etc/hostname\n")
    assert "\n-alpha\n+beta\n" in host["diff"]
    assert got["/etc/new.conf"]["change"] == "added" and got["/etc/new.conf"]["new_size"] == 6
    assert got["/gone.txt"]["change"] == "removed" and "-bye\n" in got["/gone.txt"]["diff"]
    keep = got["/keep.txt"]
    assert keep["content_changed"] is False and "diff" not in keep
    assert (keep["old_mode"], keep["new_mode"]) == ("0644", "0755")


def test_homing_diff_files_names_exactly_the_files_that_changed(site):
    _, env, _ = site
    out = run(HOMING_BIN, "diff", "--files", SNAP, "1", "2", env=env)
    doc = json.loads(out.stdout)
    assert doc["config"]["changes"] == [{"path": "/vcpus", "change": "changed", "old": 1,
                                         "new": 2}]
    check_files(doc["files"])
    # Without --files, no appliance and no files member.
    assert "files" not in json.loads(run(HOMING_BIN, "diff", SNAP, "1", "2", env=env).stdout)


def test_the_agent_runs_a_file_diff_promptly_and_says_how_far_it_is(site, tmp_path):
    api, _, store = site
    assert "files" not in api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=1&to=2")[0]
    # Evictions every minute; jobs are claimed on their own poll (200 ms here). The agent
    # has made its first passes before the job is asked for.
    agent = Agent(api, "t-paris", store, tmp_path, extra={"HOMING_AGENT_EVICT_S": "60"})
    agent.start()
    try:
        time.sleep(3)
        asked = time.monotonic()
        d, _ = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=1&to=2&files=true")
        files = d["files"]
        assert files["state"] in ("queued", "running") and files["datacenter_id"] == "t-paris"
        assert files["href"] == f"/v1/file-diffs/{files['id']}"
        # Asked again: the same job, not a second one.
        again, _ = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=1&to=2&files=true")
        assert again["files"]["id"] == files["id"]
        phases = []

        def progressed():
            job, _ = api.json("GET", files["href"])
            if job["phase"] and (not phases or phases[-1] != (job["phase"], job["progress"])):
                phases.append((job["phase"], job["progress"]))
            return job["state"] in ("succeeded", "failed") and job

        wait_for(lambda: api.json("GET", files["href"])[0]["state"] != "queued", timeout=10,
                 interval=0.1, what="the file diff to be claimed")
        claimed_after = time.monotonic() - asked
        assert claimed_after < 3, claimed_after
        job = wait_for(progressed, timeout=400, interval=0.5, what="the file diff")
        assert job["state"] == "succeeded", job
        assert job["progress"] == 100 and job["phase"] == "done"
        assert len(phases) >= 2, phases  # seen while it ran, not only its end
        assert [pct for _, pct in phases] == sorted(pct for _, pct in phases), phases
        assert (job["snapshot_id"], job["from"], job["to"]) == (SNAP, 1, 2)
        check_files(job["result"])
        summary = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=1&to=2&files=true")[0]
        assert summary["files"]["state"] == "succeeded" and summary["files"]["id"] == files["id"]
    finally:
        agent.stop()


def test_where_libguestfs_cannot_run_the_api_says_so_and_the_other_diffs_work(site, tmp_path):
    api, _, store = site
    bad, _ = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=1&to=2&files=maybe", expect=400)
    assert "files is true or false" in bad["detail"]
    d, _ = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=2&to=1&files=true")
    href = d["files"]["href"]
    # No appliance where this agent looks for one: libguestfs cannot start.
    agent = Agent(api, "t-paris", store, tmp_path,
                  extra={"HOMING_AGENT_EVICT_S": "60", "LIBGUESTFS_PATH": str(tmp_path / "none")})
    started = time.monotonic()
    agent.start()
    try:
        code, headers, raw = wait_for(lambda: (lambda r: r[0] != 200 and r)(api.get(href)),
                                      timeout=120, what="the file diff to fail")
        assert code == 501, raw
        assert {k.lower(): v for k, v in headers.items()}["content-type"].startswith(
            "application/problem+json")
        body = json.loads(raw)
        assert body["type"].endswith("guest-files-unavailable"), body
        assert body["missing"] == "libguestfs"
        assert "libguestfs" in body["detail"] and "t-paris" in body["detail"]
        assert body["file_diff"]["state"] == "failed" and body["file_diff"]["unavailable"]
        # The disk diff of the same pair, queued by the same GET, still works, promptly.
        disk = wait_for(lambda: (lambda x: x["state"] in ("succeeded", "failed") and x)(
            api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=2&to=1")[0]["disk"]), timeout=30,
            what="the disk diff")
        assert disk["state"] == "succeeded" and disk["changed_bytes"] > 0
        assert time.monotonic() - started < 30
        again = api.json("GET", f"/v1/snapshots/{SNAP}/diff?from=2&to=1")[0]
        assert again["config"]["changes"][0]["path"] == "/vcpus"
    finally:
        agent.stop()


def test_homing_compose_takes_guest_files_from_another_version(site):
    _, env, store = site
    snap = store / "snapshots" / SNAP
    # Version 2 with hostname and gone.txt as version 1 has them: what differs from 1 is then
    # only what version 2 changed besides (new.conf added, keep.txt's mode).
    out = run(HOMING_BIN, "compose", SNAP, "--base", "2", "--from", "1", "--version", "3",
              "--file", "/etc/hostname", "--file", "/dev/sda:/gone.txt", env=env)
    made = json.loads(out.stdout)
    assert made["version"] == 3 and made["files"] == ["/etc/hostname", "/dev/sda:/gone.txt"]
    assert len(made["content_sha256"]) == 64
    assert sorted(p.name for p in snap.glob("v3.*")) == ["v3.json", "v3.manifest", "v3.qcow2"]
    doc = json.loads(run(HOMING_BIN, "diff", "--files", SNAP, "1", "3", env=env).stdout)
    files = doc["files"]
    assert (files["added"], files["removed"], files["changed"]) == (1, 0, 1)
    assert sorted(by_path(files)) == ["/etc/new.conf", "/keep.txt"]
    assert by_path(files)["/keep.txt"]["content_changed"] is False
    # Registered like any version (the API's compositions come next).
    run(HOMING_BIN, "snapshot", "register", "--snapshot", SNAP, "--version", "3", "--config",
        str(snap / "v3.json"), env=env)


@pytest.mark.parametrize("item, reason", [
    ("etc/hostname", "is not [/dev/sdaN:]/absolute/path"),
    ("/etc/../hostname", "is not [/dev/sdaN:]/absolute/path"),
    ("/nope.txt", "is in neither version"),
])
def test_a_guest_file_compose_cannot_take_is_refused_and_writes_nothing(site, item, reason):
    _, env, store = site
    snap = store / "snapshots" / SNAP
    before = sorted(p.name for p in snap.iterdir())
    out = subprocess.run([HOMING_BIN, "compose", SNAP, "--base", "2", "--from", "1", "--file",
                          item], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 1 and reason in out.stderr, out.stderr
    assert sorted(p.name for p in snap.iterdir()) == before


def test_a_composition_through_the_api_takes_guest_files(site, db, tmp_path):
    api, env, store = site
    op = api.token("operator")
    bad, _ = api.json("POST", f"/v1/snapshots/{SNAP}/versions",
                      {"base": 2, "from": 1, "files": ["etc/hostname"]}, expect=422, token=op)
    assert bad["errors"][0]["pointer"] == "/files/0"
    assert db.execute("SELECT count(*) FROM compositions").fetchone()[0] == 0
    c, _ = api.json("POST", f"/v1/snapshots/{SNAP}/versions",
                    {"base": 2, "from": 1, "files": ["/etc/hostname"]}, expect=202, token=op)
    assert c["files"] == ["/etc/hostname"] and c["state"] == "queued"
    agent = Agent(api, "t-paris", store, tmp_path, extra={"HOMING_AGENT_EVICT_S": "60"})
    agent.start()
    try:
        done = wait_for(lambda: (lambda x: x["state"] in ("succeeded", "failed") and x)(
            api.json("GET", f"/v1/compositions/{c['id']}")[0]), timeout=400, interval=0.5,
            what="the composition")
    finally:
        agent.stop()
    assert done["state"] == "succeeded", done
    v = done["version"]
    assert v == 4
    # Version 2 with version 1's hostname: from 2, only that file differs.
    doc = json.loads(run(HOMING_BIN, "diff", "--files", SNAP, "2", str(v), env=env).stdout)
    files = doc["files"]
    assert [(f["path"], f["change"]) for f in files["files"]] == [("/etc/hostname", "changed")]
    assert "\n-beta\n+alpha\n" in files["files"][0]["diff"]
