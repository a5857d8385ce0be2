"""The live dashboard: Prometheus scrapes each component of deploy/compose.yaml on the port
its image serves /metrics on, Grafana reads that Prometheus, and every metric a panel of
the provisioned dashboard queries is exported by a running service (the local stack,
started for real: broker, rApp, xApp, emulator, negotiation rApp, guard)."""

from __future__ import annotations

import json
import re
import urllib.request

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from deploy.deploy_support import DEPLOY
from lameta_stack.broker import mosquitto_available
from lameta_stack.stack import Stack, StackConfig

DASHBOARD = DEPLOY / "grafana" / "dashboards" / "lameta-ric.json"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
# The port each image serves /metrics on (deploy/Dockerfile) per compose service.
METRICS_PORTS = {
    "xapp": 8080, "rapp": 9464, "sim-ric": 9465, "rapp-negotiation": 9466, "xapp-guard": 9467,
}  # fmt: skip
# Series Prometheus makes itself rather than scrapes.
SYNTHETIC = {"up"}
# PromQL words that look like metric names.
PROMQL = {
    "sum", "rate", "increase", "by", "without", "histogram_quantile", "avg", "max", "min",
    "count", "irate", "delta", "le", "on", "ignoring", "and", "or", "unless", "bool",
}  # fmt: skip
# The sample names a metric family of each type exposes.
SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "untyped": ("",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads (label matchers, ranges, grouping
    clauses, strings and function names removed)."""
    bare = re.sub(r'"[^"]*"', "", expr)
    bare = re.sub(r"\{[^}]*\}|\[[^\]]*\]", " ", bare)
    bare = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", bare)
    names = set()
    for m in re.finditer(r"\b([a-zA-Z_:][a-zA-Z0-9_:]*)\b(\s*\()?", bare):
        if m.group(2) is None and m.group(1) not in PROMQL:
            names.add(m.group(1))
    return names


def test_metric_names_reads_what_a_query_reads() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, stage) (rate(x_seconds_bucket{stage="a b"}[1m])))'
        " / on (job) up + xapp_inbound_queue"
    )
    assert metric_names(expr) == {"x_seconds_bucket", "up", "xapp_inbound_queue"}


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            out.append((panel["title"], target["expr"]))
    return out


def test_the_dashboard_reads_the_provisioned_prometheus() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    [source] = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    assert source["url"] == "http://prometheus:9090"
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert len(panels) >= 15 and len({p["id"] for p in dashboard["panels"]}) == len(
        dashboard["panels"]
    )
    for panel in panels:
        assert panel["datasource"]["uid"] == source["uid"], panel["title"]
        assert panel["targets"], panel["title"]
    titles = {p["title"] for p in panels}
    for wanted in ("Decisions per second", "End-to-end latency", "Fallbacks by cause",
                   "Rejections by code", "rApp latency", "E-LAM use", "Serving policy",
                   "Admitted rate", "Negotiations", "Alerts per second by class",
                   "Windows scored per second", "Clients tracked",
                   "Scoring latency p99"):  # fmt: skip
        assert wanted in titles, wanted


def test_prometheus_scrapes_each_component_where_its_image_serves_metrics() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    # The guard's service is in its override (compose.guard.yaml).
    compose["xapp-guard"] = yaml.safe_load((DEPLOY / "compose.guard.yaml").read_text())[
        "services"]["xapp-guard"]  # fmt: skip
    jobs = yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"]
    targets = {t for job in jobs for c in job["static_configs"] for t in c["targets"]}
    assert targets == {f"{name}:{port}" for name, port in METRICS_PORTS.items()}
    for name, port in METRICS_PORTS.items():
        published = [p.rsplit(":", 1)[-1] for p in compose[name].get("ports", [])]
        assert str(port) in published, (name, port)
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    for env in ("XAPP_HEALTH_PORT=8080", "RAPP_METRICS_PORT=9464", "SIM_METRICS_PORT=9465",
                "NEGO_HEALTH_PORT=9466", "GUARD_METRICS_PORT=9467"):  # fmt: skip
        assert env in dockerfile, env
    grafana = compose["grafana"]
    assert "./grafana/dashboards:/var/lib/grafana/dashboards:ro" in grafana["volumes"]
    assert (
        "./prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro"
        in (compose["prometheus"]["volumes"])
    )


def _exported(url: str) -> set[str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    names = set()
    for family in text_string_to_metric_families(text):
        names.update(family.name + s for s in SUFFIXES[family.type])
        names.update(sample.name for sample in family.samples)
    return names


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict[str, set[str]]:
    """Metric names per service of a running stack, read from each one's /metrics."""
    directory = tmp_path_factory.mktemp("dashboard-stack")
    stack = Stack(directory)
    try:
        desc = stack.up(
            StackConfig(
                directory=directory,
                rate=5.0,
                broker="mosquitto",
                negotiation=True,
                guard=True,
                env={"nego": {"NEGO_LLM": "scripted"}},
            )
        )
        urls = {
            "xapp": desc["xapp"]["health"] + "/metrics",
            "rapp": desc["rapp"]["metrics"],
            "sim-ric": desc["sim"]["metrics"],
            "rapp-negotiation": desc["nego"]["health"] + "/metrics",
            "xapp-guard": desc["guard"]["metrics"],
        }
        yield {name: _exported(url) for name, url in urls.items()}
    finally:
        stopped = stack.down(grace=20)
        assert all(stopped.values()), stopped


@pytest.mark.skipif(not mosquitto_available(), reason="the guard needs mosquitto")
def test_every_metric_a_panel_queries_is_exported_by_a_running_service(exported) -> None:
    assert set(exported) == set(METRICS_PORTS)
    everything = set().union(*exported.values())
    missing = [
        (title, name)
        for title, expr in _queries()
        for name in sorted(metric_names(expr) - SYNTHETIC)
        if name not in everything
    ]
    assert not missing, missing
    # Each service's own metrics are on the dashboard.
    queried = set().union(*(metric_names(e) for _, e in _queries()))
    for name, names in exported.items():
        assert queried & names, f"no panel reads {name}'s metrics"
