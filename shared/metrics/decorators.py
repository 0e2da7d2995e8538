"""Decorators shared/ puts on a service method (one line at each call site): sign-in and
refresh outcomes, quota refusals, pipeline stages, search latency."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from shared.metrics.instruments import (
    LOGIN_RESULTS,
    LOGINS,
    QUOTA_KINDS,
    QUOTA_REFUSALS,
    REFRESH_REUSE,
    REFRESHES,
    SEARCH_DURATION,
    SEARCH_RESULTS,
    STAGE_DURATION,
    STAGES,
    THROTTLED,
    _state,
)

log = logging.getLogger("deeplens.pipeline")
P = ParamSpec("P")
R = TypeVar("R")


def _code(exc: BaseException) -> str | None:
    code = getattr(exc, "code", None)
    return code if isinstance(code, str) else None


def counts_logins(fn: Callable[P, R]) -> Callable[P, R]:
    """Count a sign-in method's outcome by result (success, failure, throttled, …)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            if _state["on"]:
                code = _code(exc)
                LOGINS.labels(LOGIN_RESULTS.get(code or "", "error")).inc()
                if code == "login_throttled":
                    THROTTLED.inc()
            raise
        if _state["on"]:
            LOGINS.labels("success").inc()
        return out

    return wrapper


def counts_refreshes(fn: Callable[P, R]) -> Callable[P, R]:
    """Count refresh-token rotations; a reused token is counted apart (a leak signal)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:
            if _state["on"]:
                reused = _code(exc) == "refresh_token_reused"
                REFRESHES.labels("reused" if reused else "failure").inc()
                if reused:
                    REFRESH_REUSE.inc()
            raise
        if _state["on"]:
            REFRESHES.labels("success").inc()
        return out

    return wrapper


def counts_quota(fn: Callable[P, R]) -> Callable[P, R]:
    """Count quota refusals (api_calls, storage, users) raised by the wrapped check."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            kind = QUOTA_KINDS.get(_code(exc) or "")
            if kind is not None and _state["on"]:
                QUOTA_REFUSALS.labels(kind).inc()
            raise

    return wrapper


def stage(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Time a pipeline stage and count its outcome: ok (replied with the next event),
    failed (replied image.failed), skipped (nothing to do: a redelivery or a deleted image),
    error (raised; the broker retries)."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            t0 = time.perf_counter()
            outcome = "error"
            try:
                out = fn(*args, **kwargs)
                event_type = getattr(out, "type", None)
                if out is None:
                    outcome = "skipped"
                elif isinstance(event_type, str) and event_type.endswith(".image.failed.v1"):
                    outcome = "failed"
                else:
                    outcome = "ok"
                return out
            finally:
                seconds = time.perf_counter() - t0
                if _state["on"]:
                    STAGE_DURATION.labels(name).observe(seconds)
                    STAGES.labels(name, outcome).inc()
                # One line per stage run; the event and tenant ids come from the log context.
                log.info("%s %s in %.1f ms", name, outcome, seconds * 1000)

        return wrapper

    return decorate


def timed_search(kind: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Search latency by kind (image: embed + query; vector: query); result counts."""

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if not _state["on"]:
                return fn(*args, **kwargs)
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            SEARCH_DURATION.labels(kind).observe(time.perf_counter() - t0)
            results = out[0] if isinstance(out, tuple) else out  # (results, which space)
            if isinstance(results, list):
                SEARCH_RESULTS.observe(len(results))
            return out

        return wrapper

    return decorate
