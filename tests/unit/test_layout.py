"""The layout rules of issue 11, kept by tests: handlers (functions/) hold no SQL and never
import the database driver; no shipped module passes ~300 lines; shipped code never imports
the tests."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("function", "functions", "shared", "events")
MAX_LINES = 300
DRIVERS = ("psycopg", "psycopg_pool")
# A statement, not a word: the keyword, whitespace, then more (an HTTP method "DELETE" alone
# is not SQL).
SQL = re.compile(r"^\s*(SELECT|INSERT|UPDATE|DELETE|WITH|CREATE)\s+\S", re.IGNORECASE)


def modules(*folders: str) -> Iterator[Path]:
    for folder in folders:
        yield from sorted((ROOT / folder).rglob("*.py"))


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def _dynamic(node: ast.Call) -> str | None:
    """The module named by ``importlib.import_module("…")`` / ``__import__("…")`` (the start
    of it for an f-string), or None."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    arg = node.args[0]
    if isinstance(arg, ast.JoinedStr) and arg.values:
        arg = arg.values[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value
    return None


def imported(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of every import, nested ones (inside functions) and dynamic ones
    (importlib) included."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and (module := _dynamic(node)) is not None:
            yield node.lineno, module.rstrip(".")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.lineno, node.module


def docstrings(tree: ast.AST) -> set[int]:
    """ids of the docstring constants (prose, not statements)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                out.add(id(body[0].value))
    return out


def is_under(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_functions_hold_no_sql_and_never_import_the_driver() -> None:
    found = []
    for path in modules("functions"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for line, module in imported(tree):
            if any(is_under(module, d) for d in DRIVERS):
                found.append(f"{rel(path)}:{line} imports {module}")
        prose = docstrings(tree)
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and id(node) not in prose
                and SQL.match(node.value)
            ):
                first = node.value.strip().splitlines()[0][:60]
                found.append(f"{rel(path)}:{node.lineno} SQL {first!r}")
    assert not found, "handlers call a service; SQL lives in shared/store/:\n" + "\n".join(found)


def test_no_shipped_module_passes_300_lines() -> None:
    long = []
    for path in modules(*SHIPPED):
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            long.append(f"{rel(path)}: {n} lines")
    assert not long, f"modules over {MAX_LINES} lines (split them by concern):\n" + "\n".join(long)


def test_shipped_code_never_imports_the_tests() -> None:
    found = [
        f"{rel(path)}:{line} imports {module}"
        for path in modules(*SHIPPED)
        for line, module in imported(ast.parse(path.read_text(), filename=str(path)))
        if is_under(module, "tests")
    ]
    assert not found, "shipped code must not depend on tests/:\n" + "\n".join(found)


def test_the_rules_catch_what_they_are_for() -> None:
    """The detectors themselves, on small samples (a rule that never fires proves nothing)."""
    sample = ast.parse(
        '"""Delete a tenant: a docstring is prose."""\n'
        "import psycopg.rows\n"
        "def f():\n"
        "    from tests.conftest import Platform\n"
        "    importlib.import_module(f'tests.perf.bench_{name}')\n"
        "    q = '  select * from images'\n"
        "    m = 'DELETE'\n"
    )
    assert sorted(m for _, m in imported(sample)) == [
        "psycopg.rows",
        "tests.conftest",
        "tests.perf.bench_",
    ]
    prose = docstrings(sample)
    sql = [
        n.value
        for n in ast.walk(sample)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in prose
        and SQL.match(n.value)
    ]
    assert sql == ["  select * from images"]
    assert is_under("psycopg", "psycopg") and not is_under("psycopgx", "psycopg")
