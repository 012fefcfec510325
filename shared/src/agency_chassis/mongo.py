"""A service's MongoDB client, with the write guarantees every service uses, opened and closed by its adapters."""

from typing import Any

from pymongo import AsyncMongoClient, monitoring

from agency_chassis.metrics import DATABASE_COMMANDS
from agency_chassis.settings import MongoSettings

Mongo = AsyncMongoClient[dict[str, Any]]


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
