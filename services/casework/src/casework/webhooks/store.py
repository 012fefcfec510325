"""Endpoints (``casework_webhook_endpoints``) and deliveries (``casework_webhook_deliveries``, one per event and
endpoint) in MongoDB. A delivery is claimed by a compare-and-set on its ``_id``: its due time moves a lease ahead
and it carries the claimer's token, so two replicas never send it at once."""

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient

from casework.webhooks.endpoints import Endpoint, aware, secret_document
from casework.webhooks.events import WebhookEventType

ENDPOINTS = "casework_webhook_endpoints"
DELIVERIES = "casework_webhook_deliveries"
# A delivery keeps its last attempts (a replayed one may have many).
MAX_ATTEMPTS_KEPT = 50
DeliveryState = Literal["pending", "delivered", "failed", "cancelled"]


@dataclass(frozen=True)
class AttemptRecord:
    """One request to the endpoint: when, its answer (or the error), how long it took, what it said (truncated)."""

    at: datetime
    number: int
    duration_ms: int
    status_code: int | None = None
    error: str | None = None
    response: str | None = None
    replay: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Delivery:
    id: str
    endpoint_id: str
    message_id: str
    event_type: WebhookEventType
    body: str
    state: DeliveryState
    created_at: datetime
    next_attempt_at: datetime
    # Retries made since the delivery was recorded or replayed (indexes the retry schedule).
    retries: int = 0
    lease: str | None = None
    subject: str | None = None  # the case id, for the console
    # Replayed from the console and not attempted since.
    replaying: bool = False
    attempts: list[AttemptRecord] = field(default_factory=list)

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "Delivery":
        return cls(
            id=document["_id"],
            endpoint_id=document["endpoint_id"],
            message_id=document["message_id"],
            event_type=document["event_type"],
            body=document["body"],
            state=document["state"],
            created_at=aware(document["created_at"]),
            next_attempt_at=aware(document["next_attempt_at"]),
            retries=int(document.get("retries", 0)),
            lease=document.get("lease"),
            subject=document.get("subject"),
            replaying=bool(document.get("replaying", False)),
            attempts=[AttemptRecord(**{**item, "at": aware(item["at"])}) for item in document.get("attempts", [])],
        )


def delivery_id(message_id: str, endpoint_id: str) -> str:
    return f"{message_id}:{endpoint_id}"


class MongoWebhooks:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._endpoints = client[db][ENDPOINTS]
        self._deliveries = client[db][DELIVERIES]

    async def ensure_indexes(self) -> None:
        await self._deliveries.create_index([("state", ASCENDING), ("next_attempt_at", ASCENDING)])
        await self._deliveries.create_index([("endpoint_id", ASCENDING), ("created_at", DESCENDING)])

    # Endpoints

    async def endpoints(self) -> list[Endpoint]:
        return [Endpoint.from_document(doc) async for doc in self._endpoints.find({}).sort("created_at", ASCENDING)]

    async def endpoint(self, endpoint_id: str) -> Endpoint | None:
        document = await self._endpoints.find_one({"_id": endpoint_id})
        return Endpoint.from_document(document) if document else None

    async def insert_endpoint(self, endpoint: Endpoint) -> None:
        """A new endpoint (only ever inserted: a change is an update of the version read, never an upsert)."""
        await self._endpoints.insert_one(endpoint.to_document())

    async def change_event_types(self, endpoint: Endpoint, event_types: Sequence[WebhookEventType]) -> bool:
        """Set the event types if the endpoint is still at ``endpoint.version``; False if it changed or is gone."""
        return await self._change(endpoint.id, endpoint.version, {"event_types": list(event_types)})

    async def change_secrets(self, endpoint: Endpoint) -> bool:
        """Store ``endpoint.secrets`` (a rotation) if the endpoint is still at ``endpoint.version``."""
        secrets = [secret_document(item) for item in endpoint.secrets]
        return await self._change(endpoint.id, endpoint.version, {"secrets": secrets})

    async def set_enabled(
        self, endpoint_id: str, enabled: bool, reason: str | None = None, version: int | None = None
    ) -> bool:
        """Enable or disable the endpoint: at ``version`` only if given (an admin's change), else whatever its
        version (a 410 Gone disables it whatever was changed meanwhile)."""
        fields = {"enabled": enabled, "disabled_reason": None if enabled else reason}
        if version is not None:
            return await self._change(endpoint_id, version, fields)
        result = await self._endpoints.update_one({"_id": endpoint_id}, {"$set": fields, "$inc": {"version": 1}})
        return result.matched_count == 1

    async def _change(self, endpoint_id: str, version: int, fields: dict[str, Any]) -> bool:
        # An endpoint stored before versions were kept has none: it is at version 0.
        at: Any = version if version else {"$in": [0, None]}
        result = await self._endpoints.update_one(
            {"_id": endpoint_id, "version": at}, {"$set": fields, "$inc": {"version": 1}}
        )
        return result.matched_count == 1

    async def delete_endpoint(self, endpoint_id: str, now: datetime) -> bool:
        """Remove the endpoint; its pending deliveries are cancelled (their log stays)."""
        result = await self._endpoints.delete_one({"_id": endpoint_id})
        await self._deliveries.update_many(
            {"endpoint_id": endpoint_id, "state": "pending"}, {"$set": {"state": "cancelled", "lease": None}}
        )
        return result.deleted_count == 1

    # Deliveries

    async def record(
        self, message_id: str, event_type: WebhookEventType, body: str, subject: str | None, now: datetime
    ) -> int:
        """A pending delivery of this event to each enabled endpoint that takes its type, once (a redelivered event
        adds none); returns how many endpoints take it."""
        taken = 0
        async for document in self._endpoints.find({"enabled": True, "event_types": event_type}):
            taken += 1
            await self._deliveries.update_one(
                {"_id": delivery_id(message_id, document["_id"])},
                {"$setOnInsert": {
                    "endpoint_id": document["_id"], "message_id": message_id, "event_type": event_type,
                    "body": body, "subject": subject, "state": "pending", "created_at": now,
                    "next_attempt_at": now, "retries": 0, "lease": None, "replaying": False, "attempts": [],
                }},
                upsert=True,
            )  # fmt: skip
        return taken

    async def delivery(self, delivery_id_: str) -> Delivery | None:
        document = await self._deliveries.find_one({"_id": delivery_id_})
        return Delivery.from_document(document) if document else None

    async def deliveries_of(self, endpoint_id: str, limit: int = 50) -> list[Delivery]:
        cursor = self._deliveries.find({"endpoint_id": endpoint_id}).sort("created_at", DESCENDING).limit(limit)
        return [Delivery.from_document(doc) async for doc in cursor]

    async def due(self, now: datetime, limit: int) -> list[Delivery]:
        cursor = (
            self._deliveries.find({"state": "pending", "next_attempt_at": {"$lte": now}})
            .sort("next_attempt_at", ASCENDING)
            .limit(limit)
        )
        return [Delivery.from_document(doc) async for doc in cursor]

    async def claim(self, delivery: Delivery, now: datetime, lease: timedelta) -> Delivery | None:
        """The delivery, now this caller's until ``now + lease``; None if another replica claimed it first (or it
        changed since it was read)."""
        token = uuid.uuid4().hex
        result = await self._deliveries.update_one(
            {"_id": delivery.id, "state": "pending", "lease": delivery.lease,
             "next_attempt_at": delivery.next_attempt_at},
            {"$set": {"lease": token, "next_attempt_at": now + lease}},
        )  # fmt: skip
        if result.modified_count != 1:
            return None
        return replace(delivery, lease=token, next_attempt_at=now + lease)

    async def attempted(
        self, delivery: Delivery, attempt: AttemptRecord, state: DeliveryState, next_attempt_at: datetime | None
    ) -> bool:
        """Log ``attempt`` and move the delivery on, if this caller still holds it."""
        fields: dict[str, Any] = {"state": state, "lease": None, "replaying": False}
        if next_attempt_at is not None:
            fields["next_attempt_at"] = next_attempt_at
        if state == "pending":
            fields["retries"] = delivery.retries + 1
        result = await self._deliveries.update_one(
            {"_id": delivery.id, "lease": delivery.lease},
            {"$set": fields, "$push": {"attempts": {"$each": [asdict(attempt)], "$slice": -MAX_ATTEMPTS_KEPT}}},
        )
        return result.matched_count == 1

    async def cancel(self, delivery: Delivery) -> None:
        await self._deliveries.update_one(
            {"_id": delivery.id, "lease": delivery.lease}, {"$set": {"state": "cancelled", "lease": None}}
        )

    async def replay(self, delivery_id_: str, now: datetime) -> bool:
        """Send the delivery again from the start of the retry schedule, whatever its state; False if unknown or
        being sent right now (a replica holds it)."""
        result = await self._deliveries.update_one(
            {"_id": delivery_id_, "lease": None},
            {"$set": {"state": "pending", "next_attempt_at": now, "retries": 0, "replaying": True}},
        )
        return result.matched_count == 1
