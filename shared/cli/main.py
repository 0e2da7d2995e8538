"""The ``deeplens`` command: up, migrate, admin create, bench, eval, ingest, search, tenant,
models, reindex. Each group of subcommands lives in its own module of this package."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from shared.cli.up import cmd_admin_create, cmd_migrate, cmd_up


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="deeplens", description="DeepLens image similarity search"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the platform locally (one process per function)")
    up.add_argument("--host", default="127.0.0.1")
    up.add_argument("--port", type=int, default=8080)
    up.add_argument("--data-dir", type=Path)
    up.add_argument(
        "--single-process",
        action="store_true",
        help="every function in one process with the in-process broker (debugging)",
    )
    up.add_argument(
        "--ingress", type=int, default=1, help="ingress processes sharing the port (default 1)"
    )
    up.set_defaults(func=cmd_up)

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    mig.add_argument("--data-dir", type=Path)
    mig.set_defaults(func=cmd_migrate)

    admin = sub.add_parser("admin", help="platform administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    create = admin_sub.add_parser("create", help="create a system administrator")
    create.add_argument("--email", required=True)
    create.add_argument("--password", required=True)
    create.add_argument("--data-dir", type=Path)
    create.set_defaults(func=cmd_admin_create)

    from shared.cli.client import add_client_commands
    from shared.cli.models import add_models_commands
    from shared.cli.source import add_source_commands
    from shared.cli.tenant import add_tenant_commands

    add_source_commands(sub)
    add_client_commands(sub)
    add_tenant_commands(sub)
    add_models_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from shared.config import ClientSettings
    from shared.logs import setup_logging

    setup_logging("deeplens", ClientSettings().log_format, level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result
