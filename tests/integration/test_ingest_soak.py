"""The short version of the ingest soak (bench/ingest/soak): an open-loop
load through the real API for a few seconds, every report with its device's
token, must be answered 202 throughout, with no request error. The long
version (80 % of the measured maximum for 10 minutes, memory watched) is
`bench/ingest/soak` itself; README has its figures."""
import os
import subprocess

from conftest import ROOT, free_port


def test_an_open_loop_load_is_answered_202_throughout():
    env = dict(os.environ, RATE="500", DURATION="15", BENCH_HOMING_PORT=str(free_port()),
               HOMING_BIN=str(ROOT / "build" / "homing"), GROWTH_MB="1000")
    done = subprocess.run([str(ROOT / "bench" / "ingest" / "soak")], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "5xx 0; request errors 0" in done.stdout
    assert "achieved 500/s" in done.stdout
