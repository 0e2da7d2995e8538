"""The benchmarks at tiny sizes: they run, print, and write their JSON. (Their figures are not
judged here; `deeplens bench` at full size is what the README reports.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "name",
    [
        "extract",
        "search",
        "coldstart",
        "http",
        "ingest",
        "migration",
        "observability",
        "extracthttp",
        "noisy",
        "verify",
        "cuda",
    ],
)
def test_benchmark_smoke(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import importlib

    import tests.perf._common as common

    monkeypatch.setattr(common, "OUT", tmp_path)
    monkeypatch.setattr("shared.quality.report.OUT", tmp_path)  # bench cuda: no database
    module = importlib.import_module(f"tests.perf.bench_{name}")
    module.main(["--smoke"])
    doc = json.loads((tmp_path / f"{name}.json").read_text())
    assert doc["rows"] and doc["machine"]["cores"]
    assert capsys.readouterr().out.strip()


def test_quality_eval_smoke(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from shared.quality import eval as quality
    from shared.quality import harness

    monkeypatch.setattr(harness, "OUT", tmp_path)
    monkeypatch.setattr("shared.quality.report.OUT", tmp_path)  # where report() writes
    quality.main(["--smoke"])
    doc = json.loads((tmp_path / "quality.json").read_text())
    families = {r["family"] for r in doc["rows"]}
    assert {"all", "crop-60", "screenshot", "watermark", "grayscale"} <= families
    assert {"crop-30", "collage", "rotate-15-45-q30", "perspective"} <= families
    assert "screenshot-desktop" in families
    assert {r["split"] for r in doc["rows"]} == {"dev", "test"}
    assert {r["mode"] for r in doc["rows"]} == {"embedding", "verified"}
    assert "top-1" in capsys.readouterr().out
