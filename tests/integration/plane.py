"""What the data-plane tests share: qcow2 images made with qemu-img and
qemu-io, `homing agent` processes (one per datacenter, each with its store),
and the rows they are judged by."""
import json
import re
import signal
import subprocess
import time
import urllib.request

from conftest import HOMING_BIN, free_port, report, wait_for

MIB = 1024 * 1024
CHUNK = MIB


def qemu_img(*args):
    subprocess.run(["qemu-img", *args], check=True, capture_output=True, timeout=60)


def qemu_io(path, *commands):
    argv = ["qemu-io", "-f", "qcow2"]
    for c in commands:
        argv += ["-c", c]
    subprocess.run(argv + [path], check=True, capture_output=True, timeout=120)


def make_template(store, template, size_mib=64):
    path = store / "templates" / f"{template}.qcow2"
    path.parent.mkdir(parents=True, exist_ok=True)
    qemu_img("create", "-q", "-f", "qcow2", "-o", "cluster_size=64k,extended_l2=on", str(path),
             f"{size_mib}M")
    qemu_io(str(path), "write -P 0x5a 0 8M", f"write -P 0x33 {32 * MIB} 4M")
    return path


def make_overlay(store, template, snapshot, version, writes):
    """v<version>.qcow2 of `snapshot` on `template`, with qemu-io writes (offset, length, byte)."""
    d = store / "snapshots" / snapshot
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"v{version}.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-F", "qcow2", "-b",
             f"../../templates/{template}.qcow2", "-o", "cluster_size=64k,extended_l2=on",
             str(path))
    qemu_io(str(path), *[f"write -P {b} {o} {n}" for o, n, b in writes])
    return path


class Agent:
    """`homing agent` in its own process, for one datacenter (its store is
    `store`) or several ("a,b": stores under `store`/<id>, tokens in a file)."""

    def __init__(self, api, dc, store, tmp_path, extra=None, port=0):
        self.dc, self.store = dc, store
        self.n = len(dc.split(","))
        self.log_path = tmp_path / f"agent-{dc.replace(',', '+')}-{id(self):x}.log"
        tokens = {d: api.homing("token", "agent", "--datacenter", d, "--name", f"agent-{d}")
                  for d in dc.split(",")}
        self.env = dict(api.env)
        self.env.update({"HOMING_API_URL": api.url, "HOMING_DATACENTER": dc,
                         "HOMING_STORE": str(store),
                         "HOMING_AGENT_LISTEN": f"127.0.0.1:{port}", "HOMING_AGENT_POLL_MS": "200",
                         "HOMING_AGENT_LEASE_S": "5", "HOMING_AGENT_EVICT_S": "1"})
        if self.n == 1:
            self.env["HOMING_AGENT_TOKEN"] = tokens[dc]
        else:
            token_file = tmp_path / f"tokens-{id(self):x}"
            token_file.write_text("".join(f"{d} {t}\n" for d, t in tokens.items()))
            self.env["HOMING_AGENT_TOKEN_FILE"] = str(token_file)
        self.tokens = tokens
        self.env.update(extra or {})
        self.proc = None

    def start(self):
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([HOMING_BIN, "agent"], env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_for(lambda: f"serving {self.n} datacenters" in self.log_path.read_text(), timeout=30,
                 what=f"agent {self.dc} to start")
        return self

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
        self.log.close()
        assert self.proc.returncode == 0, self.log_path.read_text()[-3000:]

    def register(self, snapshot, version, dc=None):
        env = dict(self.env)
        if dc:  # one of several: its store and its token
            env.update({"HOMING_STORE": str(self.store / dc), "HOMING_AGENT_TOKEN": self.tokens[dc]})
        out = subprocess.run([HOMING_BIN, "snapshot", "register", "--snapshot", snapshot,
                              "--version", str(version)], env=env, check=True,
                             capture_output=True, text=True, timeout=120).stdout.split()
        return out[2], int(out[3])  # digest, bytes


def agent_vms(port):
    """What an agent's driver runs, {snapshot or VM name: epoch}, from its
    homing_agent_vm metric on its metrics `port`."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): int(m.group(2)) for m in re.finditer(
        r'homing_agent_vm\{datacenter="[^"]+",snapshot="([^"]+)",version="\d+",'
        r'epoch="(\d+)"\} 1', text)}


POWER_DCS = ("t-paris", "t-tokyo", "t-sydney")


class PowerPlane:
    """The API and an agent at each of POWER_DCS that powers VMs on and off:
    Paris through an operator's command (the exec driver running
    `platform`/run), Tokyo and Sydney through libvirt's test driver
    (test:///default: its domains live inside the agent's process). Each
    agent serves its metrics on a port of its own (`metrics`)."""

    def __init__(self, api, tmp, platform_script):
        self.api, self.agents, self.metrics, self.stores = api, {}, {}, {}
        self.platform = tmp / "platform"
        self.platform.mkdir()
        (self.platform / "run").write_text(platform_script)
        (self.platform / "run").chmod(0o755)
        for dc in POWER_DCS:
            self.stores[dc] = tmp / f"store-{dc}"
            self.stores[dc].mkdir()
            self.metrics[dc] = free_port()
            driver = {"HOMING_DRIVER": "exec",
                      "HOMING_DRIVER_COMMAND": str(self.platform / "run")} if dc == "t-paris" \
                else {"HOMING_DRIVER": "libvirt", "HOMING_LIBVIRT_URI": "test:///default"}
            self.agents[dc] = Agent(api, dc, self.stores[dc], tmp, extra={
                **driver, "HOMING_AGENT_RECONCILE_MS": "200",
                "HOMING_METRICS_LISTEN": f"127.0.0.1:{self.metrics[dc]}"}).start()

    def stop_agents(self):
        """Stops every agent still running, a frozen one (SIGSTOP) thawed first."""
        for agent in self.agents.values():
            if agent.proc and agent.proc.poll() is None:
                agent.proc.send_signal(signal.SIGCONT)
                agent.stop()


def powered_on_at(db, snap):
    """Where the power records say the snapshot's VM runs: each site's last record."""
    return sorted(r[0] for r in db.execute(
        "SELECT datacenter_id FROM (SELECT DISTINCT ON (datacenter_id) datacenter_id, state"
        " FROM power_records WHERE snapshot_id = %s ORDER BY datacenter_id, id DESC) l"
        " WHERE state = 'powered_on'", (snap,)))


ENV = {"HOMING_DWELL_S": "0", "HOMING_DWELL_REPORTS": "1", "HOMING_COOLDOWN_S": "0",
       "HOMING_CATALOG_REFRESH_S": "1", "HOMING_KM_PER_GIB": "0"}


def transfer_rows(db, snapshot):
    return db.execute("SELECT id, from_dc, to_dc, state, bytes_sent, bytes_done, error"
                      " FROM transfers WHERE snapshot_id = %s ORDER BY id", (snapshot,)).fetchall()


def active(db, snapshot):
    return db.execute("SELECT datacenter_id, version, content_sha256 FROM placements"
                      " WHERE snapshot_id = %s AND active", (snapshot,)).fetchall()


def seed(db, user, snapshot, dc):
    db.execute("INSERT INTO snapshots (id, user_id, template_id, size_bytes)"
               " VALUES (%s, %s, 'tpl-1', 4194304)", (snapshot, user))
    db.execute("INSERT INTO placements (snapshot_id, datacenter_id, version, active)"
               " VALUES (%s, %s, 1, true)", (snapshot, dc))


def go_to(api, user, lat, lon, n=[0]):
    n[0] += 1
    status, _, body = api.post("/v1/locations", report(user=user, device=f"d-{user}-{n[0]}",
                                                      lat=lat, lon=lon))
    assert status == 202, (status, body)


def wait_transfer(db, snapshot, count, states=("succeeded",), timeout=90):
    def done():
        rows = transfer_rows(db, snapshot)
        return len(rows) >= count and rows[count - 1][3] in states and rows
    try:
        return wait_for(done, timeout=timeout, interval=0.3,
                        what=f"transfer {count} of {snapshot} to be {'/'.join(states)}")[count - 1]
    except AssertionError as e:
        decisions = db.execute("SELECT outcome, reason, from_dc, to_dc, created_at::time,"
                               " report_ts::time FROM decisions"
                               " WHERE snapshot_id = %s ORDER BY id", (snapshot,)).fetchall()
        times = db.execute("SELECT id, created_at::time, started_at::time, finished_at::time,"
                           " updated_at::time FROM transfers WHERE snapshot_id = %s",
                           (snapshot,)).fetchall()
        raise AssertionError(f"{e}; transfers {transfer_rows(db, snapshot)} {times}; "
                             f"decisions {decisions}") from None


