"""The start gate of ``deeplens up``'s function processes.

A function process spends most of its start importing (FastAPI, psycopg, NumPy, its
functions' modules: about a second of CPU each). The supervisor starts them before the
database is up, and each waits here, imported, until the supervisor has started PostgreSQL
and applied the migrations: the imports of every process overlap the database's start
instead of following it. The gate is a file the supervisor writes once (atomically) with
what the processes could not know when they were started (the embedded database's URL);
a process restarted later finds it open. Without ``DEEPLENS_START_GATE`` (production:
Knative starts a function when its dependencies are up) nothing waits.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Mapping, MutableMapping
from pathlib import Path

GATE_VARIABLE = "DEEPLENS_START_GATE"
WAIT_SECONDS = 300.0


def open_gate(path: Path, env: Mapping[str, str]) -> None:
    """Let the waiting processes go, with ``env`` added to theirs (supervisor)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(dict(env)))
    os.replace(tmp, path)


def preload(target: str | None) -> None:
    """Import what ``function.new().start`` will: the entry package and the target's modules
    (the target read as ``new()`` reads it; an unknown name fails there, with its message)."""
    import function
    from functions import FUNCTIONS

    for name in function.new(target).names:
        importlib.import_module(FUNCTIONS[name])


def wait_at_gate(environ: MutableMapping[str, str], *, timeout: float = WAIT_SECONDS) -> None:
    """Block until the gate named in ``environ`` is open, then take its variables (process)."""
    name = environ.get(GATE_VARIABLE)
    if not name:
        return
    path, deadline = Path(name), time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise SystemExit(f"the supervisor did not open {path} in {timeout:.0f} s")
        time.sleep(0.02)
    environ.update(json.loads(path.read_text()))
