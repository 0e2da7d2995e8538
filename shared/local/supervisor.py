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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from events.broker import HttpBroker, Replica
from shared.local.layout import Group, cores, layout
from shared.local.prepare import die_with_parent, spawn

log = logging.getLogger("deeplens.up")

STOP_GRACE = 6.0
START_WAIT = 30.0
BACKOFF_MIN, BACKOFF_MAX, BACKOFF_RESET = 0.5, 30.0, 60.0
# Database connections per process: the platform shares one server with everything else.
POOL_MAX = {"core": 8, "auth": 4}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    replica: Replica | None = None
    pass_fds: tuple[int, ...] = ()
    popen: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    backoff: float = BACKOFF_MIN
    restart_at: float | None = None
    restarts: int = 0
    port: int | None = None
    functions: tuple[str, ...] = field(default_factory=tuple)
    # Started once these are ready (or after START_WAIT): the public functions first, so
    # the platform answers sooner; one extract first, so the model is exported only once.
    after: list[Proc] = field(default_factory=list)
    ready_url: str = ""
    ready: bool = False

    def start(self) -> None:
        self.popen = subprocess.Popen(
            self.argv, env=self.env, pass_fds=self.pass_fds, preexec_fn=die_with_parent
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        self.set_ready(False)

    def set_ready(self, ready: bool) -> None:
        self.ready = ready
        if self.replica is not None:
            self.replica.ready = ready

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None


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
        # The model export of a first start overlaps the database's start and migrations.
        if self.prepare is None:
            self.prepare = spawn(env)
        if not settings.database_url:
            env["DEEPLENS_DATABASE_URL"] = embedded_database_url(settings.data_dir)
            self.embedded = True
            log.info("embedded PostgreSQL under %s", data_dir / "postgres")
        settings = Settings.from_env(env)
        url = env["DEEPLENS_DATABASE_URL"]
        migrate(url)
        if settings.env != "production":  # made once here, so no two processes race
            generate_dev_key(data_dir)
            dev_token(data_dir)
        listener = socket.socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(1024)
        listener.set_inheritable(True)
        self.listener = listener

        groups = layout(env)
        targets: dict[str, list[Replica]] = {}
        ports: dict[str, list[int]] = {}
        for g in groups:
            ports[g.name] = [free_port() for _ in range(g.replicas)]
        extract0 = f"http://127.0.0.1:{ports['extract'][0]}"
        for g in groups:
            replicas = []
            for i, p in enumerate(ports[g.name]):
                replica = Replica(f"http://127.0.0.1:{p}", g.concurrency)
                replicas.append(replica)
                name = g.name if g.replicas == 1 else f"{g.name}-{i + 1}"
                self.procs.append(
                    Proc(
                        name,
                        [sys.executable, "-m", "shared.local.funcserve"],
                        self._child_env(g, name, p, extract0),
                        replica=replica,
                        port=p,
                        ready_url=f"http://127.0.0.1:{p}/health/readiness",
                        functions=g.functions,
                    )
                )
            for fn in g.functions:
                targets[fn] = replicas
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
        # One replica of every group starts at once (the platform is ready when each function
        # has one); further replicas follow their group's first, which has by then exported
        # the ONNX model once for all of them.
        first: dict[tuple[str, ...], Proc] = {}
        for proc in self.procs:
            if proc.replica is None:
                continue
            if proc.functions in first:
                proc.after = [first[proc.functions]]
            else:
                first[proc.functions] = proc
        self.t_start = time.monotonic()
        for proc in self.procs:
            if not proc.after and "extract" not in proc.functions:
                proc.start()  # extract starts from _watch once the model is prepared
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

    def _child_env(self, g: Group, name: str, port: int, extract0: str) -> dict[str, str]:
        env = dict(self.env)
        env.update(
            {
                "FUNCTION_TARGET": g.target,
                "LISTEN_ADDRESS": f"127.0.0.1:{port}",
                "DEEPLENS_PROCESS": name,
                "DEEPLENS_BROKER": "local",  # publish = a durable row in PostgreSQL
                "DEEPLENS_BROKER_AUTOSTART": "0",
                "DEEPLENS_DB_POOL_MAX": str(POOL_MAX.get(g.name, 2)),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(g.env)
        if g.name != "extract":
            # Query-by-image outside extract asks the extract process (no torch elsewhere).
            env.setdefault("DEEPLENS_FEATURES__EXTRACT_URL", extract0)
        return env

    def _print_layout(self, data_dir: Path) -> None:
        lines = [
            f"DeepLens on http://{self.host}:{self.port} (data in {data_dir};"
            f" {cores()} cores; {'embedded' if self.embedded else 'external'} PostgreSQL)",
            f"  {'process':<16} {'pid':>7}  {'listen':<16} functions",
        ]
        for p in self.procs:
            listen = f"127.0.0.1:{p.port}" if p.replica else f"{self.host}:{self.port}"
            pid = p.pid or "(next)"
            what = ", ".join(p.functions) if p.functions else "routes from functions/routes.py"
            lines.append(f"  {p.name:<16} {pid:>7}  {listen:<16} {what}")
        lines.append(
            f"  {'supervisor':<16} {os.getpid():>7}  {'-':<16}"
            " PostgreSQL broker (CloudEvents over HTTP), sweeper tick"
        )
        from shared.logs import json_logs

        if json_logs(os.environ.get("DEEPLENS_LOG_FORMAT", "auto")):
            log.info("%s", "\n".join(lines))  # one JSON line, like everything else
        else:
            print("\n".join(lines), flush=True)  # noqa: T201 - what the user sees at start
        self._write_state(data_dir)

    def _write_state(self, data_dir: Path) -> None:
        """data_dir/run/processes.json: who is where (tests and benchmarks read it)."""
        state = {
            "supervisor": os.getpid(),
            "url": f"http://{self.host}:{self.port}",
            "processes": [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "port": p.port,
                    "functions": list(p.functions),
                    "restarts": p.restarts,
                }
                for p in self.procs
            ],
        }
        run = data_dir / "run"
        run.mkdir(exist_ok=True)
        tmp = run / "processes.json.tmp"
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(run / "processes.json")
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
                    _metrics_process_dead(p.pid)
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


def describe(state_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state_file.read_text())
    return data


def _metrics_process_dead(pid: int | None) -> None:
    """Drop a dead child's live gauges (pool in use, waiting) from the multiprocess metrics;
    its counters stay, as Prometheus expects of a restarted target."""
    if pid is None or not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
