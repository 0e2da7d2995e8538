"""The function processes and the local ingress run on uvloop unless told not to."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from shared.local.funcserve import fast_loop


@pytest.fixture
def policy() -> Iterator[None]:
    before = asyncio.get_event_loop_policy()
    yield
    asyncio.set_event_loop_policy(before)


def test_uvloop_serves_by_default_and_can_be_turned_off(policy: None) -> None:
    import uvloop

    assert fast_loop({"DEEPLENS_UVLOOP": "false"}) is False
    assert not isinstance(asyncio.get_event_loop_policy(), uvloop.EventLoopPolicy)
    assert fast_loop({}) is True

    async def loop_type() -> type:
        return type(asyncio.get_running_loop())

    assert asyncio.run(loop_type()) is uvloop.Loop


def test_a_connection_cancelled_at_shutdown_is_not_logged_as_an_error(
    policy: None, caplog: pytest.LogCaptureFixture
) -> None:
    assert fast_loop({})
    loop = asyncio.new_event_loop()
    try:
        loop.call_exception_handler({"message": "cb", "exception": asyncio.CancelledError()})
        assert not [r for r in caplog.records if r.name == "asyncio"]
        loop.call_exception_handler({"message": "real", "exception": RuntimeError("boom")})
        assert [r for r in caplog.records if r.name == "asyncio" and "real" in r.getMessage()]
    finally:
        loop.close()
