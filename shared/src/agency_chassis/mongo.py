"""A service's MongoDB client, with the write guarantees every service uses, opened and closed by its adapters."""

from typing import Any

from pymongo import AsyncMongoClient, monitoring
from pymongo.errors import BulkWriteError

from agency_chassis.metrics import DATABASE_COMMANDS
from agency_chassis.settings import MongoSettings

Mongo = AsyncMongoClient[dict[str, Any]]
# MongoDB's error code for a unique index violation.
DUPLICATE_KEY = 11000


def duplicate_keys(exc: BulkWriteError) -> list[int]:
    """The positions a batched write refused as duplicates, in order; re-raises ``exc`` if it says anything else.

    A write-concern error (the write may not be durable: a primary stepping down) or any other
    write error is not a duplicate, and neither is a failure that names no write: all of those
    must fail the batch, never pass for "stored before"."""
    errors = exc.details.get("writeErrors") or []
    if exc.details.get("writeConcernErrors") or not errors or any(e.get("code") != DUPLICATE_KEY for e in errors):
        raise exc
    return sorted(int(error["index"]) for error in errors)


class CommandCounter(monitoring.CommandListener):
    """Counts the commands sent (``wechat_mongodb_commands_total``): the round trips each message costs."""

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        DATABASE_COMMANDS.labels(event.command_name).inc()

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def mongo_client(settings: MongoSettings) -> Mongo:
    """A client with the services' write guarantees; it connects on first use (make it in a lifespan)."""
    return AsyncMongoClient(
        str(settings.mongodb_url), event_listeners=[CommandCounter()], **settings.mongo_client_options()
    )


class MongoConnection:
    """A service's MongoDB client: made by ``open`` in the lifespan, closed by ``close``, and its readiness."""

    client: Mongo

    def open(self, settings: MongoSettings) -> Mongo:
        self.client = mongo_client(settings)
        return self.client

    async def close(self) -> None:
        await self.client.close()

    async def ready(self) -> bool:
        """Readiness: the database answers a ping (not ready before ``open``)."""
        await self.client.admin.command("ping")
        return True
