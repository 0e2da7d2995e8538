"""THE process layout of ``deeplens up``: which functions share a process, how many replicas
each gets, and how many requests a replica takes at once (Knative's min/max scale and
containerConcurrency, in one place).

Why the groups:
- ``core`` owns the embedded vector engine (qdrant-edge is single-process: one writer holds
  its shards). Every function that reads or writes vectors lives there: images (duplicates,
  vector export, purge), search, index-vector, tenants (provisioning a tenant's space), admin
  (collections, tenant purge) and the sweeper. With ``DEEPLENS_VECTORS__BACKEND=qdrant`` (a
  Qdrant server) nothing forces the grouping; the Qdrant adapter is the multi-node answer.
- ``process-image`` and ``extract`` are the pipeline's CPU work: one replica per core each, so
  decoding and inference run on every core instead of convoying on one interpreter lock.
- everything else is one process per function, as on Knative.

Override the replica counts with ``DEEPLENS_SCALE="extract=4,process-image=2"``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from functions import FUNCTIONS


@dataclass(frozen=True)
class Group:
    name: str
    functions: tuple[str, ...]
    replicas: int = 1
    concurrency: int = 50  # event deliveries in flight per replica (containerConcurrency)
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def target(self) -> str:
        """FUNCTION_TARGET for the group (comma-separated for a group of functions)."""
        return ",".join(self.functions)


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def layout(env: Mapping[str, str] | None = None) -> list[Group]:
    from shared.config import Settings

    scale = _parse_scale(Settings.from_env(os.environ if env is None else env).scale)
    n = cores()
    groups = [
        Group(
            "core",
            ("images", "search", "index-vector", "tenants", "admin", "sweeper"),
            concurrency=32,
        ),
        Group("auth", ("auth",)),
        Group("web", ("web",)),
        Group("dead-letter", ("dead-letter",), concurrency=8),
        Group("process-image", ("process-image",), replicas=n, concurrency=2),
        # One inference thread per replica and one replica per core; a few deliveries in
        # flight keep it busy while the next image is read and decoded.
        Group(
            "extract",
            ("extract",),
            replicas=n,
            concurrency=4,
            env={"DEEPLENS_FEATURES__THREADS": "1"},
        ),
    ]
    out = []
    for g in groups:
        if g.name in scale:
            g = Group(g.name, g.functions, scale[g.name], g.concurrency, g.env)
        out.append(g)
    served = [f for g in out for f in g.functions]
    assert sorted(served) == sorted(FUNCTIONS), "every function is served exactly once"
    return out


def _parse_scale(text: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, _, value = part.partition("=")
        if not value.isdigit() or int(value) < 1:
            raise ValueError(f"DEEPLENS_SCALE: {part!r} is not name=replicas (replicas >= 1)")
        out[name.strip()] = int(value)
    return out


def group_of(function: str, groups: list[Group]) -> Group:
    for g in groups:
        if function in g.functions:
            return g
    raise KeyError(function)
