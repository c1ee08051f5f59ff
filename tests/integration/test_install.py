"""`meson install` into a prefix of its own: the binary finds its migrations,
dashboard and configuration file there with no flag, and `homing migrate`
and `homing serve` work from the installed copy against the test stack with
the source tree out of reach (hidden under an empty tmpfs in a mount
namespace of their own when run as root; otherwise from / with nothing in
the environment that names the tree). The build lives in the state
directory and is incremental: only the binary and the OpenAPI document are
built for it (and the man page and completion it prints)."""
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import ROOT, free_port, report
from served import config_text, http, wait_ready

STATE = Path(os.environ["HOMING_STATE_DIR"])
BUILD = STATE / "install-build"
# Outside the source tree, so that hiding the tree leaves it.
PREFIX = Path(os.environ.get("HOMING_TEST_INSTALL_PREFIX",
                             f"/tmp/homing-install-{os.environ['HOMING_PG_PORT']}"))
HIDE = os.geteuid() == 0 and shutil.which("unshare") is not None


@pytest.fixture(scope="module")
def installed():
    if not (BUILD / "build.ninja").exists():
        subprocess.run(["meson", "setup", str(BUILD), f"--prefix={PREFIX}"], cwd=ROOT,
                       check=True, capture_output=True, timeout=300)
    # What is installed, and nothing else (not the tests and benchmarks).
    subprocess.run(["ninja", "-C", str(BUILD), "homing", "api/openapi.json", "deploy/homing.1",
                    "deploy/homing"], check=True, capture_output=True, timeout=900)
    shutil.rmtree(PREFIX, ignore_errors=True)
    subprocess.run(["meson", "install", "-C", str(BUILD), "--no-rebuild", "--quiet"],
                   check=True, capture_output=True, timeout=300)
    return PREFIX


def run_installed(prefix, args, env, **kw):
    """The installed homing, from /, the source tree hidden where we can."""
    command = [str(prefix / "bin" / "homing"), *args]
    if HIDE:
        command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                   'mount -t tmpfs tmpfs "$0" && exec "$@"', str(ROOT), *command]
    return command, dict(cwd="/", env=env, **kw)


def clean_env():
    """The environment without any setting: the installed file must carry them."""
    return {k: v for k, v in os.environ.items() if not k.startswith("HOMING_")}


def test_meson_install_puts_every_file_where_the_binary_looks(installed):
    p = installed
    for path in ["bin/homing", "share/homing/migrations/001_core.sql",
                 "share/homing/openapi.json", "share/homing/schemas/cloudevent.json",
                 "share/homing/dashboard/index.html", "share/homing/dashboard/app.js",
                 "share/homing/dashboard/quality.js",
                 "share/homing/dashboard/node_modules/d3-geo/dist/d3-geo.min.js",
                 "share/homing/dashboard/node_modules/world-atlas/countries-110m.json",
                 "share/doc/homing/homing.conf.example", "share/doc/homing/README.md",
                 "lib/systemd/system/homing-serve.service", "lib/systemd/system/homing.target",
                 "share/man/man1/homing.1", "share/bash-completion/completions/homing",
                 "share/homing/grafana/homing.json",
                 "share/homing/prometheus/homing.rules.yml"]:
        assert (p / path).is_file(), path
    migrations = sorted(f.name for f in (ROOT / "migrations").glob("*.sql"))
    assert sorted(f.name for f in (p / "share/homing/migrations").iterdir()) == migrations
    unit = (p / "lib/systemd/system/homing-serve.service").read_text()
    assert f"ExecStart={p}/bin/homing serve" in unit and "@" not in unit.replace(
        "@system-service", "").replace("@privileged @resources", "")
    command, kw = run_installed(p, ["config"], clean_env())
    shown = subprocess.run(command, capture_output=True, text=True, timeout=30, **kw)
    assert shown.returncode == 0, shown.stderr
    assert f"migrations-dir = {p}/share/homing/migrations  (default)" in shown.stdout
    assert f"dashboard-dir = {p}/share/homing/dashboard  (default)" in shown.stdout
    assert f"config = {p}/etc/homing/homing.conf  (default)" in shown.stdout


def test_the_installed_homing_migrates_and_serves_from_its_configuration_file(
        installed, database, topics, tmp_path):
    port = free_port()
    conf = installed / "etc" / "homing" / "homing.conf"
    conf.parent.mkdir(parents=True, exist_ok=True)
    conf.write_text(config_text(database, topics, port, "written by test_install.py"))
    env = clean_env()
    command, kw = run_installed(installed, ["migrate"], env)
    migrated = subprocess.run(command, capture_output=True, text=True, timeout=120, **kw)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    assert "applied migration 001_core.sql" in migrated.stderr

    log = open(tmp_path / "serve.log", "w")
    command, kw = run_installed(installed, ["serve"], env)
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, **kw)
    url = f"http://127.0.0.1:{port}"

    def get(path, headers=None, data=None):
        return http(url + path, headers, data)

    try:
        wait_ready(proc, tmp_path / "serve.log", url, "the installed homing to be ready")
        assert get("/")[0] == 200
        assert get("/dashboard/d3-geo.min.js")[0] == 200
        assert json.loads(get("/v1/openapi.json")[1])["openapi"].startswith("3.1")
        command, kw = run_installed(installed, ["token", "device", "--device", "d-1",
                                                "--user", "u-1", "--ttl", "1h"], env)
        token = subprocess.run(command, capture_output=True, text=True, timeout=30, check=True,
                               **kw).stdout.strip()
        status, body = get("/v1/locations", {"Authorization": f"Bearer {token}",
                                             "Content-Type": "application/json"},
                           json.dumps(report()).encode())
        assert status == 202, body
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0, (tmp_path / "serve.log").read_text()[-3000:]
