"""The ``deeplens`` command line (``deeplens = "shared.cli:main"``): main.py builds the parser;
up.py (up, migrate, admin create), source.py (bench, eval: from a source checkout),
client.py (ingest, search over HTTP), tenant.py (operator commands on the database) and
models.py (the model lifecycle through the admin API) hold the subcommands."""

from shared.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
