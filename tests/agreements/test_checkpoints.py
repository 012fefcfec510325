"""Signed checkpoints against the real servers: made and announced by the running service, and what they catch
that the chain alone cannot: a consistent rewrite from link k, by `verify` with the anchored checkpoints and by
the standalone verifier with an older receipt; forged checkpoints and receipts refused."""

import asyncio
import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from pymongo import AsyncMongoClient

from agency_shared.chain import GENESIS_HASH, record_hash
from agency_shared.checkpoints import checkpoint_problems
from agency_shared.events import utc_now
from agreements import checkpointing
from agreements.checkpointing import Checkpointer, MongoCheckpoints
from agreements.main import create_app
from agreements.settings import AgreementsSettings
from agreements.signing import DEVELOPMENT_SEED, LedgerKey
from agreements.storage import MongoAcceptanceLedger
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.events import application_submitted
from tests.support.ledger import run_verify_command, wait_for_links

Mongo = AsyncMongoClient[dict[str, Any]]
# Outside production the services sign with the development key (no LEDGER_SIGNING_KEY): so do the tests.
KEY = LedgerKey(DEVELOPMENT_SEED)
IMPOSTOR = LedgerKey(b"i" * 32)


async def record(settings: AgreementsSettings, amqp_url: str, mongo: Mongo, size: int) -> None:
    async with serving(create_app(settings)):
        await broker.publish_events(amqp_url, [application_submitted() for _ in range(size)])
        await wait_for_links(mongo, settings.mongodb_db, size)


def ledger(mongo: Mongo, settings: AgreementsSettings) -> MongoAcceptanceLedger:
    return MongoAcceptanceLedger(mongo, settings.mongodb_db, public_keys=KEY.public_keys())


async def checkpoint_now(mongo: Mongo, settings: AgreementsSettings, every: int) -> list[dict[str, Any]]:
    """Make what is due (as the service's loop does) and return every stored checkpoint, as the archive has them."""
    store = MongoCheckpoints(mongo, settings.mongodb_db)
    await Checkpointer(ledger(mongo, settings), store, KEY, every, timedelta(hours=1)).make_due(utc_now())
    return [checkpoint.model_dump() async for checkpoint in store.every()]


async def rewrite_from(mongo: Mongo, settings: AgreementsSettings, k: int) -> None:
    """What a rogue database writer can do: change link k and recompute every later hash, and the head marker."""
    db = mongo[settings.mongodb_db]
    before = await db["acceptance_ledger"].find_one({"_id": k - 1})
    prev = before["record_hash"] if before else GENESIS_HASH
    async for link in db["acceptance_ledger"].find({"_id": {"$gte": k}}).sort("_id", 1):
        changed = {**link["record"], "prev_hash": prev}
        if link["_id"] == k:
            changed["company_country"] = "XX"
        prev = record_hash(changed)
        await db["acceptance_ledger"].update_one(
            {"_id": link["_id"]}, {"$set": {"record": changed, "record_hash": prev}}
        )
    await db["acceptance_ledger_head"].update_one({"_id": "head"}, {"$set": {"record_hash": prev}})


async def test_the_service_signs_checkpoints_stores_and_announces_them(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checkpointing, "CHECK_SECONDS", 0.2)
    settings = agreements_settings.model_copy(update={"ledger_checkpoint_every": 3})
    store = MongoCheckpoints(mongo, settings.mongodb_db)
    app = create_app(settings)
    async with serving(app), client(app) as http:
        await broker.publish_events(amqp_url, [application_submitted() for _ in range(7)])
        await wait_for_links(mongo, settings.mongodb_db, 7)
        async with asyncio.timeout(30):
            while not {3, 6} <= {c.sequence async for c in store.every()} or await store.unannounced():  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        stored = [c.model_dump() async for c in store.every()]
        announced = await broker.take(amqp_url, "notifications.ledger-checkpointed", count=len(stored), timeout=30)
        published = (await http.get("/v1/ledger/public-key")).json()
    events = [json.loads(message.body) for message in announced]
    assert {event["event_type"] for event in events} == {"ledger.checkpointed"}
    # Every 3rd link, and the head whenever no checkpoint was made within the hour (the very first one).
    assert [event["data"]["checkpoint"] for event in events] == stored
    assert stored[0]["sequence"] in (1, 2, 3)
    assert published == KEY.described()
    assert published["algorithm"] == "Ed25519"
    for checkpoint in stored:
        assert checkpoint_problems(checkpoint, KEY.public_keys()) == []
    report = await ledger(mongo, settings).verify()
    assert report.ok, report
    assert report.checkpoints == len(stored)


@pytest.mark.parametrize("checkpoints_deleted", [False, True])
async def test_a_consistent_rewrite_from_link_k_is_caught_by_verify_with_the_anchored_checkpoints(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, tmp_path: Path, checkpoints_deleted: bool
) -> None:
    await record(agreements_settings, amqp_url, mongo, 8)
    anchored = await checkpoint_now(mongo, agreements_settings, every=4)
    assert [checkpoint["sequence"] for checkpoint in anchored][-2:] == [4, 8]
    # The archive mailbox's copies, one JSON line each (as the email carries them).
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text("".join(json.dumps(checkpoint) + "\n" for checkpoint in anchored), encoding="utf-8")
    assert run_verify_command(agreements_settings, "--anchors", str(anchors)).returncode == 0

    await rewrite_from(mongo, agreements_settings, 3)
    if checkpoints_deleted:  # the writer can reach the stored checkpoints too, but not the archive mailbox
        await mongo[agreements_settings.mongodb_db]["ledger_checkpoints"].delete_many({})
    # The chain alone is consistent again.
    assert (await MongoAcceptanceLedger(mongo, agreements_settings.mongodb_db).verify()).checked == 8

    alone = run_verify_command(agreements_settings)
    if checkpoints_deleted:
        assert alone.returncode == 0, alone.stdout  # why the checkpoints must be kept outside
    else:
        assert alone.returncode == 1
        assert "the chain was rewritten at or before link" in alone.stdout
    caught = run_verify_command(agreements_settings, "--anchors", str(anchors))
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "LEDGER BROKEN at link 4" in caught.stdout
    assert "the chain was rewritten at or before link 4" in caught.stdout


async def test_a_consistent_rewrite_is_caught_by_the_verifier_given_an_older_receipt(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, tmp_path: Path
) -> None:
    await record(agreements_settings, amqp_url, mongo, 6)
    sixth = await mongo[agreements_settings.mongodb_db]["acceptance_ledger"].find_one({"_id": 6})
    assert sixth is not None
    receipt_path = f"/v1/applications/{sixth['application_id']}/receipt"
    app = create_app(agreements_settings)
    async with serving(app), client(app) as http:
        older = (await http.get(receipt_path)).json()
        public_key = (await http.get("/v1/ledger/public-key")).json()
        verifier = (await http.get("/v1/receipt-verifier.py")).text
        await rewrite_from(mongo, agreements_settings, 3)
        # The service signs what the database holds now: the current receipt verifies on its own...
        current = (await http.get(receipt_path)).json()
    assert older["checkpoint"]["sequence"] == 6
    assert current["record_hash"] != older["record_hash"]
    for name, body in {"verifier.py": verifier, "key.json": json.dumps(public_key)}.items():
        (tmp_path / name).write_text(body, encoding="utf-8")
    for name, body in {"older.json": older, "current.json": current}.items():
        (tmp_path / name).write_text(json.dumps(body), encoding="utf-8")

    def verify(*arguments: str) -> subprocess.CompletedProcess[str]:
        # -I -S: the standard library only (signatures checked in plain Python, as without cryptography).
        command = [sys.executable, "-I", "-S", "verifier.py", *arguments, "--public-key", "key.json"]
        return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)

    assert verify("older.json").returncode == 0
    assert verify("current.json").returncode == 0
    # ...but the older receipt, signed for the original link 6, shows the ledger no longer holds it.
    caught = verify("older.json", "--current", "current.json")
    assert caught.returncode == 1, caught.stdout + caught.stderr
    assert "NOT VALID: the ledger was rewritten" in caught.stdout
    # The older receipt is an anchor for `verify` too.
    (tmp_path / "receipts.jsonl").write_text(json.dumps(older) + "\n", encoding="utf-8")
    command = run_verify_command(agreements_settings, "--anchors", str(tmp_path / "receipts.jsonl"))
    assert command.returncode == 1
    assert "LEDGER BROKEN at link 6" in command.stdout


async def test_forged_checkpoints_are_refused(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, tmp_path: Path
) -> None:
    await record(agreements_settings, amqp_url, mongo, 3)
    [*_, genuine] = await checkpoint_now(mongo, agreements_settings, every=100)
    assert genuine["sequence"] == 3
    # Signed by another key, over the very hash the chain holds: not the ledger's.
    forged = IMPOSTOR.checkpoint(3, genuine["record_hash"], utc_now()).model_dump()
    anchors = tmp_path / "forged.jsonl"
    anchors.write_text(json.dumps(forged) + "\n", encoding="utf-8")
    refused = run_verify_command(agreements_settings, "--anchors", str(anchors))
    assert refused.returncode == 1
    assert "not one of the ledger's keys" in refused.stdout

    # A stored checkpoint whose signature does not match what it says.
    tampered = {**genuine, "time": "2020-01-01T00:00:00.000000Z", "_id": 2, "sequence": 2, "announced": True}
    await mongo[agreements_settings.mongodb_db]["ledger_checkpoints"].insert_one(tampered)
    report = await ledger(mongo, agreements_settings).verify()
    assert not report.ok
    assert report.broken_at == 2
    assert "signature is not key" in (report.reason or "")
