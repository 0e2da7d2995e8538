"""What a search answers: its results, which space answered, and (for benchmarks and the
eval) the time spent per stage of search by image."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

from shared.local_features import Region


@dataclass(frozen=True)
class Result:
    image_id: uuid.UUID
    similarity: float
    filename: str
    uploaded_at: str
    thumbnail_url: str
    verified: bool = False
    inliers: int = 0
    region: Region | None = None  # the part of this image that the query shows
    query_region: Region | None = None  # where this image appears inside the query


@dataclass(frozen=True)
class Answered:
    """Which space answered a search (every result comes from it) and on what scale."""

    space: str
    model: str
    calibrated: bool


@dataclass
class Stages:
    """Milliseconds spent per stage of search by image (benchmarks and the eval read it)."""

    ms: dict[str, float] = field(default_factory=dict)

    def lap(self, name: str, since: float) -> float:
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0.0) + (now - since) * 1000
        return now
