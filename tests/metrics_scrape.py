"""Reading a Prometheus scrape in tests: samples by name and labels, and the label rule."""

from __future__ import annotations

import re
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

UUID = re.compile(
    r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}"
)
# Every label name the platform uses; a new one must be added here on purpose (and checked
# against the rule: values from a small closed set, never an id).
ALLOWED_LABELS = {
    "route",
    "method",
    "status",
    "result",
    "kind",
    "table",
    "operation",
    "state",
    "stage",
    "outcome",
    "type",
    "trigger",
    "model",
    "tier",
    "le",
    "quantile",
    # prometheus-client's own process/platform collectors (single-process mode)
    "generation",
    "implementation",
    "major",
    "minor",
    "patchlevel",
    "version",
}


@dataclass
class Scrape:
    text: str

    def samples(self) -> list[tuple[str, dict[str, str], float]]:
        out = []
        for family in text_string_to_metric_families(self.text):
            for s in family.samples:
                out.append((s.name, dict(s.labels), float(s.value)))
        return out

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples()}

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        total, seen = 0.0, False
        for n, lab, v in self.samples():
            if n == name and all(lab.get(k) == val for k, val in labels.items()):
                total += v
                seen = True
        assert seen, f"no sample {name}{labels}"
        return total


def platform_routes() -> set[str]:
    """Every route template of every function (the only values the route label may take)."""
    import importlib

    from fastapi.routing import APIRoute

    from functions import FUNCTIONS

    out = set()
    for module in FUNCTIONS.values():
        for r in importlib.import_module(module).router.routes:
            if isinstance(r, APIRoute):
                out.add(r.path_format)
    return out


def assert_bounded_labels(scrape: Scrape, routes: set[str]) -> None:
    """The cardinality rule: no id, email or free text in any label value; routes are
    templates the app declares."""
    for name, labels, _ in scrape.samples():
        if not name.startswith("deeplens_"):
            continue
        assert set(labels) <= ALLOWED_LABELS, (name, labels)
        for key, value in labels.items():
            assert not UUID.search(value), (name, key, value)
            assert "@" not in value, (name, key, value)
            assert len(value) <= 80, (name, key, value)
        if "route" in labels:
            assert labels["route"] in routes or labels["route"] == "unmatched", labels
