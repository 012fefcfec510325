"""A running system per fault test (fresh vhost, database and inbox)."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.faults import MakeSystem, System
from tests.support.servers import Inbox


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


# The whole fault suite must stay under ten minutes (setup and teardown included): a
# slower run fails, so a fault test that starts to hang cannot quietly eat CI's time.
SUITE_LIMIT_SECONDS = 600.0
_spent: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.nodeid.startswith("tests/faults/"):
        _spent[report.nodeid] = _spent.get(report.nodeid, 0.0) + report.duration


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _spent:
        total = sum(_spent.values())
        terminalreporter.write_line(
            f"fault suite: {len(_spent)} tests in {total:.0f} s (limit {SUITE_LIMIT_SECONDS:.0f} s)",
            red=total > SUITE_LIMIT_SECONDS,
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if sum(_spent.values()) > SUITE_LIMIT_SECONDS and session.exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
