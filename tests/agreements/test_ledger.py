"""The hash-chained acceptance ledger: concurrent writers, tamper detection, receipts, the verify command."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient

from agency_shared.chain import GENESIS_HASH, ChainReport, record_hash
from agency_shared.receipt_verifier import verify_receipt
from agreements.main import create_app
from agreements.recording import ApplicationRecord
from agreements.settings import AgreementsSettings
from agreements.signing import DEVELOPMENT_SEED, LedgerKey
from agreements.storage import MongoAcceptanceLedger
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import CURRENT
from tests.support.events import application_submitted
from tests.support.ledger import STAFF_TOKEN, run_verify_command, wait_for_links

Mongo = AsyncMongoClient[dict[str, Any]]


async def recorded_chain(settings: AgreementsSettings, amqp_url: str, mongo: Mongo, size: int) -> list[str]:
    events = [application_submitted() for _ in range(size)]
    async with serving(create_app(settings)):
        await broker.publish_events(amqp_url, events)
        await wait_for_links(mongo, settings.mongodb_db, size)
    return [str(e.data.application_id) for e in events]


async def report(mongo: Mongo, db: str) -> ChainReport:
    # The services sign checkpoints with the development key in tests: verify checks them with it.
    return await MongoAcceptanceLedger(mongo, db, public_keys=LedgerKey(DEVELOPMENT_SEED).public_keys()).verify()


async def test_three_concurrent_replicas_keep_one_gap_free_valid_chain(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    events = [application_submitted() for _ in range(300)]
    # Some applications arrive twice, as after a redelivery or a retried POST.
    repeats = events[::10]
    replicas = [create_app(agreements_settings) for _ in range(3)]
    async with serving(*replicas):
        await broker.publish_events(amqp_url, events + repeats)
        await wait_for_links(mongo, agreements_settings.mongodb_db, len(events))
        recorded = await broker.take(
            amqp_url, "notifications.agreement-recorded", count=len(events) + len(repeats), timeout=90
        )

    db = mongo[agreements_settings.mongodb_db]
    links = await db["acceptance_ledger"].find({}).sort("_id", 1).to_list()
    assert [link["_id"] for link in links] == list(range(1, len(events) + 1))  # gap-free
    assert len({link["application_id"] for link in links}) == len(events)  # one link per application
    assert await db["applications"].count_documents({}) == len(events)
    chain = await report(mongo, agreements_settings.mongodb_db)
    assert chain.ok, chain
    assert chain.checked == len(events)
    # A repeat announces the link already written, not a new one.
    by_application: dict[str, set[int]] = {}
    for message in recorded:
        data = json.loads(message.body)["data"]
        by_application.setdefault(data["application_id"], set()).add(data["sequence"])
    assert all(len(sequences) == 1 for sequences in by_application.values())


@pytest.mark.parametrize("tampering", ["change-a-field", "delete-a-link", "delete-the-last-link", "swap-two-links"])
async def test_tampering_is_detected_and_located(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, tampering: str
) -> None:
    await recorded_chain(agreements_settings, amqp_url, mongo, 6)
    links = mongo[agreements_settings.mongodb_db]["acceptance_ledger"]
    assert (await report(mongo, agreements_settings.mongodb_db)).ok
    if tampering == "change-a-field":
        await links.update_one({"_id": 3}, {"$set": {"record.company_country": "XX"}})
        expected = (3, "altered")
    elif tampering == "delete-a-link":
        await links.delete_one({"_id": 4})
        expected = (4, "missing")
    elif tampering == "delete-the-last-link":
        await links.delete_one({"_id": 6})
        expected = (6, "removed")
    else:
        second, third = await links.find_one({"_id": 2}), await links.find_one({"_id": 3})
        assert second
        assert third
        await links.delete_many({"_id": {"$in": [2, 3]}})
        await links.insert_many([{**third, "_id": 2}, {**second, "_id": 3}])
        expected = (2, "sequence")

    found = await report(mongo, agreements_settings.mongodb_db)
    assert not found.ok
    assert found.broken_at == expected[0], found
    assert expected[1] in (found.reason or ""), found

    app = create_app(agreements_settings.model_copy(update={"staff_api_token": SecretStr(STAFF_TOKEN)}))
    async with serving(app), client(app) as http:
        over_http = (await http.get("/v1/ledger/verify", headers={"Authorization": f"Bearer {STAFF_TOKEN}"})).json()
    assert over_http["ok"] is False
    assert over_http["broken_at"] == expected[0]

    command = run_verify_command(agreements_settings)
    assert command.returncode == 1
    assert f"LEDGER BROKEN at link {expected[0]}" in command.stdout


async def test_the_verify_command_reports_an_intact_ledger(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    await recorded_chain(agreements_settings, amqp_url, mongo, 3)
    command = run_verify_command(agreements_settings)
    assert command.returncode == 0, command.stdout + command.stderr
    assert "ledger intact: 3 links" in command.stdout


async def test_a_receipt_verifies_offline_with_the_standalone_verifier(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo, tmp_path: Path
) -> None:
    [application_id, *_] = await recorded_chain(agreements_settings, amqp_url, mongo, 2)
    stored = await mongo[agreements_settings.mongodb_db]["applications"].find_one({"application_id": application_id})
    assert stored is not None
    app = create_app(agreements_settings)
    async with serving(app), client(app) as http:
        public = (await http.get(f"/v1/applications/{application_id}/receipt")).json()
        verifier = (await http.get("/v1/receipt-verifier.py")).text
        missing = await http.get(f"/v1/applications/{'0' * 8}-0000-4000-8000-{'0' * 12}/receipt")
    assert missing.status_code == 404
    # Anyone with the id may fetch the receipt: it carries no personal data, only the record's salted hashes.
    assert public["personal_data"] is None
    assert verify_receipt(public, CURRENT.text) == []
    # The applicant's copy (emailed) carries the values and the salt behind those hashes.
    personal = ApplicationRecord.model_validate(stored).personal_data().model_dump()
    receipt = {**public, "personal_data": personal}
    assert receipt["agreement_sha256"] == CURRENT.sha256
    assert receipt["record_hash"] == record_hash(receipt["record"])
    assert receipt["sequence"] in (1, 2)
    assert verify_receipt(receipt, CURRENT.text) == []

    (tmp_path / "receipt_verifier.py").write_text(verifier, encoding="utf-8")
    (tmp_path / "receipt.json").write_text(json.dumps(receipt), encoding="utf-8")
    (tmp_path / "agreement.txt").write_text(CURRENT.text, encoding="utf-8")

    def verify(*files: str) -> subprocess.CompletedProcess[str]:
        # -I (no PYTHONPATH, no script directory) and -S (no site-packages): nothing but the standard library.
        return subprocess.run(
            [sys.executable, "-I", "-S", "receipt_verifier.py", *files],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )

    intact = verify("receipt.json", "agreement.txt")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "the agreement text matches" in intact.stdout

    (tmp_path / "other.txt").write_text(CURRENT.text + " ", encoding="utf-8")
    assert verify("receipt.json", "other.txt").returncode == 1
    assert "the personal data matches" in intact.stdout
    impostor = {**receipt, "personal_data": {**receipt["personal_data"], "applicant_email": "someone@else.example"}}
    (tmp_path / "impostor.json").write_text(json.dumps(impostor), encoding="utf-8")
    claimed = verify("impostor.json")
    assert claimed.returncode == 1
    assert "applicant_email is not the value whose salted hash the record holds" in claimed.stdout
    forged = {**receipt, "record": {**receipt["record"], "accepted_at": "2020-01-01T00:00:00.000000Z"}}
    (tmp_path / "forged.json").write_text(json.dumps(forged), encoding="utf-8")
    rejected = verify("forged.json")
    assert rejected.returncode == 1
    assert "record hashes to" in rejected.stdout


async def test_the_first_link_points_at_the_genesis_hash(
    agreements_settings: AgreementsSettings, amqp_url: str, mongo: Mongo
) -> None:
    await recorded_chain(agreements_settings, amqp_url, mongo, 2)
    first, second = await mongo[agreements_settings.mongodb_db]["acceptance_ledger"].find({}).sort("_id", 1).to_list()
    assert first["record"]["prev_hash"] == GENESIS_HASH
    assert second["record"]["prev_hash"] == first["record_hash"]
