"""homing(1) and the bash completion come from the tables --help prints, so
they name every command and every setting, and nothing else; the page is
roff that groff reads without a warning, and the completion completes.
No stack needed."""
import re
import shutil
import subprocess

import pytest

from conftest import HOMING_BIN


def homing(*args):
    return subprocess.run([HOMING_BIN, *args], capture_output=True, text=True, timeout=30,
                          check=True).stdout


def commands():
    return re.findall(r"^  (\S+) ", homing("--help"), re.M)


def flags():
    return re.findall(r"^  (--\S+)", homing("serve", "--help"), re.M)


def test_the_man_page_names_every_command_and_setting_and_groff_reads_it_cleanly(tmp_path):
    groff = shutil.which("groff")
    if not groff:
        pytest.skip("groff is missing (package groff-base)")
    page = tmp_path / "homing.1"
    page.write_text(homing("manual"))
    checked = subprocess.run([groff, "-man", "-ww", "-z", str(page)], capture_output=True,
                             text=True, timeout=30)
    assert checked.returncode == 0 and checked.stderr == "", checked.stderr
    text = subprocess.run([groff, "-man", "-Tutf8", "-P", "-cbou", str(page)],
                          capture_output=True, text=True, timeout=30).stdout
    text = text.replace("\u2010", "-").replace("\u2212", "-")
    assert len(commands()) >= 10 and len(flags()) >= 60
    for c in commands():
        assert re.search(rf"^       {re.escape(c)}\b", text, re.M), c
    for f in flags():
        assert re.search(rf"^       {re.escape(f)} value, HOMING_", text, re.M), f


def run_completion(tmp_path, *words):
    script = tmp_path / "homing.bash"
    script.write_text(homing("completion", "bash"))
    line = " ".join(words)
    out = subprocess.run(
        ["bash", "-c", f'source {script}; COMP_WORDS=({line}); COMP_CWORD={len(words) - 1};'
         ' _homing; printf "%s\\n" "${COMPREPLY[@]}"'],
        capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    return [w for w in out.stdout.splitlines() if w]


def test_bash_completes_commands_flags_and_file_names(tmp_path):
    assert run_completion(tmp_path, "homing", "") == commands()
    assert run_completion(tmp_path, "homing", "sch") == ["schedule"]
    assert run_completion(tmp_path, "homing", "serve", "--") == flags()
    assert run_completion(tmp_path, "homing", "serve", "--kafka-prop") == [
        "--kafka-property", "--kafka-properties-file"]
    (tmp_path / "site.conf").write_text("")
    assert "site.conf" in run_completion(tmp_path, "homing", "serve", "--config", "si")
    assert run_completion(tmp_path, "homing", "serve", "--listen", "si") == []
