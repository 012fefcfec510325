"""The chat alerts in MongoDB: one delivery per alert and robot (``casework_chat_alerts``; its id follows from the
robot and the alert's key, so an alert raised twice is stored, and sent, once), and one lease per robot
(``casework_chat_senders``): which replica sends for it, and when its last messages ended, so whichever replica
holds it next keeps to the same rate limit."""

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pymongo import ASCENDING, AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from casework.chat.messages import Alert

ALERTS = "casework_chat_alerts"
SENDERS = "casework_chat_senders"
# A delivery (its key, to recognise a repeat) is kept this long, sent or given up.
RETENTION_DAYS = 90
DeliveryState = Literal["pending", "sent", "failed"]


@dataclass(frozen=True)
class Delivery:
    """An alert on its way to one robot."""

    id: str
    robot: str
    alert: Alert
    attempts: int


@dataclass(frozen=True)
class Lease:
    """A robot's sender: who holds it, until when, and the ends of its recent messages (epoch seconds)."""

    holder: str
    expires_at: float
    sent: list[float] = field(default_factory=list)
    in_flight: float | None = None  # a message started and not known to have ended (its sender may have died)
    paused_until: float = 0.0  # the API said "too many": nothing before this


def delivery_id(robot: str, key: str) -> str:
    return f"{robot}:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


class ChatStore:
    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._alerts = client[db][ALERTS]
        self._senders = client[db][SENDERS]

    async def ensure_indexes(self) -> None:
        await self._alerts.create_index([("robot", ASCENDING), ("state", ASCENDING), ("next_at", ASCENDING)])
        await self._alerts.create_index([("created_at", ASCENDING)], expireAfterSeconds=RETENTION_DAYS * 86_400)

    async def add(self, robot: str, alert: Alert, now: float) -> bool:
        """Store ``alert`` for ``robot``; False if an alert with its key was stored for it already."""
        document = {
            "_id": delivery_id(robot, alert.key),
            "robot": robot,
            "alert": alert.model_dump(mode="json", exclude={"key"}),  # the key may say more than the message
            "state": "pending",
            "attempts": 0,
            "next_at": now,
            "created_at": datetime.fromtimestamp(now, UTC),
        }
        try:
            await self._alerts.insert_one(document)
        except DuplicateKeyError:
            return False
        return True

    async def next_due(self, robot: str, now: float) -> Delivery | None:
        cursor = self._alerts.find({"robot": robot, "state": "pending", "next_at": {"$lte": now}})
        async for document in cursor.sort([("next_at", ASCENDING), ("_id", ASCENDING)]).limit(1):
            alert = Alert.model_validate({**document["alert"], "key": document["_id"]})
            return Delivery(document["_id"], robot, alert, document["attempts"])
        return None

    async def settle(self, delivery: Delivery, state: DeliveryState, now: float, detail: str) -> None:
        """The delivery ended: ``sent``, or ``failed`` for good."""
        updates = {"state": state, "attempts": delivery.attempts + 1, "settled_at": now, "detail": detail}
        await self._alerts.update_one({"_id": delivery.id, "state": "pending"}, {"$set": updates})

    async def postpone(self, delivery: Delivery, next_at: float, detail: str) -> None:
        updates = {"attempts": delivery.attempts + 1, "next_at": next_at, "detail": detail}
        await self._alerts.update_one({"_id": delivery.id, "state": "pending"}, {"$set": updates})

    async def state_of(self, robot: str, key: str) -> dict[str, Any] | None:
        return await self._alerts.find_one({"_id": delivery_id(robot, key)})

    async def hold(self, robot: str, holder: str, now: float, seconds: float) -> Lease | None:
        """Take or renew ``robot``'s lease for ``holder``; None while another replica holds it."""
        until = now + seconds
        # Renew (the usual case), else take over an expired lease, else make the robot's first one: each a
        # single-document write by _id, so two replicas cannot both succeed.
        renewed = await self._senders.update_one({"_id": robot, "holder": holder}, {"$set": {"expires_at": until}})
        if not renewed.matched_count:
            taken = await self._senders.update_one(
                {"_id": robot, "expires_at": {"$lt": now}}, {"$set": {"holder": holder, "expires_at": until}}
            )
            if not taken.matched_count:
                try:
                    await self._senders.insert_one({"_id": robot, "holder": holder, "expires_at": until, "sent": [],
                                                    "in_flight": None, "paused_until": 0.0})  # fmt: skip
                except DuplicateKeyError:
                    return None
        document = await self._senders.find_one({"_id": robot})
        if document is None or document["holder"] != holder:
            return None
        return Lease(
            document["holder"], document.get("expires_at", until), list(document.get("sent") or []),
            document.get("in_flight"), document.get("paused_until") or 0.0,
        )  # fmt: skip

    async def begin(self, robot: str, holder: str, now: float, seconds: float) -> bool:
        """Note that a message starts now (a sender that dies mid-way leaves it for the next one to count);
        False if ``holder`` lost the lease meanwhile (then it sends nothing)."""
        started = await self._senders.update_one(
            {"_id": robot, "holder": holder}, {"$set": {"in_flight": now, "expires_at": now + seconds}}
        )
        return bool(started.matched_count)

    async def count_in_flight(self, robot: str, holder: str, started: float, ended: float) -> bool:
        """Move the message begun at ``started`` and never recorded as ended into the sent ones, as ending at
        ``ended``: one write, only while ``holder`` holds the robot and the message is still in flight (so it is
        counted once); False if ``holder`` lost the lease."""
        moved = await self._senders.update_one(
            {"_id": robot, "holder": holder, "in_flight": started},
            {"$push": {"sent": ended}, "$set": {"in_flight": None}},
        )
        return bool(moved.matched_count)

    async def ended(self, robot: str, holder: str, sent: list[float], paused_until: float) -> None:
        """Record the ends of the messages still counting and any pause the API asked for."""
        await self._senders.update_one(
            {"_id": robot, "holder": holder},
            {"$set": {"sent": sent, "in_flight": None, "paused_until": paused_until}},
        )

    async def release(self, robot: str, holder: str, now: float) -> None:
        """Let another replica take the robot at once (a clean shutdown)."""
        await self._senders.update_one({"_id": robot, "holder": holder}, {"$set": {"expires_at": now}})
