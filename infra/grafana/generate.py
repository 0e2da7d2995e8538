"""Writes the Grafana dashboards (dashboards/*.json) from the panel lists below: dashboards as
code, reviewed as Python, committed as JSON that Grafana provisions. A test fails when the
committed files differ from what this writes, and another checks that every metric the
PromQL names is exposed by a live scrape of the platform.

    python infra/grafana/generate.py

Counters are summed over pods/processes; the state gauges (tenants, images, backlog) are
reported by every function pod from the same database, so they are taken with ``max``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATASOURCE = {"type": "prometheus", "uid": "deeplens-prometheus"}
R = "[5m]"


def q(expr: str, legend: str = "") -> dict[str, Any]:
    return {"expr": expr, "legendFormat": legend}


def p99(metric: str, by: str = "", quantile: str = "0.99") -> str:
    group = f"le, {by}" if by else "le"
    return f"histogram_quantile({quantile}, sum by ({group}) (rate({metric}_bucket{R})))"


def panel(title: str, targets: list[dict[str, Any]], unit: str = "short", kind: str = "timeseries",
          desc: str = "") -> dict[str, Any]:
    return {"title": title, "type": kind, "description": desc, "targets": targets, "unit": unit}


DASHBOARDS: dict[str, tuple[str, list[dict[str, Any]]]] = {
    "platform-overview": ("DeepLens — platform overview", [
        panel("Requests per second by route",
              [q(f"sum by (route) (rate(deeplens_http_requests_total{R}))", "{{route}}")], "reqps"),
        panel("Server errors (5xx) ratio",
              [q(f'sum(rate(deeplens_http_requests_total{{status=~"5.."}}{R}))'
                 f" / sum(rate(deeplens_http_requests_total{R}))", "5xx")], "percentunit"),
        panel("p99 latency by route",
              [q(p99("deeplens_http_request_duration_seconds", "route"), "{{route}}")], "s"),
        panel("Client errors (4xx) by route",
              [q(f'sum by (route, status) (rate(deeplens_http_requests_total{{status=~"4.."}}{R}))',
                 "{{route}} {{status}}")], "reqps"),
        panel("Images by status", [q("max by (status) (deeplens_images)", "{{status}}")],
              kind="stat"),
        panel("Broker backlog", [q("sum(max by (trigger) (deeplens_broker_backlog_events))",
                                   "undelivered")], kind="stat"),
        panel("Upload → indexed (p50, p95)",
              [q(p99("deeplens_upload_to_indexed_seconds", quantile="0.5"), "p50"),
               q(p99("deeplens_upload_to_indexed_seconds", quantile="0.95"), "p95")], "s"),
        panel("Database pool",
              [q('sum(deeplens_db_pool_connections{state="in_use"})', "in use"),
               q('sum(deeplens_db_pool_connections{state="idle"})', "idle"),
               q("sum(deeplens_db_pool_waiting)", "waiting")]),
        panel("p99 query duration by table",
              [q(p99("deeplens_db_query_duration_seconds", "table"), "{{table}}")], "s"),
        panel("Queries per second by operation",
              [q(f"sum by (operation) (rate(deeplens_db_query_duration_seconds_count{R}))",
                 "{{operation}}")], "ops"),
    ]),
    "pipeline-broker": ("DeepLens — pipeline and broker", [
        panel("Stage runs per second by outcome",
              [q(f"sum by (stage, outcome) (rate(deeplens_pipeline_stage_total{R}))",
                 "{{stage}} {{outcome}}")], "ops"),
        panel("Stage duration p95",
              [q(p99("deeplens_pipeline_stage_duration_seconds", "stage", "0.95"), "{{stage}}")],
              "s"),
        panel("Upload → indexed (p50, p95, p99)",
              [q(p99("deeplens_upload_to_indexed_seconds", quantile="0.5"), "p50"),
               q(p99("deeplens_upload_to_indexed_seconds", quantile="0.95"), "p95"),
               q(p99("deeplens_upload_to_indexed_seconds"), "p99")], "s"),
        panel("Images indexed per second",
              [q(f"sum(rate(deeplens_upload_to_indexed_seconds_count{R}))", "indexed")], "ops"),
        panel("Events published by type",
              [q(f"sum by (type) (rate(deeplens_events_published_total{R}))", "{{type}}")],
              "ops"),
        panel("Deliveries by trigger",
              [q(f"sum by (trigger) (rate(deeplens_events_delivered_total{R}))",
                 "delivered {{trigger}}"),
               q(f"sum by (trigger) (rate(deeplens_events_retried_total{R}))",
                 "retried {{trigger}}"),
               q(f"sum by (trigger) (rate(deeplens_events_dead_lettered_total{R}))",
                 "dead {{trigger}}")], "ops"),
        panel("Backlog by trigger",
              [q("max by (trigger) (deeplens_broker_backlog_events)", "{{trigger}}")]),
        panel("Oldest undelivered event",
              [q("max(deeplens_broker_oldest_pending_age_seconds)", "age")], "s"),
        panel("Failed events awaiting replay", [q("max(deeplens_failed_events)", "failed")],
              kind="stat"),
        panel("Images by status", [q("max by (status) (deeplens_images)", "{{status}}")]),
    ]),
    "identity-tenants": ("DeepLens — identity and tenants", [
        panel("Sign-in attempts by result",
              [q(f"sum by (result) (rate(deeplens_login_attempts_total{R}))", "{{result}}")],
              "ops"),
        panel("Throttled sign-ins",
              [q(f"sum(rate(deeplens_login_throttled_total{R}))", "throttled")], "ops"),
        panel("Token refreshes by result",
              [q(f"sum by (result) (rate(deeplens_token_refreshes_total{R}))", "{{result}}")],
              "ops"),
        panel("Refresh-token reuse (last hour)",
              [q("sum(increase(deeplens_refresh_token_reuse_total[1h]))", "reuse")],
              kind="stat", desc="A rotated refresh token presented again: a leaked token."),
        panel("Quota refusals by kind",
              [q(f"sum by (kind) (rate(deeplens_quota_refusals_total{R}))", "{{kind}}")], "ops"),
        panel("Tenants by status and tier",
              [q("max by (status, tier) (deeplens_tenants)", "{{status}} {{tier}}")]),
        panel("Sign-in latency p99",
              [q(f'histogram_quantile(0.99, sum by (le) (rate('
                 f'deeplens_http_request_duration_seconds_bucket{{route="/api/auth/login"}}{R})))',
                 "login")], "s"),
    ]),
    "extraction-search": ("DeepLens — extraction and search", [
        panel("Images embedded per second by model",
              [q(f"sum by (model) (rate(deeplens_extract_images_total{R}))", "{{model}}")],
              "ops"),
        panel("Model call latency (p50, p99)",
              [q(p99("deeplens_extract_model_duration_seconds", "model", "0.5"), "p50 {{model}}"),
               q(p99("deeplens_extract_model_duration_seconds", "model"), "p99 {{model}}")], "s"),
        panel("Mean batch size",
              [q(f"sum(rate(deeplens_extract_batch_size_sum{R}))"
                 f" / sum(rate(deeplens_extract_batch_size_count{R}))", "images per call")]),
        panel("Search latency (p50, p99) by kind",
              [q(p99("deeplens_search_duration_seconds", "kind", "0.5"), "p50 {{kind}}"),
               q(p99("deeplens_search_duration_seconds", "kind"), "p99 {{kind}}")], "s"),
        panel("Searches per second by kind",
              [q(f"sum by (kind) (rate(deeplens_search_duration_seconds_count{R}))", "{{kind}}")],
              "ops"),
        panel("Mean results per search",
              [q(f"sum(rate(deeplens_search_results_sum{R}))"
                 f" / sum(rate(deeplens_search_results_count{R}))", "results")]),
    ]),
}


def dashboard(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
    out = []
    for i, p in enumerate(panels):
        width = 12
        out.append({
            "id": i + 1,
            "title": p["title"],
            "description": p["description"],
            "type": p["type"],
            "datasource": DATASOURCE,
            "gridPos": {"h": 8, "w": width, "x": (i % 2) * width, "y": (i // 2) * 8},
            "fieldConfig": {"defaults": {"unit": p["unit"]}, "overrides": []},
            "options": {},
            "targets": [
                {"refId": chr(ord("A") + j), "datasource": DATASOURCE, **t}
                for j, t in enumerate(p["targets"])
            ],
        })
    return {
        "uid": f"deeplens-{uid}",
        "title": title,
        "tags": ["deeplens"],
        "timezone": "utc",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-6h", "to": "now"},
        "panels": out,
    }


def render() -> dict[str, str]:
    return {
        f"{uid}.json": json.dumps(dashboard(uid, title, panels), indent=2) + "\n"
        for uid, (title, panels) in DASHBOARDS.items()
    }


if __name__ == "__main__":
    for name, text in render().items():
        (HERE / "dashboards" / name).write_text(text)
