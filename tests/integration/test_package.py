"""The Debian package deploy/package builds: what `dpkg -c` lists, then
installed on this machine (`apt-get install ./homing_*.deb`): the user
homing, /etc/homing/homing.conf readable by it alone, /var/lib/homing, the
units enabled and not started; the installed `homing migrate` and `homing
serve`, as the user homing and with the source tree hidden, work against
the test stack from /etc/homing/homing.conf; `apt-get purge` leaves nothing.
Needs root (it installs a package); skipped otherwise, and when a homing
package is installed already (it is not ours to replace)."""
import grp
import json
import os
import pwd
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import ROOT, free_port, report
from served import config_text, http, wait_ready

STATE = Path(os.environ["HOMING_STATE_DIR"])
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]
UNITS = ["homing.target", "homing-serve.service", "homing-schedule.service",
         "homing-relay.service", "homing-migrate.service", "homing-agent.service"]


def installed():
    return subprocess.run(["dpkg-query", "-W", "-f=${Status}", "homing"], capture_output=True,
                          text=True).stdout.startswith("install ok installed")


pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="installing a package needs root"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="not a Debian system"),
]


@pytest.fixture(scope="module")
def deb():
    if installed():
        pytest.skip("a homing package is installed on this machine already")
    built = subprocess.run([str(ROOT / "deploy" / "package"), str(STATE / "package")],
                           capture_output=True, text=True, timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    return Path(built.stdout.strip().splitlines()[-1])


def test_the_package_lists_what_an_installed_homing_needs(deb):
    listing = subprocess.run(["dpkg", "-c", str(deb)], capture_output=True, text=True,
                             check=True).stdout
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for path in ["/usr/bin/homing", "/etc/homing/homing.conf",
                 "/usr/share/homing/migrations/001_core.sql", "/usr/share/homing/openapi.json",
                 "/usr/share/homing/schemas/cloudevent.json",
                 "/usr/share/homing/dashboard/index.html",
                 "/usr/share/homing/dashboard/node_modules/d3-geo/dist/d3-geo.min.js",
                 "/usr/share/man/man1/homing.1.gz", "/usr/share/bash-completion/completions/homing",
                 "/usr/share/doc/homing/homing.conf.example",
                 *[f"/usr/lib/systemd/system/{u}" for u in UNITS]]:
        assert path in files, path
    migrations = {f"/usr/share/homing/migrations/{p.name}"
                  for p in (ROOT / "migrations").glob("*.sql")}
    assert migrations <= files
    assert not [f for f in files if ".state" in f or f.startswith("/work")]
    info = subprocess.run(["dpkg-deb", "-f", str(deb), "Depends"], capture_output=True,
                          text=True, check=True).stdout
    for dep in ("libpq5", "librdkafka1", "libmicrohttpd12"):
        assert dep in info


def run_as_homing(args, **kw):
    """The installed binary as the user homing (setpriv execs: a SIGTERM reaches
    homing itself), the source tree hidden under a tmpfs."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs tmpfs "$0" && exec setpriv --reuid homing --regid homing --init-groups "$@"', str(ROOT),
            "/usr/bin/homing", *args]


def test_installed_it_migrates_and_serves_as_its_user_and_purges_cleanly(deb, database,
                                                                         topics, tmp_path):
    done = subprocess.run([*APT, "install", str(deb)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    try:
        user = pwd.getpwnam("homing")
        assert user.pw_dir == "/var/lib/homing" and user.pw_uid < 1000
        conf = os.stat("/etc/homing/homing.conf")
        assert (conf.st_mode & 0o777, conf.st_uid, grp.getgrgid(conf.st_gid).gr_name) == \
            (0o640, 0, "homing")
        assert os.stat("/var/lib/homing").st_uid == user.pw_uid
        assert Path("/etc/systemd/system/multi-user.target.wants/homing.target").is_symlink()
        assert Path("/etc/systemd/system/homing.target.wants/homing-serve.service").is_symlink()
        # The agent is installed, not enabled: an API host holds no images.
        assert not os.path.lexists("/etc/systemd/system/multi-user.target.wants/"
                                   "homing-agent.service")

        port = free_port()
        Path("/etc/homing/homing.conf").write_text(config_text(database, topics, port))
        env = {k: v for k, v in os.environ.items() if not k.startswith("HOMING_")}
        migrated = subprocess.run(run_as_homing(["migrate"]), env=env, cwd="/",
                                  capture_output=True, text=True, timeout=120)
        assert migrated.returncode == 0, migrated.stderr[-3000:]
        assert "applied migration 001_core.sql" in migrated.stderr

        log = open(tmp_path / "serve.log", "w")
        proc = subprocess.Popen(run_as_homing(["serve"]), env=env, cwd="/", stdout=log,
                                stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"

            def get(path, headers=None, data=None):
                return http(url + path, headers, data)

            wait_ready(proc, tmp_path / "serve.log", url, "the packaged homing to be ready")
            assert get("/dashboard/countries-110m.json")[0] == 200
            token = subprocess.run(run_as_homing(["token", "device", "--device", "d-1", "--user",
                                                  "u-1", "--ttl", "1h"]),
                                   env=env, cwd="/", capture_output=True, text=True,
                                   timeout=60, check=True).stdout.strip()
            status, body = get("/v1/locations", {"Authorization": f"Bearer {token}",
                                                 "Content-Type": "application/json"},
                               json.dumps(report()).encode())
            assert status == 202, body
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
        assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
    finally:
        purged = subprocess.run([*APT, "purge", "homing"], capture_output=True, text=True,
                                timeout=600)
    assert purged.returncode == 0, purged.stdout[-2000:] + purged.stderr[-2000:]
    assert not installed()
    for gone in ["/usr/bin/homing", "/usr/share/homing", "/etc/homing", "/var/lib/homing",
                 "/usr/lib/systemd/system/homing-serve.service",
                 "/etc/systemd/system/multi-user.target.wants/homing.target",
                 "/etc/systemd/system/homing.target.wants"]:
        assert not os.path.lexists(gone), gone
    with pytest.raises(KeyError):
        pwd.getpwnam("homing")
