"""``deeplens up``: a supervisor emulating the production topology on one machine.

The supervisor process owns the embedded PostgreSQL (when no database is configured), applies
migrations once, binds the public port, and starts:
- one process per function group of shared/local/layout.py, each func-python's own server
  around ``function.new()`` (shared/local/funcserve.py) on a 127.0.0.1 port of its own;
- the ingress process(es) on the public port (shared/local/ingress.py);
- in its own threads, the PostgreSQL broker delivering binary-mode CloudEvents over HTTP to
  the function processes (events/broker.py HttpBroker), with the sweeper's tick.

A process that dies is restarted with exponential backoff (0.5 s doubling to 30 s, reset
after 60 s up); its in-flight deliveries fail and are retried, and deliveries wait in the
table while no replica of their function is ready. SIGTERM or SIGINT stops every process
(SIGTERM, then SIGKILL after 6 s), the broker, and the embedded PostgreSQL; children also get
SIGKILL from the kernel if the supervisor itself is killed (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from events.broker import HttpBroker
from shared.local.gate import open_gate
from shared.local.layout import layout
from shared.local.prepare import spawn
from shared.local.procs import (
    BACKOFF_MAX,
    BACKOFF_MIN,
    BACKOFF_RESET,
    START_WAIT,
    STOP_GRACE,
    Proc,
    function_procs,
    metrics_process_dead,
    print_layout,
    write_state,
)

log = logging.getLogger("deeplens.up")


class Supervisor:
    def __init__(
        self,
        env: Mapping[str, str],
        host: str,
        port: int,
        *,
        ingress: int = 1,
        prepare: subprocess.Popen[bytes] | None = None,
    ):
        self.env, self.host, self.port, self.ingress_count = dict(env), host, port, ingress
        self.procs: list[Proc] = []
        self.stopping = threading.Event()
        self.broker: HttpBroker | None = None
        self.embedded = False
        self.http = httpx.Client(timeout=0.5)
        self.prepare = prepare

    # --- start ------------------------------------------------------------------------------
    def run(self) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        try:
            self._start()
            self._watch()
        finally:
            self._stop()
        return 0

    def _start(self) -> None:
        from events.auth import dev_token
        from shared.auth.keys import generate_dev_key
        from shared.config import Settings
        from shared.db import Database, migrate
        from shared.embedded import embedded_database_url

        env = self.env
        settings = Settings.from_env(env)
        data_dir = settings.data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        env["DEEPLENS_DATA_DIR"] = str(data_dir)
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(1024)
        listener.set_inheritable(True)
        self.listener = listener

        # The model export of a first start overlaps the database's start and migrations,
        # and so do the function processes' imports: they wait at the start gate (gate.py).
        if self.prepare is None:
            self.prepare = spawn(env)
        self.gate = data_dir / "run" / f"start-{os.getpid()}.json"
        self.gate.unlink(missing_ok=True)
        groups = layout(env)
        fn_procs, targets, ports = function_procs(env, groups, self.gate)
        self.procs += fn_procs
        self.t_start = time.monotonic()
        for proc in fn_procs:
            if not proc.after and "extract" not in proc.functions:
                proc.start()  # extract starts from _watch once the model is prepared
        if not settings.database_url:
            env["DEEPLENS_DATABASE_URL"] = embedded_database_url(settings.data_dir)
            self.embedded = True
            log.info("embedded PostgreSQL under %s", data_dir / "postgres")
        settings = self.settings = Settings.from_env(env)
        url = env["DEEPLENS_DATABASE_URL"]
        migrate(url)
        if settings.env != "production":  # made once here, so no two processes race
            generate_dev_key(data_dir)
            dev_token(data_dir)
        open_gate(self.gate, {"DEEPLENS_DATABASE_URL": url})
        backends = {
            fn: [f"127.0.0.1:{p}" for p in ports[g.name]] for g in groups for fn in g.functions
        }
        ingress_env = {**env, "DEEPLENS_INGRESS_BACKENDS": json.dumps(backends)}
        for i in range(self.ingress_count):
            self.procs.append(
                Proc(
                    "ingress" if self.ingress_count == 1 else f"ingress-{i + 1}",
                    [
                        sys.executable,
                        "-m",
                        "shared.local.ingress",
                        "--fd",
                        str(listener.fileno()),
                    ],
                    ingress_env,
                    pass_fds=(listener.fileno(),),
                    port=self.port,
                    ready_url=f"http://{self._connect_host()}:{self.port}/health/readiness",
                )
            )
        for proc in self.procs:
            if proc.replica is None:
                proc.start()
        db = Database(url, min_size=1, max_size=3)
        db.open()
        self.db = db
        self.broker = HttpBroker(
            db,
            settings,
            targets,
            lease_seconds=settings.broker_lease_seconds,
            sweep_every=settings.sweeper_interval_seconds,
        )
        self.broker.start(reclaim=True)
        self._print_layout(data_dir)

    def _connect_host(self) -> str:
        if self.host in ("0.0.0.0", ""):
            return "127.0.0.1"
        return f"[{self.host}]" if ":" in self.host else self.host

    def _print_layout(self, data_dir: Path) -> None:
        print_layout(
            self.procs,
            self.host,
            self.port,
            data_dir,
            embedded=self.embedded,
            log_format=self.settings.log_format,
        )
        self._write_state(data_dir)

    def _write_state(self, data_dir: Path) -> None:
        write_state(self.procs, self.host, self.port, data_dir)
        self.state_dir = data_dir

    # --- watch ------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self.stopping.is_set():
            now = time.monotonic()
            changed = False
            for p in self.procs:
                if p.popen is None:
                    waited = now - self.t_start > START_WAIT
                    preparing = self.prepare is not None and self.prepare.poll() is None
                    if "extract" in p.functions and preparing and not waited:
                        continue  # the model is being prepared
                    if waited or all(d.ready for d in p.after):
                        p.start()
                        changed = True
                    continue
                code = p.popen.poll()
                if code is not None and p.restart_at is None:
                    p.set_ready(False)
                    metrics_process_dead(p.pid)
                    if now - p.started_at > BACKOFF_RESET:
                        p.backoff = BACKOFF_MIN
                    p.restart_at = now + p.backoff
                    log.warning(
                        "%s (pid %s) exited with %s; restarting in %.1fs",
                        p.name,
                        p.pid,
                        code,
                        p.backoff,
                    )
                    p.backoff = min(BACKOFF_MAX, p.backoff * 2)
                elif code is not None and p.restart_at is not None and now >= p.restart_at:
                    p.start()
                    p.restarts += 1
                    changed = True
                    log.info("%s restarted (pid %s)", p.name, p.pid)
                elif code is None and not (p.replica.ready if p.replica else p.ready):
                    p.set_ready(self._ready(p))
                    if p.ready:
                        log.info("%s ready", p.name)
            if changed:
                self._write_state(self.state_dir)
            self.stopping.wait(0.1)

    def _ready(self, p: Proc) -> bool:
        try:
            return self.http.get(p.ready_url).status_code == 200
        except httpx.HTTPError:
            return False

    # --- stop -------------------------------------------------------------------------------
    def _stop(self) -> None:
        log.info("stopping")
        live = [p.popen for p in self.procs if p.popen is not None and p.popen.poll() is None]
        if self.prepare is not None and self.prepare.poll() is None:
            live.append(self.prepare)
        for popen in live:  # ingress first: no new requests
            try:
                popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.broker is not None:
            self.broker._stop.set()
        deadline = time.monotonic() + STOP_GRACE
        for popen in live:
            try:
                popen.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("pid %s did not stop in %.0fs; killing it", popen.pid, STOP_GRACE)
                popen.kill()
                popen.wait()
        if self.broker is not None:
            self.broker.stop()
            self.db.close()
        if hasattr(self, "listener"):
            self.listener.close()
        if hasattr(self, "gate"):
            self.gate.unlink(missing_ok=True)
        self.http.close()
        if self.embedded:
            from shared.embedded import stop_embedded

            stop_embedded()
        log.info("stopped")


def run_up(
    env: Mapping[str, str],
    host: str,
    port: int,
    ingress: int = 1,
    prepare: subprocess.Popen[bytes] | None = None,
) -> int:
    return Supervisor(env, host, port, ingress=ingress, prepare=prepare).run()
