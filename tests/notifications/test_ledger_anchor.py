"""Signed ledger checkpoints emailed to the archive mailbox (LEDGER_ANCHOR_EMAILS), as the SMTP server received them."""

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pymongo import AsyncMongoClient

from agency_shared.checkpoints import checkpoint_problems
from agreements.__main__ import read_anchors
from agreements.checkpointing import checkpointed
from agreements.signing import DEVELOPMENT_SEED, LedgerKey
from notifications.main import create_app
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.servers import Inbox

Mongo = AsyncMongoClient[dict[str, Any]]
ARCHIVE = "ledger-archive@agency.example"
KEY = LedgerKey(DEVELOPMENT_SEED)


async def test_each_checkpoint_is_emailed_once_to_the_archive_mailbox_in_a_form_verify_reads(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo, tmp_path: Path
) -> None:
    settings = notifications_settings.model_copy(update={"ledger_anchor_emails": [ARCHIVE]})
    checkpoint = KEY.checkpoint(100, "ab" * 32, datetime(2026, 12, 6, 1, 0, tzinfo=UTC))
    event = checkpointed(checkpoint)
    body = event.model_dump_json().encode()
    async with serving(create_app(settings)):
        await broker.publish_raw(amqp_url, body, event.routing_key, str(event.event_id))
        [message] = await inbox.wait_for(lambda messages: len(messages) == 1)
        # A repeat (the agreements replicas announce what another announced already) sends nothing more.
        await broker.publish_raw(amqp_url, body, event.routing_key, str(event.event_id))
        await broker.wait_settled(amqp_url, "notifications.")
    assert len(inbox.messages) == 1
    assert [to.addr_spec for to in message["To"].addresses] == [ARCHIVE]
    assert message["Subject"] == "Ledger checkpoint: link 100"
    plain = message.get_body(("plain",))
    assert plain is not None
    text = plain.get_content()
    [line] = [line for line in text.splitlines() if line.startswith("{")]
    assert json.loads(line) == checkpoint.model_dump()
    assert checkpoint_problems(json.loads(line), KEY.public_keys()) == []
    # The archive's lines are what `python -m agreements verify --anchors` reads.
    (tmp_path / "anchors.jsonl").write_text(line + "\n", encoding="utf-8")
    assert read_anchors(tmp_path / "anchors.jsonl") == [checkpoint.model_dump()]
    entries = await mongo[settings.mongodb_db]["notifications"].find({"event_id": str(event.event_id)}).to_list()
    assert [(entry["template"], entry["state"]) for entry in entries] == [("ledger_checkpoint", "sent")]
