"""Dashboards and alerts as code: the committed JSON is what infra/grafana/generate.py writes,
every panel and rule has a PromQL expression that names DeepLens metrics only, and the compose
file provisions Prometheus and Grafana with these very files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import yaml

from tests.promql import expressions, metric_names

ROOT = Path(__file__).resolve().parents[2]


def test_generated_dashboards_are_current() -> None:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "infra/grafana/generate.py")
    assert spec is not None and spec.loader is not None
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    rendered = gen.render()
    on_disk = {p.name: p.read_text() for p in (ROOT / "infra/grafana/dashboards").glob("*.json")}
    assert rendered == on_disk, "run python infra/grafana/generate.py"
    names = {"platform-overview", "pipeline-broker", "identity-tenants", "extraction-search"}
    assert {n.removesuffix(".json") for n in on_disk} == names
    uids = [json.loads(t)["uid"] for t in on_disk.values()]
    assert len(set(uids)) == len(uids)


def test_every_expression_names_deeplens_metrics() -> None:
    exprs = expressions()
    assert len(exprs) > 40
    for where, expr in exprs.items():
        assert expr.count("(") == expr.count(")"), where
        names = metric_names(expr)
        assert names, where
        assert all(n.startswith("deeplens_") for n in names), (where, names)


def test_metric_names_parser() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (le, route) (rate(a_bucket{route!~"/x|y"}[5m])))'
        " / sum(rate(b_total[5m])) > 0 and delta(sum(max by (t) (c))[15m:1m]) > 0"
    )
    assert metric_names(expr) == {"a_bucket", "b_total", "c"}


def test_alert_rules_cover_the_obvious_failures() -> None:
    rules = yaml.safe_load((ROOT / "infra/prometheus/alerts.yml").read_text())
    alerts = {r["alert"]: r for g in rules["groups"] for r in g["rules"]}
    for name in (
        "DeepLensBrokerBacklogGrowing",
        "DeepLensDeadLetters",
        "DeepLensHighErrorRate",
        "DeepLensHighLatencyP99",
    ):
        assert name in alerts
        assert alerts[name]["labels"]["severity"] in ("info", "warning", "critical")
        assert alerts[name]["annotations"]["summary"]


def test_compose_provisions_prometheus_and_grafana() -> None:
    compose = yaml.safe_load((ROOT / "infra/local/compose.yaml").read_text())
    base = ROOT / "infra/local"
    for svc in ("prometheus", "grafana"):
        for volume in compose["services"][svc]["volumes"]:
            src = volume.split(":", 1)[0]
            assert (base / src).resolve().exists(), (svc, src)
    prom = yaml.safe_load((ROOT / "infra/prometheus/prometheus.yml").read_text())
    assert prom["rule_files"] == ["/etc/prometheus/alerts.yml"]
    assert prom["scrape_configs"][0]["metrics_path"] == "/metrics"
    ds = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    uid = ds["datasources"][0]["uid"]
    for path in (ROOT / "infra/grafana/dashboards").glob("*.json"):
        for p in json.loads(path.read_text())["panels"]:
            assert p["datasource"]["uid"] == uid


def test_knative_pods_carry_scrape_annotations() -> None:
    docs = list(yaml.safe_load_all((ROOT / "infra/knative/services.yaml").read_text()))
    assert docs
    for d in docs:
        ann = d["spec"]["template"]["metadata"]["annotations"]
        assert ann["prometheus.io/scrape"] == "true"
        assert ann["prometheus.io/path"] == "/metrics"
        port = d["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"]
        assert ann["prometheus.io/port"] == str(port)
        env = {e["name"]: e for e in d["spec"]["template"]["spec"]["containers"][0]["env"]}
        ref = env["DEEPLENS_METRICS_TOKEN"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "deeplens-secrets" and ref["key"] == "metrics-token"
