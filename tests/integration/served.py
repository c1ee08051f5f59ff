"""A homing the test starts itself, apart from the stack's own — installed
by meson, installed from the package, or against a PostgreSQL of its own —
and what every such test asks of it: a configuration file for the stack,
plain HTTP requests, and to be ready before anything else is asked."""
import os
import urllib.error
import urllib.request

from conftest import DEVICE_TOKEN_KEYS, wait_for


def config_text(database, topics, port, comment=None):
    """A homing.conf that points at the test stack and listens on `port`."""
    lines = [f"# {comment}"] if comment else []
    lines += [
        f"pg-dsn = {database}",
        f"kafka-brokers = {os.environ['HOMING_KAFKA_BROKERS']}",
        f"listen = 127.0.0.1:{port}",
        f"topic-locations = {topics['locations']}",
        f"topic-transfers = {topics['transfers']}",
        f"topic-audit = {topics['audit']}",
        "topic-partitions = 3",
        f"device-token-keys = {DEVICE_TOKEN_KEYS}",
    ]
    return "\n".join(lines) + "\n"


def http(url, headers=None, data=None):
    """(status, body) of one request; an HTTP error status is an answer too."""
    req = urllib.request.Request(url, headers=headers or {}, data=data)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(proc, log_path, base_url, what, headers=None):
    """Until /readyz answers 200; fails with the log's tail if the process
    ends first."""
    def ready():
        assert proc.poll() is None, log_path.read_text()[-3000:]
        try:
            return http(base_url + "/readyz", headers)[0] == 200
        except OSError:
            return False
    wait_for(ready, timeout=60, what=what)
