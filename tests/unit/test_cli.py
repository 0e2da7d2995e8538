"""The ``deeplens`` command line: its entry points keep their names; benchmarks run as their
own process from the source checkout (that shipped code never imports tests/ is
tests/unit/test_layout.py's)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import build_parser, main
from shared.cli import source as cli_source


def test_every_subcommand_is_there() -> None:
    parser = build_parser()
    for argv in (
        ["up"],
        ["migrate"],
        ["admin", "create", "--email", "a@b.c", "--password", "x"],
        ["bench", "http", "--smoke"],
        ["eval"],
        ["ingest", "dir"],
        ["search", "f.jpg"],
        ["tenant", "list"],
        ["models", "status"],
        ["reindex", "--all"],
    ):
        assert callable(parser.parse_args(argv).func)
    assert main is not None


def test_python_dash_m_runs_the_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "shared.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "deeplens" in out and "bench" in out and "reindex" in out


def test_bench_needs_a_source_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (cli_source.checkout_root() / "tests" / "perf").is_dir()  # this checkout
    monkeypatch.setattr(cli_source, "checkout_root", lambda: tmp_path)
    with pytest.raises(SystemExit, match="needs a source checkout"):
        main(["bench", "http"])


def test_ingest_is_bulk_unless_told_live() -> None:
    parser = build_parser()
    assert parser.parse_args(["ingest", "dir"]).live is False
    assert parser.parse_args(["ingest", "dir", "--live"]).live is True
