"""deploy/grafana/homing.json and deploy/prometheus/homing.rules.yml query
only what homing serves: every metric name in their PromQL exists in a real
scrape of a standalone homing (API, scheduler, relay) and of a transfer
agent. The dashboard is Grafana's JSON with a Prometheus data source
variable, and has a panel for each thing the issue asked to watch."""
import json
import re
import urllib.request
from pathlib import Path

import pytest

from conftest import Homing, free_port, seed_catalog, wait_for
from plane import Agent

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
DASHBOARD = DEPLOY / "grafana" / "homing.json"
RULES = DEPLOY / "prometheus" / "homing.rules.yml"
# PromQL's own words that look like metric names.
PROMQL = {"sum", "max", "min", "by", "rate", "increase", "histogram_quantile", "le", "absent",
          "deriv", "and", "or"}


def names(expr):
    """The metric names an expression reads."""
    expr = re.sub(r'"[^"]*"', '""', expr)                 # label values
    expr = re.sub(r"\{[^}]*\}", "", expr)                  # label matchers
    expr = re.sub(r"\b(by|without)\s*\([^)]*\)", "", expr)  # grouping labels
    return {w for w in re.findall(r"\b[a-z_:][a-z0-9_:]*\b", expr)
            if w.startswith("homing_") and w not in PROMQL}


def dashboard_exprs():
    return [t["expr"] for p in json.loads(DASHBOARD.read_text())["panels"] for t in p["targets"]]


def rule_exprs():
    return [e.strip() for e in re.findall(r"^\s+expr: (.+)$", RULES.read_text(), re.M)]


def test_the_dashboard_is_grafana_json_with_a_panel_for_each_watched_thing():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "homing" and dash["panels"]
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "${datasource}" and p["targets"], p["title"]
    used = set().union(*(names(e) for e in dashboard_exprs()))
    for watched in ("homing_ingest_requests_total", "homing_kafka_produce_duration_seconds_bucket",
                    "homing_consumer_lag_messages", "homing_decisions_total",
                    "homing_transfers_open", "homing_agent_bytes_total",
                    "homing_outbox_backlog_rows", "homing_relay_leader"):
        assert watched in used, watched


@pytest.fixture(scope="module")
def scraped(database, db, topics, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("grafana")
    h = Homing(database, topics, "grafana", "standalone", tmp)
    h.migrate()
    seed_catalog(db)
    h.start()
    port = free_port()
    agent = Agent(h, "t-paris", tmp / "store", tmp,
                  extra={"HOMING_METRICS_LISTEN": f"127.0.0.1:{port}"}).start()
    try:
        # Lag is per partition: it appears once the consumer holds its partitions.
        wait_for(lambda: h.get("/readyz")[0] == 200, what="the consumer's partitions")
        def with_lag():
            status, _, body = h.get("/metrics")
            return status == 200 and b"homing_consumer_lag_messages{" in body and body
        raw = wait_for(with_lag, what="a scrape with lag")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = raw.decode() + r.read().decode()
    finally:
        agent.stop()
        h.stop()
    return {line.split("{")[0].split(" ")[0] for line in text.splitlines()
            if line and not line.startswith("#")}


@pytest.mark.parametrize("source", ["dashboard", "rules"])
def test_every_metric_queried_exists_in_a_real_scrape(scraped, source):
    exprs = dashboard_exprs() if source == "dashboard" else rule_exprs()
    assert exprs
    queried = set().union(*(names(e) for e in exprs))
    assert queried, exprs
    missing = sorted(queried - scraped)
    assert not missing, f"{source} queries what homing does not serve: {missing}"
