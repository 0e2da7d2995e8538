"""The seed's tiers and their limits. Limits are copied onto the tenant row at creation, so an
operator can raise one tenant's limit without changing its tier."""

from __future__ import annotations

from dataclasses import dataclass

GB = 1024**3


@dataclass(frozen=True)
class Tier:
    name: str
    max_storage_bytes: int
    max_users: int
    max_api_calls_per_day: int


TIERS: dict[str, Tier] = {
    "Free": Tier("Free", 1 * GB, 5, 1_000),
    "Professional": Tier("Professional", 50 * GB, 50, 50_000),
    "Enterprise": Tier("Enterprise", 500 * GB, 1000, 1_000_000),
}
