"""The OpenAPI document at /v1/openapi.json is valid OpenAPI 3.1 and
describes exactly the routes homing serves, with who may call each."""
import ast
import json
import re
import subprocess
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from conftest import HOMING_BIN, Homing

METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def homing(database, topics, tmp_path_factory):
    h = Homing(database, topics, "test-openapi", "serve", tmp_path_factory.mktemp("openapi"))
    h.migrate()
    h.start()
    yield h
    h.stop()


@pytest.fixture(scope="module")
def document(homing):
    status, headers, raw = homing.get("/v1/openapi.json", token=None)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    return json.loads(raw)


def served_routes():
    """`homing routes`: method, path template, access — the router's own table."""
    out = subprocess.run([HOMING_BIN, "routes"], check=True, capture_output=True,
                         text=True).stdout
    routes = set()
    for line in out.splitlines():
        method, path, access = line.split()[:3]
        routes.add((method.lower(), path, access))
    return routes


def documented_routes(document):
    return {(method, path, op["x-homing-access"])
            for path, item in document["paths"].items()
            for method, op in item.items() if method in METHODS}


def test_the_document_is_valid_openapi_3_1(document):
    assert document["openapi"].startswith("3.1")
    validate(document)  # raises on the first violation


def test_no_key_is_written_twice_in_the_generator():
    """A Python dict keeps the last of two equal keys, silently: the template
    replicas' page once described itself with the snapshot replicas' schema
    so (two "Replica" schemas)."""
    tree = ast.parse((Path(__file__).resolve().parents[2] / "api" / "openapi.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            twice = sorted({k for k in keys if keys.count(k) > 1})
            assert not twice, f"api/openapi.py:{node.lineno}: {twice}"


def test_every_route_is_documented_and_every_documented_route_exists(document):
    served, documented = served_routes(), documented_routes(document)
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


def test_path_parameters_are_declared_where_they_appear(document):
    for path, item in document["paths"].items():
        names = set(re.findall(r"{(\w+)}", path))
        for method, op in item.items():
            declared = {p["name"] for p in op.get("parameters", []) if p.get("in") == "path"}
            assert declared == names, f"{method.upper()} {path}"


def test_protected_operations_declare_security_and_401_403(document):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if op["x-homing-access"] == "public":
                assert op["security"] == []
            else:
                assert op["security"], f"{method.upper()} {path}"
                assert {"401", "403"} <= set(op["responses"]), f"{method.upper()} {path}"


def test_the_document_is_served_without_a_token_and_matches_the_build(homing, document):
    status, _, raw = homing.get("/v1/openapi.json", token=None)
    assert json.loads(raw) == document
