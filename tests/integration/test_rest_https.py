"""HTTPS: given a certificate and key, homing serves TLS (libmicrohttpd with
GnuTLS), tokens and all; a client that does not trust the certificate is
refused by its own TLS stack, and plain HTTP does not get an answer."""
import json
import ssl
import subprocess
import urllib.request

import pytest

from conftest import HOMING_BIN, Homing, report


class HttpsHoming(Homing):
    def __init__(self, *args, cafile, **kw):
        super().__init__(*args, **kw)
        self.url = f"https://localhost:{self.port}"
        self.cafile = cafile

    def ssl_context(self):
        return ssl.create_default_context(cafile=self.cafile)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2", "-subj",
                    "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem")],
                   check=True, capture_output=True, timeout=60)
    return d / "cert.pem", d / "key.pem"


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory, certificate):
    cert, key = certificate
    h = HttpsHoming(database, topics, "test-https", "serve", tmp_path_factory.mktemp("https"),
                    extra={"HOMING_TLS_CERT": str(cert), "HOMING_TLS_KEY": str(key)},
                    cafile=str(cert))
    h.migrate()
    h.start()
    yield h
    h.stop()


def test_the_api_answers_over_tls_with_tokens(homing):
    assert homing.get("/healthz")[0] == 200
    status, _, raw = homing.get("/v1/datacenters")
    assert status == 200 and json.loads(raw)["items"] == []
    assert homing.get("/v1/datacenters", token=None)[0] == 401
    assert homing.post("/v1/locations", report())[0] == 202


def test_a_client_that_does_not_trust_the_certificate_is_refused(homing):
    with pytest.raises(urllib.error.URLError) as e:
        urllib.request.urlopen(homing.url + "/healthz", timeout=10,
                               context=ssl.create_default_context())
    assert isinstance(e.value.reason, ssl.SSLCertVerificationError)


def test_plain_http_gets_no_answer(homing):
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://127.0.0.1:{homing.port}/healthz", timeout=5).read()


def test_a_certificate_without_its_key_stops_homing(database, topics, tmp_path_factory,
                                                    certificate):
    cert, _ = certificate
    h = Homing(database, topics, "test-https-bad", "serve", tmp_path_factory.mktemp("bad"),
               extra={"HOMING_TLS_CERT": str(cert)})
    proc = subprocess.run([HOMING_BIN, "serve"], env=h.env,
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    assert "--tls-key" in proc.stderr
