"""The tests' own helpers where they fail: a publish that never completes says where it stopped and why; a
management API that missed a call is asked again later, not given up for the rest of the run."""

import asyncio
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.support import broker, servers
from tests.support.events import enquiry_received


async def test_a_publish_that_cannot_connect_says_so_and_how_busy_the_thread_pool_was(
    amqp_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every thread of the loop's pool held: connecting to `localhost` cannot resolve the name.
    loop = asyncio.get_running_loop()
    release = threading.Event()
    pool_size = 32
    held = [loop.run_in_executor(None, release.wait) for _ in range(pool_size + 3)]
    monkeypatch.setattr(broker, "CONFIRM_SECONDS", 0.3)
    monkeypatch.setattr(broker, "PUBLISH_ATTEMPTS", 2)
    try:
        assert "localhost" in amqp_url
        with pytest.warns(UserWarning, match="confirmed no publish") as warned, pytest.raises(AssertionError) as failed:
            await broker.publish_events(amqp_url, [enquiry_received()])
    finally:
        release.set()
        await asyncio.gather(*held)
    message = str(failed.value)
    assert message.startswith("the broker confirmed no publish in 2 attempts (attempt 1: connecting, thread pool")
    assert "jobs waiting" in message
    assert str(warned[0].message) == message


def test_a_management_api_that_missed_a_call_is_asked_again_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    clock = [1000.0]

    def unreachable(request: Any, timeout: float) -> None:
        calls.append(request.full_url)
        raise urllib.error.URLError("connection refused")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(servers, "_api_answers", None)
    assert servers.management_api("GET", "/overview") is False
    assert servers.management_api("PUT", "/vhosts/x") is False  # not asked: rabbitmqctl for now
    assert not servers.api_available()
    assert len(calls) == 1
    clock[0] += servers.API_RETRY_SECONDS
    assert not servers.api_available()  # asked again
    assert len(calls) == 2
