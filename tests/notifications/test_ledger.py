"""The notification ledger's group commit against SecantusDB: what concurrent handlers ask at once goes in one
command, and each still gets its own answer."""

import asyncio
from typing import Any

from pymongo import AsyncMongoClient, monitoring

from notifications.ledger import Claim, NotificationLedger, forgotten_key

Mongo = AsyncMongoClient[dict[str, Any]]


class Commands(monitoring.CommandListener):
    def __init__(self) -> None:
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


def details(event_id: str, template: str = "email_verification") -> dict[str, Any]:
    return {"event_id": event_id, "template": template, "recipient": f"{event_id}@mapletea.example"}


async def test_concurrent_claims_and_sent_marks_each_go_in_one_command_with_every_answer_right(
    mongo_url: str, mongo_db: str
) -> None:
    commands = Commands()
    client: Mongo = AsyncMongoClient(mongo_url, tz_aware=True, event_listeners=[commands])
    try:
        ledger = NotificationLedger(client, mongo_db, lease_seconds=60, forgettable_templates={"email_verification"})
        await ledger.ensure_indexes()
        emails = client[mongo_db]["notifications"]
        await emails.insert_many([
            {"_id": "sent-before/email_verification/a@x", **details("sent-before"), "state": "sent"},
            {"_id": forgotten_key("forgotten", "email_verification"), **details("forgotten"), "state": "sent"},
        ])  # fmt: skip
        new = [f"e{n}/email_verification/e{n}@x" for n in range(20)]
        asks = [
            *((key, details(key.split("/")[0])) for key in new),
            ("sent-before/email_verification/a@x", details("sent-before")),
            ("forgotten/email_verification/b@x", details("forgotten")),
            ("twice/staff_new_application/s@x", details("twice", "staff_new_application")),
            ("twice/staff_new_application/s@x", details("twice", "staff_new_application")),
        ]
        commands.names.clear()
        claims = await asyncio.gather(*(ledger.claim(key, detail) for key, detail in asks))
        assert claims[:20] == [Claim.CLAIMED] * 20
        assert claims[20:22] == [Claim.SENT, Claim.SENT]  # sent before; its applicant forgotten, sent before that
        assert sorted(claims[22:]) == sorted([Claim.CLAIMED, Claim.BUSY])  # the same email twice at once: one sends
        # One look-up of forgotten recipients and one insert for all 24; the two known ones looked at one by one
        # (two conditional updates by _id, then a read).
        assert commands.names[:2] == ["find", "insert"]
        assert len(commands.names) <= 2 + 2 * 3
        assert "findAndModify" not in commands.names

        commands.names.clear()
        await asyncio.gather(*(ledger.sent(key, f"250 ok {key}") for key in new))
        assert commands.names == ["update"]
        stored = {entry["_id"]: entry async for entry in emails.find({"_id": {"$in": new}})}
        assert all(stored[key]["state"] == "sent" for key in new)
        assert all(stored[key]["smtp_reply"] == f"250 ok {key}" for key in new)
        assert all(stored[key]["attempts"] == 1 for key in new)

        await ledger.forget_application("erased-one", stored[new[0]]["updated_at"])
        commands.names.clear()
        erased = await asyncio.gather(*(ledger.is_erased(subject) for subject in ["kept", "erased-one", "kept"]))
        assert erased == [False, True, False]
        assert commands.names == ["find"]
    finally:
        await client.close()
