"""``deeplens up``, ``deeplens migrate`` and ``deeplens admin create``: the platform's own
commands (the local runtime itself lives in shared/local/)."""

from __future__ import annotations

import argparse
import logging
import os
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
    """Metrics in multiprocess mode (shared/metrics/): every process of the platform, the
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
    from shared.local.server import LocalServer
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
