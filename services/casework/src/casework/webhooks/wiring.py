"""The outbound webhooks as the service runs them: the store, the sender and the delivery loop, opened in the
lifespan (the console finds them as ``app.state.adapters.outbound``)."""

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from casework.access import StaffAccess
from casework.settings import CaseworkSettings
from casework.webhooks.delivery import DeliveryLoop, WebhookSender
from casework.webhooks.endpoints import PLAIN_HTTP_ENVIRONMENTS, Endpoint
from casework.webhooks.store import MongoWebhooks


class OutboundWebhooks:
    store: MongoWebhooks
    loop: DeliveryLoop

    def __init__(self, settings: CaseworkSettings, access: StaffAccess) -> None:
        self.settings = settings
        self._access = access
        public_only = settings.environment not in PLAIN_HTTP_ENVIRONMENTS
        self.sender = WebhookSender(settings.webhook_timeout_seconds, public_only=public_only)
        self._running: asyncio.Task[None] | None = None

    @property
    def grace(self) -> timedelta:
        return timedelta(hours=self.settings.webhook_secret_grace_hours)

    def delivery_loop(self) -> DeliveryLoop:
        """A loop over this store and sender (the service runs one; a test may run more, as replicas would)."""
        settings = self.settings
        return DeliveryLoop(
            self.store,
            self.sender,
            lease=timedelta(seconds=settings.webhook_lease_seconds),
            poll_seconds=settings.webhook_poll_seconds,
            retry_scale=settings.webhook_retry_scale,
            on_disabled=self._audit_disabled,
        )

    async def open(self, mongo: AsyncMongoClient[dict[str, Any]]) -> None:
        self.store = MongoWebhooks(mongo, self.settings.mongodb_db)
        await self.store.ensure_indexes()
        await self.sender.open()
        self.loop = self.delivery_loop()
        self._running = asyncio.create_task(self.loop.run())

    async def close(self) -> None:
        if self._running is not None:
            self._running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._running
            self._running = None
        await self.sender.close()

    async def _audit_disabled(self, endpoint: Endpoint, reason: str) -> None:
        await self._access.audit.record(
            actor=None, action="webhook_endpoint_disabled", subject=endpoint.id, from_address=None,
            detail={"reason": reason},
        )  # fmt: skip
