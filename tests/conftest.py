"""Fixtures with real servers (RabbitMQ, a fresh vhost per test; SecantusDB; an SMTP inbox), and the suites' markers.

Every test gets one marker from its folder: ``tests/unit`` -> ``unit`` (no server at all:
``make check`` runs them), ``tests/e2e`` -> ``e2e``, ``tests/faults`` -> ``faults``,
anything else -> ``integration`` (real servers).
"""

import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import AmqpDsn, MongoDsn, SecretStr
from pymongo import AsyncMongoClient

from agency_chassis.logs import ServiceLogHandler
from agreements.settings import AgreementsSettings
from casework.settings import CaseworkSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.casework import AGREEMENTS_TOKEN
from tests.support.data import STAFF
from tests.support.servers import (
    Inbox,
    free_port,
    management_url,
    rabbitmq_vhost,
    remove_abandoned_vhosts,
    secantus_server,
    smtp_server,
)

TESTS = Path(__file__).parent
FOLDER_SUITES = ("unit", "e2e", "faults")
# The fixtures that reach a real server. Every other server fixture (mongo, the *_settings)
# depends on one of them, and pytest lists a test's fixtures with their dependencies.
SERVER_FIXTURES = frozenset({"amqp_url", "mongo_url", "smtp_port"})


def suite_of(path: Path) -> str:
    """The suite a test file belongs to, by its folder under tests/."""
    try:
        folder = path.relative_to(TESTS).parts[0]
    except ValueError:
        return "integration"
    return folder if folder in FOLDER_SUITES else "integration"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Once per run (not in each xdist worker): the vhosts a killed run left behind are deleted."""
    if hasattr(session.config, "workerinput") or session.config.option.markexpr == "unit":
        return
    if removed := remove_abandoned_vhosts():
        logging.getLogger("tests").warning("deleted %d test vhosts left by killed runs", len(removed))


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(suite_of(item.path))


@pytest.hookimpl(tryfirst=True)  # before any fixture is set up
def pytest_runtest_setup(item: pytest.Item) -> None:
    """A unit test promises to need no server: requesting one, even through another fixture, fails it."""
    if item.get_closest_marker("unit") is None:
        return
    servers = sorted(SERVER_FIXTURES.intersection(getattr(item, "fixturenames", ())))
    if servers:
        pytest.fail(
            f"{item.nodeid} is a unit test (tests/unit) but needs a real server through the fixture(s) "
            f"{', '.join(servers)}: give it a hand-written fake, or move it out of tests/unit",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def mongo_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with secantus_server(tmp_path_factory.mktemp("secantus")) as url:
        yield url


@pytest.fixture
def amqp_url() -> Iterator[str]:
    with rabbitmq_vhost() as url:
        yield url


@pytest.fixture
def mongo_db() -> str:
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def mongo(mongo_url: str) -> AsyncIterator[AsyncMongoClient[dict[str, Any]]]:
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(mongo_url, tz_aware=True)
    yield client
    await client.close()


@pytest.fixture
def inbox() -> Inbox:
    return Inbox()


@pytest.fixture
async def smtp_port(inbox: Inbox) -> AsyncIterator[int]:
    async with smtp_server(inbox) as port:
        yield port


@pytest.fixture
def intake_settings(amqp_url: str, mongo_url: str, mongo_db: str) -> IntakeSettings:
    # The CAPTCHA is off for the tests not about it (tests/intake/test_captcha.py turns it on).
    return IntakeSettings(
        environment="test",
        amqp_url=AmqpDsn(amqp_url),
        mongodb_url=MongoDsn(mongo_url),
        mongodb_db=mongo_db,
        publish_timeout_seconds=2.0,
        captcha="off",
        rabbitmq_management_url=management_url(),
    )


@pytest.fixture
def agreements_settings(amqp_url: str, mongo_url: str, mongo_db: str) -> AgreementsSettings:
    return AgreementsSettings(
        environment="test",
        amqp_url=AmqpDsn(amqp_url),
        mongodb_url=MongoDsn(mongo_url),
        mongodb_db=mongo_db,
        rabbitmq_management_url=management_url(),
    )


@pytest.fixture
def notifications_settings(amqp_url: str, smtp_port: int, mongo_url: str, mongo_db: str) -> NotificationsSettings:
    return NotificationsSettings(
        environment="test",
        amqp_url=AmqpDsn(amqp_url),
        mongodb_url=MongoDsn(mongo_url),
        mongodb_db=mongo_db,
        retry_base_seconds=0.2,
        retry_max_seconds=1.0,
        max_attempts=4,
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        staff_emails=list(STAFF),
        mail_from="WeChat Agency <no-reply@agency.example>",
        rabbitmq_management_url=management_url(),
    )


@pytest.fixture
def casework_settings(amqp_url: str, mongo_url: str, mongo_db: str) -> CaseworkSettings:
    # agreements is not running unless a test starts it (then it points agreements_url at it): a port nobody
    # listens on, so the console's "agreements is unreachable" paths are the default.
    return CaseworkSettings(
        environment="test",
        amqp_url=AmqpDsn(amqp_url),
        mongodb_url=MongoDsn(mongo_url),
        mongodb_db=mongo_db,
        rabbitmq_management_url=management_url(),
        agreements_url=f"http://127.0.0.1:{free_port()}",
        agreements_api_token=SecretStr(AGREEMENTS_TOKEN),
    )


@pytest.fixture
def restored_logging() -> Iterator[None]:
    """Put the root logger back as it was: these tests point the service handler at a buffer."""
    root = logging.getLogger()
    ours, level = [h for h in root.handlers if isinstance(h, ServiceLogHandler)], root.level
    access = logging.getLogger("uvicorn.access")
    access_propagates = access.propagate
    yield
    access.propagate = access_propagates
    for handler in root.handlers[:]:
        if isinstance(handler, ServiceLogHandler):
            root.removeHandler(handler)
    for handler in ours:
        root.addHandler(handler)
    root.setLevel(level)
