"""What the benchmarks written in Python share (bench/failover, bench/replicas,
bench/transfer): each has a database and a work directory of its own on the
stack (deploy/stack up), its own topics and API port, and stops the
processes it started however the run ends.
"""
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATE = Path(os.environ["HOMING_STATE_DIR"])


def say(*a):
    print(*a, file=sys.stderr, flush=True)


def run(*argv, env=None, **kw):
    return subprocess.run(argv, check=True, capture_output=True, text=True, env=env, **kw).stdout


def qemu_io(path, commands):
    """Writes into a qcow2 image, a few hundred qemu-io commands a process."""
    for i in range(0, len(commands), 400):
        argv = ["qemu-io", "-f", "qcow2"]
        for c in commands[i:i + 400]:
            argv += ["-c", c]
        subprocess.run(argv + [str(path)], check=True, capture_output=True)


def pct(values, p):
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


def wait(pred, timeout, what, interval=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise SystemExit(f"bench: timed out waiting for {what}")


class Bench:
    """One benchmark's database (homing_bench_NAME), work directory
    ($HOMING_STATE_DIR/bench-NAME), topics, consumer group and API port.
    Used as a context: the processes it started are stopped on the way out."""

    def __init__(self, name, api_port):
        self.name = name
        self.work = STATE / f"bench-{name}"
        self.db = f"homing_bench_{name}"
        self.dsn = os.environ["HOMING_PG_DSN"].replace("dbname=homing", f"dbname={self.db}")
        self.admin_dsn = os.environ["HOMING_PG_DSN"].replace("dbname=homing", "dbname=postgres")
        self.api_port = api_port
        self.procs = []

    def sql(self, q, dsn=None):
        return subprocess.run(["psql", dsn or self.dsn, "-v", "ON_ERROR_STOP=1", "-Atq", "-F",
                               "|", "-c", q], check=True, capture_output=True,
                              text=True).stdout.strip()

    def env(self, extra=None):
        """homing's environment: this benchmark's database, topics and port."""
        env = dict(os.environ, HOMING_PG_DSN=self.dsn,
                   HOMING_LISTEN=f"127.0.0.1:{self.api_port}",
                   HOMING_TOPIC_LOCATIONS=f"homing.bench.{self.name}.locations",
                   HOMING_TOPIC_TRANSFERS=f"homing.bench.{self.name}.jobs",
                   HOMING_TOPIC_AUDIT=f"homing.bench.{self.name}.audit",
                   HOMING_CONSUMER_GROUP=f"bench-{self.name}", HOMING_LOG_LEVEL="info")
        # Another build's binary (BENCH_HOMING) may come with its own migrations.
        env.setdefault("HOMING_MIGRATIONS_DIR", str(ROOT / "migrations"))
        env.update(extra or {})
        return env

    def fresh(self, homing):
        """An empty work directory and a new database, migrated by homing."""
        shutil.rmtree(self.work, ignore_errors=True)
        self.work.mkdir(parents=True)
        self.sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)', self.admin_dsn)
        self.sql(f'CREATE DATABASE "{self.db}"', self.admin_dsn)
        run(homing, "migrate", env=self.env())

    def start(self, name, argv, env):
        log = open(self.work / f"{name}.log", "w")
        p = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        return False
