"""The processes ``deeplens up`` supervises (shared/local/supervisor.py): one :class:`Proc`
per child with its restart backoff, the start banner, and data_dir/run/processes.json (who is
where: tests and benchmarks read it)."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from events.broker import Replica
from shared.config import metrics_multiprocess_dir
from shared.local.layout import Group, cores
from shared.local.prepare import die_with_parent

log = logging.getLogger("deeplens.up")

STOP_GRACE = 6.0
START_WAIT = 30.0
BACKOFF_MIN, BACKOFF_MAX, BACKOFF_RESET = 0.5, 30.0, 60.0


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


# Database connections per process: the platform shares one server with everything else.
POOL_MAX = {"core": 8, "auth": 4}


def child_env(
    base: Mapping[str, str], g: Group, name: str, port: int, extract0: str
) -> dict[str, str]:
    """A function process's environment: its FUNCTION_TARGET and address, and the local
    broker's publishing without its delivery (the supervisor delivers)."""
    env = dict(base)
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


def function_procs(
    env: dict[str, str], groups: list[Group], gate: Path
) -> tuple[list[Proc], dict[str, list[Replica]], dict[str, list[int]]]:
    """A :class:`Proc` per replica of every group, each on a port of its own and waiting at
    ``gate`` once imported; the replicas by function (the broker's targets); the ports by
    group. One replica of every group starts at once (the platform is ready when each
    function has one); further replicas follow their group's first, which has by then
    exported the ONNX model once for all of them."""
    from shared.local.gate import GATE_VARIABLE

    procs: list[Proc] = []
    targets: dict[str, list[Replica]] = {}
    ports = {g.name: [free_port() for _ in range(g.replicas)] for g in groups}
    extract0 = f"http://127.0.0.1:{ports['extract'][0]}"
    for g in groups:
        replicas = []
        for i, p in enumerate(ports[g.name]):
            replica = Replica(f"http://127.0.0.1:{p}", g.concurrency)
            replicas.append(replica)
            name = g.name if g.replicas == 1 else f"{g.name}-{i + 1}"
            proc = Proc(
                name,
                [sys.executable, "-m", "shared.local.funcserve"],
                {**child_env(env, g, name, p, extract0), GATE_VARIABLE: str(gate)},
                replica=replica,
                port=p,
                ready_url=f"http://127.0.0.1:{p}/health/readiness",
                functions=g.functions,
            )
            if i > 0:
                proc.after = [procs[-i]]
            procs.append(proc)
        for fn in g.functions:
            targets[fn] = replicas
    return procs, targets, ports


def print_layout(
    procs: list[Proc], host: str, port: int, data_dir: Path, *, embedded: bool, log_format: str
) -> None:
    """The start banner: every process, its pid, where it listens and what it serves."""
    lines = [
        f"DeepLens on http://{host}:{port} (data in {data_dir};"
        f" {cores()} cores; {'embedded' if embedded else 'external'} PostgreSQL)",
        f"  {'process':<16} {'pid':>7}  {'listen':<16} functions",
    ]
    for p in procs:
        listen = f"127.0.0.1:{p.port}" if p.replica else f"{host}:{port}"
        pid = p.pid or "(next)"
        what = ", ".join(p.functions) if p.functions else "routes from functions/routes.py"
        lines.append(f"  {p.name:<16} {pid:>7}  {listen:<16} {what}")
    lines.append(
        f"  {'supervisor':<16} {os.getpid():>7}  {'-':<16}"
        " PostgreSQL broker (CloudEvents over HTTP), sweeper tick"
    )
    from shared.logs import json_logs

    if json_logs(log_format):
        log.info("%s", "\n".join(lines))  # one JSON line, like everything else
    else:
        print("\n".join(lines), flush=True)  # noqa: T201 - what the user sees at start


def write_state(procs: list[Proc], host: str, port: int, data_dir: Path) -> None:
    """data_dir/run/processes.json: who is where (tests and benchmarks read it)."""
    state = {
        "supervisor": os.getpid(),
        "url": f"http://{host}:{port}",
        "processes": [
            {
                "name": p.name,
                "pid": p.pid,
                "port": p.port,
                "functions": list(p.functions),
                "restarts": p.restarts,
            }
            for p in procs
        ],
    }
    run = data_dir / "run"
    run.mkdir(exist_ok=True)
    tmp = run / "processes.json.tmp"
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(run / "processes.json")


def describe(state_file: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(state_file.read_text())
    return data


def metrics_process_dead(pid: int | None) -> None:
    """Drop a dead child's live gauges (pool in use, waiting) from the multiprocess metrics;
    its counters stay, as Prometheus expects of a restarted target."""
    if pid is None or not metrics_multiprocess_dir():
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
