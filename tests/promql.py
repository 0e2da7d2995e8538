"""The metric names a PromQL expression reads (enough PromQL for our dashboards and alerts):
strings, label matchers, grouping clauses and ranges are removed; what is left that is not a
function, an aggregation, a keyword or a number is a metric name."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or"}
KEYWORDS |= {"unless", "bool", "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word, rest = m.group(0), text[m.end() :].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def expressions() -> dict[str, str]:
    """Every PromQL expression of every dashboard panel and alert rule, by where it is."""
    out: dict[str, str] = {}
    for path in sorted((ROOT / "infra" / "grafana" / "dashboards").glob("*.json")):
        board: dict[str, Any] = json.loads(path.read_text())
        for p in board["panels"]:
            for t in p["targets"]:
                out[f"{path.name}: {p['title']} [{t['refId']}]"] = t["expr"]
    rules = yaml.safe_load((ROOT / "infra" / "prometheus" / "alerts.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            out[f"alerts.yml: {rule['alert']}"] = rule["expr"]
    return out


def assert_exposed(scraped: set[str]) -> None:
    """Every metric a dashboard or alert names is in a live scrape."""
    missing = {
        where: sorted(metric_names(expr) - scraped)
        for where, expr in expressions().items()
        if metric_names(expr) - scraped
    }
    assert not missing, missing
