"""Fixtures with real servers: RabbitMQ (a fresh vhost per test), SecantusDB, an aiosmtpd inbox."""

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from pydantic import AmqpDsn, MongoDsn
from pymongo import AsyncMongoClient

from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.servers import Inbox, rabbitmq_vhost, secantus_server, smtp_server

STAFF = ("ops@agency.example", "sales@agency.example")


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
def intake_settings(amqp_url: str) -> IntakeSettings:
    return IntakeSettings(environment="test", amqp_url=AmqpDsn(amqp_url), publish_timeout_seconds=2.0)


@pytest.fixture
def agreements_settings(amqp_url: str, mongo_url: str, mongo_db: str) -> AgreementsSettings:
    return AgreementsSettings(
        environment="test", amqp_url=AmqpDsn(amqp_url), mongodb_url=MongoDsn(mongo_url), mongodb_db=mongo_db
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
    )
