"""The ``deeplens`` command: up, migrate, admin create, ingest, search, tenant, models, reindex."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

log = logging.getLogger("deeplens")


def _settings_env(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if getattr(args, "data_dir", None):
        env["DEEPLENS_DATA_DIR"] = str(args.data_dir)
    return env


def cmd_up(args: argparse.Namespace) -> int:
    """The local platform: a supervisor of one process per function group, an ingress on
    the port, the PostgreSQL broker over HTTP (shared/local). ``--single-process``: every
    function in one process with the in-process broker (for debugging)."""
    if not args.single_process:
        from shared.local.prepare import spawn

        env = _settings_env(args)
        prepare = spawn(env)  # the model's first export starts before anything else
        _multiprocess_metrics(env)
        from shared.local.supervisor import run_up

        return run_up(env, args.host, args.port, ingress=args.ingress, prepare=prepare)
    return _up_single_process(args)


def _multiprocess_metrics(env: dict[str, str]) -> None:
    """Metrics in multiprocess mode (shared/metrics.py): every process of the platform, the
    supervisor's broker included, writes its samples under one directory that any process's
    ``/metrics`` reads whole. Set before anything imports prometheus_client (it reads the
    variable at import); emptied at each start so a previous run's counts do not linger."""
    import shutil

    from shared.config import Settings

    if env.get("PROMETHEUS_MULTIPROC_DIR"):
        path = Path(env["PROMETHEUS_MULTIPROC_DIR"])
    else:
        path = Settings.from_env(env).data_dir.resolve() / "run" / "metrics"
        shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True, exist_ok=True)
    env["PROMETHEUS_MULTIPROC_DIR"] = os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(path)


def _up_single_process(args: argparse.Namespace) -> int:
    import uvicorn

    from function import new
    from shared.config import Settings
    from shared.embedded import embedded_database_url, exit_cleanly_on_sigterm
    from shared.localserver import LocalServer
    from shared.serving import uvicorn_options

    env = _settings_env(args)
    settings = Settings.from_env(env)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if not settings.database_url:
        env["DEEPLENS_DATABASE_URL"] = embedded_database_url(settings.data_dir)
        exit_cleanly_on_sigterm()
        log.info("using embedded PostgreSQL under %s", settings.data_dir / "postgres")
    from shared.embedded import stop_embedded

    fn = new()
    # uvicorn re-raises SIGTERM after its graceful shutdown, so the embedded server is stopped
    # in the lifespan's shutdown, not after uvicorn.run returns.
    app = LocalServer(fn, env, on_stop=stop_embedded)
    log.info(
        "DeepLens on http://%s:%s (data in %s)", args.host, args.port, settings.data_dir.resolve()
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="info",
        access_log=False,
        log_config=None,  # uvicorn's lines go through the root logger: JSON off a terminal
        lifespan="on",
        timeout_graceful_shutdown=5,
        **uvicorn_options(settings),
    )
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from shared.config import Settings
    from shared.db import migrate
    from shared.embedded import embedded_database_url

    settings = Settings.from_env(_settings_env(args))
    url = settings.database_url or embedded_database_url(settings.data_dir)
    applied = migrate(url)
    log.info(
        "applied %d migration(s)%s",
        len(applied),
        ": " + ", ".join(applied) if applied else " (up to date)",
    )
    return 0


def cmd_admin_create(args: argparse.Namespace) -> int:
    from shared.bootstrap import Container
    from shared.config import Settings

    c = Container(Settings.from_env(_settings_env(args)))
    c.open()
    try:
        user = c.users.create_system_admin(email=args.email, password=args.password)
    finally:
        c.close()
    log.info("created system admin %s (%s)", user.email, user.id)
    return 0


BENCHMARKS = [
    "extract",
    "search",
    "http",
    "coldstart",
    "ingest",
    "memory",
    "migration",
    "observability",
    "extracthttp",
    "noisy",
    "verify",
]


def cmd_bench(args: argparse.Namespace) -> int:
    """Run benchmarks from tests/perf (in a source checkout): each prints a table and writes
    tests/perf/results/NAME.json."""
    import importlib

    sys.path.insert(0, os.getcwd())
    names = BENCHMARKS if args.name == "all" else [args.name]
    for name in names:
        log.info("benchmark %s", name)
        module = importlib.import_module(f"tests.perf.bench_{name}")
        module.main(args.rest)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Retrieval quality through the HTTP API on the held-out test split (tests/quality; from
    a source checkout; needs the test PostgreSQL, DEEPLENS_TEST_ADMIN_URL). With
    ``--model REF``: fit that model's calibration on the dev set and store it."""
    import importlib

    sys.path.insert(0, os.getcwd())
    if args.model:
        import json

        from shared.bootstrap import Container
        from shared.calibration import calibrate_model
        from shared.config import Settings

        ds = importlib.import_module("tests.quality.photoset").build(args.faces)
        dev = [i for i, part in enumerate(ds.query_split) if part == "dev"]  # never test
        c = Container(Settings.from_env(_settings_env(args)))
        c.open()
        try:
            out = calibrate_model(
                c,
                args.model,
                ds.gallery,
                [ds.queries[i] for i in dev],
                [ds.query_target[i] for i in dev],
            )
        finally:
            c.close()
        sys.stdout.write(json.dumps(out) + "\n")
        return 0
    importlib.import_module("tests.quality.eval").main(args.rest)
    return 0


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

    from shared.client_cli import add_client_commands

    bench = sub.add_parser("bench", help="run benchmarks (tests/perf; from a source checkout)")
    bench.add_argument("name", choices=[*BENCHMARKS, "all"], nargs="?", default="all")
    bench.add_argument("rest", nargs=argparse.REMAINDER, help="options for the benchmark")
    bench.set_defaults(func=cmd_bench)

    ev = sub.add_parser(
        "eval", help="retrieval quality over HTTP, held-out test split (tests/quality)"
    )
    ev.add_argument("--model", help="fit and store this model's calibration (name:pooling:size)")
    ev.add_argument("--faces", type=int, default=200, help="face distractors (with --model)")
    ev.add_argument("--data-dir", type=Path)
    ev.add_argument("rest", nargs=argparse.REMAINDER, help="options for the evaluation")
    ev.set_defaults(func=cmd_eval)

    add_client_commands(sub)
    from shared.tenant_cli import add_tenant_commands

    add_tenant_commands(sub)
    from shared.models_cli import add_models_commands

    add_models_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from shared.logs import setup_logging

    setup_logging("deeplens", os.environ.get("DEEPLENS_LOG_FORMAT", "auto"), level=logging.INFO)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request is noise here
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
