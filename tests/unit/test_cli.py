"""The ``deeplens`` command line: its entry points keep their names, and shipped code never
imports tests/ (benchmarks run as their own process from the source checkout)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from shared.cli import build_parser, main
from shared.cli import source as cli_source

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("function", "functions", "shared", "events")


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


def test_shipped_code_never_imports_tests() -> None:
    offenders = []
    for top in SHIPPED:
        for path in (ROOT / top).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                names = []
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    names = [node.module]
                elif (  # importlib.import_module("tests....")
                    isinstance(node, ast.Call)
                    and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module"
                    and node.args
                    and isinstance(node.args[0], ast.Constant)
                ):
                    names = [str(node.args[0].value)]
                offenders += [f"{path}: {n}" for n in names if n.split(".")[0] == "tests"]
    assert offenders == []


def test_bench_needs_a_source_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert (cli_source.checkout_root() / "tests" / "perf").is_dir()  # this checkout
    monkeypatch.setattr(cli_source, "checkout_root", lambda: tmp_path)
    with pytest.raises(SystemExit, match="needs a source checkout"):
        main(["bench", "http"])
