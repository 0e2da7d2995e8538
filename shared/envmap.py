"""Settings from a mapping of environment variables (shared/config.py's ``Settings.from_env``):
``DEEPLENS_A__B=v`` → ``{"a": {"b": "v"}}``, and the user's cache directory. Pure functions
of the mapping given; reading the process environment stays in shared/config.py."""

from __future__ import annotations

from collections.abc import Mapping


def user_cache(env: Mapping[str, str]) -> str | None:
    """deeplens/models under the user's cache directory, from the environment given."""
    base = env.get("XDG_CACHE_HOME") or (env["HOME"] + "/.cache" if env.get("HOME") else None)
    return base + "/deeplens/models" if base else None


# Variables without the DEEPLENS_ prefix that Settings reads (set by Knative / func-python).
PLATFORM_VARIABLES = ("FUNCTION_TARGET", "K_SINK")


def nested_from_env(env: Mapping[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in env.items():
        if not key.startswith("DEEPLENS_"):
            continue
        parts = key[len("DEEPLENS_") :].lower().split("__")
        node: dict[str, object] = out
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            node[parts[-1]] = value
    return out
