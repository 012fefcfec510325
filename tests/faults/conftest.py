"""A running system per fault test (fresh vhost, database and inbox)."""

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from tests.faults.harness import System
from tests.support.servers import Inbox

MakeSystem = Callable[..., Awaitable[System]]


@pytest.fixture
async def make_system(amqp_url: str, tmp_path: Path, smtp_port: int, inbox: Inbox) -> AsyncIterator[MakeSystem]:
    started: list[System] = []

    async def make(**settings: str) -> System:
        system = System(amqp_url, tmp_path, smtp_port, inbox, **settings)
        started.append(system)
        await system.start()
        return system

    yield make
    for system in started:
        await system.stop()


@pytest.fixture
async def system(make_system: MakeSystem) -> System:
    return await make_system()
