"""The start gate of ``deeplens up``'s function processes (shared/local/gate.py): imported
processes wait for the supervisor's database, then take its URL; production never waits."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from shared.local.gate import GATE_VARIABLE, open_gate, wait_at_gate


def test_a_process_waits_until_the_gate_opens_and_takes_its_variables(tmp_path: Path) -> None:
    gate = tmp_path / "run" / "start.json"
    environ = {GATE_VARIABLE: str(gate), "KEEP": "1"}
    opened_at: list[float] = []

    def supervisor() -> None:
        time.sleep(0.3)
        opened_at.append(time.monotonic())
        open_gate(gate, {"DEEPLENS_DATABASE_URL": "postgresql://db/x"})

    t = threading.Thread(target=supervisor)
    t0 = time.monotonic()
    t.start()
    wait_at_gate(environ, timeout=10)
    t.join()
    assert time.monotonic() >= opened_at[0] >= t0 + 0.3
    assert environ["DEEPLENS_DATABASE_URL"] == "postgresql://db/x" and environ["KEEP"] == "1"
    # A process restarted later finds it open and goes at once.
    again = {GATE_VARIABLE: str(gate)}
    t0 = time.monotonic()
    wait_at_gate(again, timeout=10)
    assert time.monotonic() - t0 < 0.2 and again["DEEPLENS_DATABASE_URL"] == "postgresql://db/x"


def test_without_a_gate_nothing_waits_and_a_gate_never_opened_gives_up(tmp_path: Path) -> None:
    environ: dict[str, str] = {}
    wait_at_gate(environ, timeout=0.01)
    assert environ == {}
    with pytest.raises(SystemExit, match="did not open"):
        wait_at_gate({GATE_VARIABLE: str(tmp_path / "never.json")}, timeout=0.1)


def test_preload_imports_what_the_function_will_serve() -> None:
    code = (
        "import sys\n"
        "from shared.local.gate import preload\n"
        "preload('auth')\n"
        "assert 'functions.auth' in sys.modules and 'function' in sys.modules\n"
        "assert 'functions.search' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
