"""The status page's arithmetic: histogram quantiles as Prometheus computes them, and counter
deltas over a window that is reported, never stretched."""

from __future__ import annotations

import math

from shared.status import StatusService, quantile, total


def test_quantile_interpolates_within_the_bucket() -> None:
    buckets = [(0.1, 0.0), (0.25, 50.0), (0.5, 100.0), (math.inf, 100.0)]
    assert quantile(buckets, 0.5) == 0.25
    assert abs((quantile(buckets, 0.25) or 0) - 0.175) < 1e-9
    assert quantile(buckets, 1.0) == 0.5
    assert quantile([(0.1, 0.0), (math.inf, 0.0)], 0.5) is None
    # everything above the last finite bound: the bound, as histogram_quantile answers
    assert quantile([(0.1, 0.0), (math.inf, 4.0)], 0.5) == 0.1


def test_window_is_the_history_actually_held() -> None:
    svc = StatusService(None)
    key = ("deeplens_upload_to_indexed_seconds_count", ())
    svc.history.append((svc.started + 1, {key: 3.0}))
    now = svc.started + 100
    t, old = svc._before(now, 60)
    assert t == svc.started + 1 and total(old, key[0]) == 3.0
    t, old = svc._before(now, 3600)  # no sample an hour old: since the process started
    assert t == svc.started and old == {}
