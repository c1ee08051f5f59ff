"""homing against a PostgreSQL that takes TLS connections only, as a managed
one does: a cluster of the test's own (initdb, a free port), its
certificate for localhost from a CA the test makes with openssl, pg_hba
refusing anything but hostssl. With sslmode=verify-full and the CA file,
migrate, serve and the token command work; with another CA, or without
TLS, migrate stops with libpq's reason."""
import glob
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import HOMING_BIN, free_port
from served import http, wait_ready

ROOT_USER = os.geteuid() == 0


def as_pg(args, **kw):
    if ROOT_USER:
        args = ["runuser", "-u", "postgres", "--", *args]
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=120, **kw)


def pg_bin(name):
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    assert found, f"no PostgreSQL {name}"
    return found[-1]


def make_ca(d, name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                    f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj",
                    f"/CN={name}"], cwd=d, check=True, capture_output=True, timeout=60)


@pytest.fixture(scope="module")
def tls_pg():
    # In the state directory: the user postgres reaches it, as the stack's cluster.
    d = Path(tempfile.mkdtemp(prefix="pg-tls-", dir=os.environ["HOMING_STATE_DIR"]))
    os.chmod(d, 0o755)
    make_ca(d, "ca")
    make_ca(d, "other-ca")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for args in (["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out",
                  "server.csr", "-subj", "/CN=localhost"],
                 ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                  "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile",
                  "san.ext"]):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)
    data = d / "data"
    data.mkdir()
    if ROOT_USER:
        shutil.chown(data, "postgres")
        for f in ("server.key", "server.pem"):
            shutil.chown(d / f, "postgres")
    os.chmod(d / "server.key", 0o600)
    as_pg([pg_bin("initdb"), "-D", str(data), "-U", "homing", "--auth=trust", "-E", "UTF8",
           "--locale=C.UTF-8"])
    port = free_port()
    with open(data / "postgresql.conf", "a") as f:
        f.write(f"listen_addresses = '127.0.0.1'\nport = {port}\n"
                f"unix_socket_directories = '{data}'\nssl = on\n"
                f"ssl_cert_file = '{d}/server.pem'\nssl_key_file = '{d}/server.key'\n")
    (data / "pg_hba.conf").write_text("local all all trust\n"
                                      "hostssl all all 127.0.0.1/32 trust\n"
                                      "hostnossl all all 127.0.0.1/32 reject\n")
    as_pg([pg_bin("pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "start"])
    try:
        as_pg([pg_bin("createdb"), "-h", str(data), "-p", str(port), "-U", "homing", "homing"])
        yield d, port
    finally:
        as_pg([pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"])
        shutil.rmtree(d, ignore_errors=True)


def env_for(dsn, topics, port=None):
    env = dict(os.environ)
    env.update({"HOMING_PG_DSN": dsn, "HOMING_TOPIC_LOCATIONS": topics["locations"],
                "HOMING_TOPIC_TRANSFERS": topics["transfers"],
                "HOMING_TOPIC_AUDIT": topics["audit"], "HOMING_TOPIC_PARTITIONS": "3"})
    if port:
        env["HOMING_LISTEN"] = f"127.0.0.1:{port}"
    return env


def test_verify_full_with_the_ca_file_works_end_to_end(tls_pg, topics, tmp_path):
    d, port = tls_pg
    dsn = (f"host=localhost port={port} dbname=homing user=homing sslmode=verify-full "
           f"sslrootcert={d}/ca.pem")
    port_http = free_port()
    env = env_for(dsn, topics, port_http)
    migrated = subprocess.run([HOMING_BIN, "migrate"], env=env, capture_output=True, text=True,
                              timeout=120)
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    token = subprocess.run([HOMING_BIN, "token", "operator", "--role", "viewer", "--name",
                            "tls"], env=env, capture_output=True, text=True, timeout=60,
                           check=True).stdout.strip()
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([HOMING_BIN, "serve"], env=env, stdout=log,
                            stderr=subprocess.STDOUT)

    url = f"http://127.0.0.1:{port_http}"
    viewer = {"Authorization": f"Bearer {token}"}

    def get(path):
        return http(url + path, viewer)

    try:
        wait_ready(proc, tmp_path / "serve.log", url, "homing ready over TLS to PostgreSQL", viewer)
        status, body = get("/v1/me")
        assert status == 200 and json.loads(body)["name"] == "tls"
        # homing's connections, as the server sees them: every one is TLS.
        seen = subprocess.run(["psql", dsn, "-Atc", "SELECT count(*), bool_and(ssl)"
                               " FROM pg_stat_ssl JOIN pg_stat_activity USING (pid)"
                               " WHERE client_addr IS NOT NULL AND application_name <> 'psql'"],
                              capture_output=True, text=True, timeout=30, check=True).stdout
        count, all_tls = seen.strip().split("|")
        assert int(count) >= 1 and all_tls == "t", seen
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
    assert proc.returncode == 0


@pytest.mark.parametrize("dsn_tail,reason", [
    ("sslmode=verify-full sslrootcert={d}/other-ca.pem", "certificate verify failed"),
    ("sslmode=disable", "no encryption"),
])
def test_another_ca_or_no_tls_is_refused_saying_why(tls_pg, topics, dsn_tail, reason):
    d, port = tls_pg
    dsn = f"host=localhost port={port} dbname=homing user=homing " + dsn_tail.format(d=d)
    result = subprocess.run([HOMING_BIN, "migrate"], env=env_for(dsn, topics),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "cannot connect to PostgreSQL" in result.stderr and reason in result.stderr, \
        result.stderr[-2000:]
