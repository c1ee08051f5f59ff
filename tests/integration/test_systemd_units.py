"""deploy/systemd: the units are what systemd itself accepts, start commands
homing has, read the settings file, and keep their hardening.

The units are templates that `meson install` fills in (@bindir@, @docdir@,
@sysconfdir@); `systemd-analyze verify` insists that ExecStart's binary
exists, so here they are filled in with the binary under test. It needs no running systemd (this
works in a container whose PID 1 is something else). No stack needed."""
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import HOMING_BIN

UNITS = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
SERVICES = {"homing-serve.service": "serve", "homing-schedule.service": "schedule",
            "homing-relay.service": "relay", "homing-migrate.service": "migrate",
            "homing-agent.service": "agent"}
# The agent runs where the images are, often alone: not part of homing.target.
OF_THE_TARGET = {name for name in SERVICES if name != "homing-agent.service"}
INSTALLED = "@bindir@/homing"
EXAMPLE = UNITS.parent / "homing.conf.example"


def analyze():
    path = shutil.which("systemd-analyze")
    assert path, "systemd-analyze is missing: deploy/install-deps installs it (package systemd)"
    return path


def parse(path):
    """A unit file as {section: [(key, value), ...]}."""
    sections, current = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def values(unit, section, key):
    return [v for k, v in unit.get(section, []) if k == key]


@pytest.fixture(scope="module")
def templated(tmp_path_factory):
    """The units, with the binary under test where they name the installed one."""
    out = tmp_path_factory.mktemp("units")
    binary = str(Path(HOMING_BIN).resolve())
    assert os.access(binary, os.X_OK), f"{binary} is not built"
    for path in UNITS.iterdir():
        if path.suffix in (".service", ".target"):
            (out / path.name).write_text(
                path.read_text().replace(INSTALLED, binary).replace("@docdir@", "/usr/share/doc")
                .replace("@sysconfdir@", "/etc/homing"))
    return out


def test_systemd_verify_accepts_every_unit(templated):
    files = sorted(str(p) for p in templated.iterdir())
    assert len(files) == len(SERVICES) + 1
    result = subprocess.run([analyze(), "verify", *files], capture_output=True, text=True,
                            timeout=60)
    # Unknown keys are only warnings to verify: any output at all is a finding.
    assert result.returncode == 0 and result.stdout + result.stderr == "", \
        result.stdout + result.stderr


def test_every_service_is_hardened_below_exposure_2(templated):
    files = [str(templated / name) for name in SERVICES]
    result = subprocess.run([analyze(), "security", "--offline=yes", "--threshold=20", *files],
                            capture_output=True, text=True, timeout=60)
    levels = re.findall(r"Overall exposure level for (\S+): ([0-9.]+)", result.stdout)
    assert len(levels) == len(SERVICES), result.stdout[-2000:] + result.stderr
    assert result.returncode == 0, levels


@pytest.mark.parametrize("name,command", sorted(SERVICES.items()))
def test_a_service_runs_a_homing_command_with_the_shared_settings(name, command):
    unit = parse(UNITS / name)
    assert values(unit, "Service", "ExecStart") == [f"{INSTALLED} {command}"]
    # homing reads its configuration file itself, as the user homing.
    assert values(unit, "Service", "EnvironmentFile") == []
    for key, expected in (("DynamicUser", "yes"), ("User", "homing"), ("NoNewPrivileges", "yes"),
                          ("ProtectSystem", "strict"), ("PrivateTmp", "yes"),
                          ("ProtectHome", "yes"), ("CapabilityBoundingSet", ""),
                          ("Restart", "on-failure")):
        assert values(unit, "Service", key) == [expected], key
    if name in OF_THE_TARGET:
        assert values(unit, "Install", "WantedBy") == ["homing.target"]
        assert "homing.target" in values(unit, "Unit", "PartOf")
    else:
        assert values(unit, "Install", "WantedBy") == ["multi-user.target"]
        assert values(unit, "Unit", "PartOf") == []
    # The command exists in the binary (its --help answers 0).
    result = subprocess.run([HOMING_BIN, command, "--help"], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr


def test_long_running_services_stop_in_time_and_restart_with_a_limit():
    for name in ("homing-serve.service", "homing-schedule.service", "homing-relay.service",
                 "homing-agent.service"):
        unit = parse(UNITS / name)
        assert values(unit, "Service", "Type") == ["exec"]
        assert values(unit, "Service", "KillSignal") == ["SIGTERM"]
        assert values(unit, "Unit", "StartLimitBurst") and values(unit, "Unit",
                                                                   "StartLimitIntervalSec")
        if name in OF_THE_TARGET:  # the agent talks to the API, not the database
            assert "homing-migrate.service" in " ".join(values(unit, "Unit", "After"))


def test_the_agent_may_write_its_store_and_nothing_else():
    unit = parse(UNITS / "homing-agent.service")
    assert values(unit, "Service", "StateDirectory") == ["homing"]
    assert values(unit, "Service", "ProtectSystem") == ["strict"]
    assert values(unit, "Service", "ReadWritePaths") == []
    # The example configuration's store is that directory.
    assert "store = /var/lib/homing/store" in EXAMPLE.read_text()


def test_the_target_pulls_in_migrate_serve_and_schedule():
    target = parse(UNITS / "homing.target")
    wanted = " ".join(values(target, "Unit", "Wants")).split()
    assert sorted(wanted) == ["homing-migrate.service", "homing-schedule.service",
                              "homing-serve.service"]


def test_the_example_configuration_is_one_homing_reads():
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOMING_")}
    result = subprocess.run([HOMING_BIN, "config", "--config", str(EXAMPLE)], env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    from_file = [line for line in lines if f"({EXAMPLE}:" in line]
    assert len(from_file) >= 8, result.stdout
    # The password in its DSN is not printed.
    dsn = next(line for line in lines if line.startswith("pg-dsn = "))
    assert "password=********" in dsn and "change-me" not in dsn
