"""Signed checkpoints: the Ed25519 arithmetic, signing and checking, forgeries refused, what is due, announcing."""

import asyncio
import base64
import contextlib
import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from agency_chassis.outcomes import Done
from agency_shared.chain import GENESIS, Head, record_hash
from agency_shared.checkpoints import (
    checkpoint_message,
    checkpoint_problems,
    ed25519_valid,
    key_id,
    reference_public_key,
    reference_sign,
)
from agency_shared.events import AgreementRecorded, Checkpoint, LedgerCheckpointed
from agency_shared.receipt_verifier import compare_receipts, verify_receipt
from agency_shared.receipts import Receipt
from agreements import checkpointing
from agreements.__main__ import UnreadableAnchors, read_anchors
from agreements.checkpointing import Checkpointer, UnsignableChain, checkpointed, due_sequences
from agreements.handlers import record_submitted_application
from agreements.recording import acceptance_link, receipt_checkpoint
from agreements.settings import AgreementsSettings
from agreements.signing import DEVELOPMENT_SEED, PKCS8_ED25519_PREFIX, InvalidSigningKey, LedgerKey, parse_seed
from notifications.settings import NotificationsSettings
from tests.support.events import application_submitted
from tests.support.fakes import FakeAcceptanceLedger, FakeApplications
from tests.support.records import APPLICATION

NOW = datetime(2026, 12, 6, 1, 2, 3, 456000, tzinfo=UTC)
KEY = LedgerKey(hashlib.sha256(b"unit-test ledger key").digest())
OTHER = LedgerKey(hashlib.sha256(b"someone else's key").digest())

# RFC 8032, section 7.1, tests 1 and 2: (secret key, public key, message, signature).
RFC8032 = [
    (
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ),
    (
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ),
]


@pytest.mark.parametrize(("secret", "public", "message", "signature"), RFC8032)
def test_the_reference_arithmetic_gives_rfc_8032s_keys_and_signatures(
    secret: str, public: str, message: str, signature: str
) -> None:
    seed, raw = bytes.fromhex(secret), bytes.fromhex(public)
    assert reference_public_key(seed) == raw
    assert reference_sign(seed, bytes.fromhex(message)) == bytes.fromhex(signature)
    assert ed25519_valid(raw, bytes.fromhex(message), bytes.fromhex(signature))
    assert not ed25519_valid(raw, bytes.fromhex(message) + b"!", bytes.fromhex(signature))
    assert LedgerKey(seed).public_key == raw  # with cryptography when installed, else the same arithmetic


def signed(**changes: object) -> dict[str, object]:
    return {**KEY.checkpoint(7, "ab" * 32, NOW).model_dump(), **changes}


def test_a_checkpoint_verifies_under_its_key_and_names_it() -> None:
    checkpoint = KEY.checkpoint(7, "ab" * 32, NOW)
    assert checkpoint.key_id == key_id(KEY.public_key) == KEY.key_id
    assert len(checkpoint.key_id) == 16
    assert checkpoint.time == "2026-12-06T01:02:03.456000Z"
    assert checkpoint_problems(checkpoint.model_dump(), KEY.public_keys()) == []
    # Deterministic: the same link and time always give the same signature (a redelivery, the receipt served later).
    assert KEY.checkpoint(7, "ab" * 32, NOW) == checkpoint


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"record_hash": "cd" * 32}, "is not key"),
        ({"sequence": 8}, "is not key"),
        ({"time": "2020-01-01T00:00:00.000000Z"}, "is not key"),
        ({"signature": base64.b64encode(b"\0" * 64).decode()}, "is not key"),
        ({"signature": "not base64!"}, "not base64"),
        ({"sequence": "7"}, "wrong type"),
    ],
)
def test_a_tampered_checkpoint_is_refused(changes: dict[str, object], problem: str) -> None:
    [found] = checkpoint_problems(signed(**changes), KEY.public_keys())
    assert problem in found


def test_a_checkpoint_forged_with_another_key_is_refused_whatever_key_id_it_claims() -> None:
    forged = OTHER.checkpoint(7, "ab" * 32, NOW).model_dump()
    [unknown] = checkpoint_problems(forged, KEY.public_keys())
    assert "not one of the ledger's keys" in unknown
    # Claiming the ledger's key id: the signature is then checked with the ledger's key, and fails.
    message = checkpoint_message(7, "ab" * 32, forged["time"], KEY.key_id)
    claimed = {**forged, "key_id": KEY.key_id, "signature": base64.b64encode(OTHER.sign(message)).decode()}
    [bad] = checkpoint_problems(claimed, KEY.public_keys())
    assert "is not key" in bad


def test_a_retired_key_still_verifies_what_it_signed() -> None:
    rotated = LedgerKey(KEY.seed, retired=(OTHER.public_key,))
    old = OTHER.checkpoint(3, "cd" * 32, NOW).model_dump()
    assert checkpoint_problems(old, rotated.public_keys()) == []
    described = rotated.described()
    assert described["key_id"] == KEY.key_id
    assert described["retired"] == [
        {"key_id": OTHER.key_id, "algorithm": "Ed25519", "public_key": base64.b64encode(OTHER.public_key).decode()}
    ]


def test_the_signing_key_is_read_as_pem_or_as_the_base64_of_its_seed() -> None:
    seed = KEY.seed
    der = base64.b64encode(PKCS8_ED25519_PREFIX + seed).decode()
    pem = f"-----BEGIN PRIVATE KEY-----\n{der}\n-----END PRIVATE KEY-----\n"
    assert parse_seed(pem) == seed
    assert parse_seed(base64.b64encode(seed).decode()) == seed
    for wrong in ("not a key", base64.b64encode(b"short").decode()):
        with pytest.raises(InvalidSigningKey):
            parse_seed(wrong)


def test_production_refuses_a_missing_invalid_or_development_signing_key() -> None:
    def problems(key: str | None) -> list[str]:
        settings = AgreementsSettings(ledger_signing_key=SecretStr(key) if key is not None else None)
        return [p.reason for p in settings.production_problems() if p.variable == "LEDGER_SIGNING_KEY"]

    assert "missing" in problems(None)[0]
    assert "not base64" in problems("changeme!")[0]
    assert "development key" in problems(base64.b64encode(DEVELOPMENT_SEED).decode())[0]
    real = problems(base64.b64encode(KEY.seed).decode())
    # A real key passes, once the cryptography package is there to sign with (never the plain-Python arithmetic).
    assert real in ([], ["the cryptography package is not installed to sign with it"])
    # Outside production the development key signs, so the service and `verify` agree without configuration.
    assert AgreementsSettings(environment="test").ledger_key().seed == DEVELOPMENT_SEED


def receipt(key: LedgerKey = KEY) -> dict[str, object]:
    link = acceptance_link(APPLICATION, GENESIS)
    return Receipt.from_record(
        link.record, link.record_hash, APPLICATION.personal_data(), checkpoint=receipt_checkpoint(key, link)
    ).as_json()


def test_a_receipt_carries_its_links_checkpoint_and_verifies_with_the_public_key() -> None:
    intact = receipt()
    checkpoint = intact["checkpoint"]
    assert isinstance(checkpoint, dict)
    assert (checkpoint["sequence"], checkpoint["record_hash"]) == (1, intact["record_hash"])
    assert checkpoint["key_id"] == KEY.key_id
    assert verify_receipt(intact, None, KEY.public_keys()) == []
    assert verify_receipt(intact) == []  # without the key: everything but the signature


def test_a_forged_receipt_is_refused() -> None:
    intact = receipt()
    record = {**intact["record"], "company_country": "XX"}  # type: ignore[dict-item]
    # The record changed and its hash recomputed: the signed checkpoint no longer covers it.
    rehashed = {**intact, "record": record, "record_hash": record_hash(record)}
    [problem] = verify_receipt(rehashed, None, KEY.public_keys())
    assert "not this receipt's link" in problem
    assert verify_receipt(rehashed) != []  # even without the key
    # ...and a checkpoint made for it with another key is not the ledger's.
    forged = {**receipt(OTHER), "personal_data": None}
    [foreign] = verify_receipt(forged, None, KEY.public_keys())
    assert "not one of the ledger's keys" in foreign
    # A receipt without any checkpoint proves nothing signed.
    unsigned = {**intact, "checkpoint": None}
    assert verify_receipt(unsigned, None, KEY.public_keys()) == ["the receipt carries no signed checkpoint"]


def test_an_older_receipt_shows_that_the_ledger_was_rewritten() -> None:
    older = receipt()
    assert compare_receipts(older, older) == []
    rewritten = {**older, "record_hash": "ee" * 32}
    [problem] = compare_receipts(older, rewritten)
    assert "the ledger was rewritten" in problem


def test_what_is_due_every_n_links_and_every_interval() -> None:
    hour = timedelta(hours=1)
    assert due_sequences(None, Head(250, "h"), 100, hour, NOW) == [100, 200, 250]
    latest = Checkpoint(sequence=200, record_hash="h", time="2026-12-06T00:30:00.000000Z", key_id="k", signature="")
    assert due_sequences(latest, Head(250, "h"), 100, hour, NOW) == []  # 32 minutes: not yet
    assert due_sequences(latest, Head(250, "h"), 100, hour, NOW + hour) == [250]
    assert due_sequences(latest, Head(200, "h"), 100, hour, NOW + hour) == []  # nothing new to sign
    assert due_sequences(latest, Head(300, "h"), 100, hour, NOW) == [300]


class FakeLinks:
    """A chain whose link n hashes to ``h<n>``, good up to ``broken`` (exclusive)."""

    def __init__(self, length: int, broken: int | None = None) -> None:
        self.length, self.broken = length, broken

    async def head(self) -> Head | None:
        return Head(self.length, f"h{self.length}") if self.length else None

    async def verified_through(self, start: Head, end: int) -> Head:
        if self.broken is not None and start.sequence < self.broken <= end:
            raise UnsignableChain(f"link {self.broken} was altered")
        return Head(end, f"h{end}")


class FakeCheckpoints:
    def __init__(self) -> None:
        self.kept: dict[int, Checkpoint] = {}
        self.announced: set[int] = set()

    async def keep(self, checkpoint: Checkpoint) -> Checkpoint:
        return self.kept.setdefault(checkpoint.sequence, checkpoint)

    async def latest(self) -> Checkpoint | None:
        return self.kept[max(self.kept)] if self.kept else None

    async def unannounced(self) -> list[Checkpoint]:
        return [self.kept[s] for s in sorted(self.kept) if s not in self.announced]

    async def mark_announced(self, sequence: int) -> None:
        self.announced.add(sequence)


async def test_the_checkpointer_signs_what_is_due_and_announces_each_once() -> None:
    store = FakeCheckpoints()
    checkpointer = Checkpointer(FakeLinks(250), store, KEY, 100, timedelta(hours=1))
    made = await checkpointer.make_due(NOW)
    assert [c.sequence for c in made] == [100, 200, 250]
    assert all(checkpoint_problems(c.model_dump(), KEY.public_keys()) == [] for c in made)
    assert made[0].record_hash == "h100"
    assert await checkpointer.make_due(NOW) == []
    published: list[LedgerCheckpointed] = []

    async def publish(event: LedgerCheckpointed) -> None:
        published.append(event)

    assert await checkpointer.announce(publish) == 3
    assert await checkpointer.announce(publish) == 0
    assert [event.data.checkpoint.sequence for event in published] == [100, 200, 250]
    assert published[0].event_id == checkpointed(made[0]).event_id  # one id per sequence: repeats are recognised


async def test_nothing_is_signed_over_links_that_do_not_verify() -> None:
    store = FakeCheckpoints()
    checkpointer = Checkpointer(FakeLinks(250, broken=150), store, KEY, 100, timedelta(hours=1))
    with pytest.raises(UnsignableChain):
        await checkpointer.make_due(NOW)
    assert list(store.kept) == [100]


async def test_agreement_recorded_carries_the_signed_link_for_the_receipt() -> None:
    store, ledger = FakeApplications(), FakeAcceptanceLedger()
    event = application_submitted()
    outcome = await record_submitted_application(event, store, ledger, lambda: NOW, KEY)
    again = await record_submitted_application(event, store, ledger, lambda: NOW + timedelta(minutes=5), KEY)
    assert isinstance(outcome, Done)
    assert outcome == again  # the same checkpoint on a redelivery
    [recorded] = outcome.publish
    assert isinstance(recorded, AgreementRecorded)
    data = recorded.data
    assert data.checkpoint is not None
    assert (data.checkpoint.sequence, data.checkpoint.record_hash) == (data.sequence, data.record_hash)
    emailed = Receipt.from_event(data).as_json()
    assert verify_receipt(emailed, None, KEY.public_keys()) == []
    assert uuid.UUID(str(emailed["application_id"])) == event.data.application_id


def test_production_refuses_notifications_without_a_real_archive_mailbox() -> None:
    def problems(anchors: str | None) -> list[str]:
        given = {} if anchors is None else {"ledger_anchor_emails": anchors}
        settings = NotificationsSettings.model_validate(given)
        return [p.reason for p in settings.production_problems() if p.variable == "LEDGER_ANCHOR_EMAILS"]

    assert "missing" in problems(None)[0]
    assert "placeholders" in problems("archive@localhost")[0]
    assert problems("ledger-archive@agency.com, legal@agency.com") == []
    assert NotificationsSettings.model_validate(
        {"ledger_anchor_emails": "a@agency.com, b@agency.com"}
    ).ledger_anchor_emails == [
        "a@agency.com",
        "b@agency.com",
    ]


def test_verify_checks_with_the_listed_public_keys_when_it_holds_no_private_key() -> None:
    listed = [base64.b64encode(raw).decode() for raw in (KEY.public_key, OTHER.public_key)]
    job = AgreementsSettings.model_validate({"ledger_public_keys": ",".join(listed)})
    assert job.verifying_keys() == {KEY.key_id: KEY.public_key, OTHER.key_id: OTHER.public_key}
    service = AgreementsSettings.model_validate(
        {"ledger_signing_key": base64.b64encode(KEY.seed).decode(), "ledger_public_keys": ",".join(listed)}
    )
    # The service lists its own key once, as the current one; the others as retired.
    assert service.ledger_key().retired == (OTHER.public_key,)
    assert service.verifying_keys() == job.verifying_keys()
    with pytest.raises(ValueError, match="not 32 bytes"):
        AgreementsSettings.model_validate({"ledger_public_keys": base64.b64encode(b"short").decode()})


async def test_a_checkpoint_planted_in_the_database_is_never_built_on() -> None:
    store = FakeCheckpoints()
    planted = OTHER.checkpoint(100, "h100", NOW)
    await store.keep(planted.model_copy(update={"key_id": KEY.key_id}))
    checkpointer = Checkpointer(FakeLinks(250), store, KEY, 100, timedelta(hours=1))
    with pytest.raises(UnsignableChain, match="not the ledger's"):
        await checkpointer.make_due(NOW)
    assert list(store.kept) == [100]


def test_the_anchors_file_takes_checkpoints_events_and_receipts(tmp_path: Path) -> None:
    checkpoint = KEY.checkpoint(4, "ab" * 32, NOW)
    lines = [
        checkpoint.model_dump_json(),
        checkpointed(checkpoint).model_dump_json(),
        json.dumps(receipt()),
        "",
    ]
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text("\n".join(lines), encoding="utf-8")
    found = read_anchors(anchors)
    assert found[:2] == [checkpoint.model_dump()] * 2
    assert found[2]["sequence"] == 1
    anchors.write_text(json.dumps({**receipt(), "checkpoint": None}), encoding="utf-8")
    with pytest.raises(UnreadableAnchors, match="line 1: no checkpoint"):
        read_anchors(anchors)


async def test_the_loop_announces_what_was_signed_even_while_nothing_new_can_be_signed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(checkpointing, "CHECK_SECONDS", 0)
    store = FakeCheckpoints()
    await store.keep(KEY.checkpoint(100, "h100", NOW))
    checkpointer = Checkpointer(FakeLinks(250, broken=150), store, KEY, 100, timedelta(hours=1))
    published: list[LedgerCheckpointed] = []

    async def publish(event: LedgerCheckpointed) -> None:
        published.append(event)

    loop = asyncio.create_task(checkpointer.run(publish, lambda: NOW))
    async with asyncio.timeout(5):
        while not published:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    loop.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await loop
    assert [event.data.checkpoint.sequence for event in published] == [100]
    assert list(store.kept) == [100]  # link 150 does not verify: nothing past it is signed
