"""MongoDB adapters: applications (with status and timeline) and the append-only acceptance chain."""

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from pymongo import ASCENDING, DESCENDING, AsyncMongoClient, ReturnDocument, UpdateOne
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import BulkWriteError, DuplicateKeyError, OperationFailure

from agency_chassis.metrics import LEDGER_LENGTH
from agency_chassis.mongo import duplicate_keys
from agency_shared.application_status import Status
from agency_shared.chain import GENESIS, ChainReport, Head, link_fault, verify_links_async
from agency_shared.checkpoints import chain_disagrees
from agency_shared.events import DocumentReceivedData, NotificationSettledData
from agreements.checkpointing import UnsignableChain
from agreements.documents import document_kind, document_link
from agreements.recording import (
    ApplicationErased,
    ApplicationRecord,
    LedgerEntry,
    acceptance_link,
    millisecond_precision,
)
from agreements.verification import EMAIL_VERIFIED, VerificationEvidence, verification_link

Document = dict[str, Any]
# Builds a link on the head it is given: where in the chain it lands is known only when it is written.
LinkBuilder = Callable[[Head], LedgerEntry]


# What an erased value becomes wherever it appeared in text (timeline keys, SMTP replies, notes).
ERASED = "[erased]"


class LedgerContention(Exception):
    """Other writers kept taking the next sequence number; the message is retried later."""


class ErasureContention(Exception):
    """The application kept changing while its personal data was being erased; asking again finishes it."""


class StillRecording(Exception):
    """The acceptance is not in the ledger yet: erasing now would leave no record that it happened."""


class MongoApplications:
    """One document per application: the submission, its status, and a timeline of what happened to it."""

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.collection: AsyncCollection[Document] = client[database]["applications"]

    async def ensure_indexes(self) -> None:
        c = self.collection
        await c.create_index([("application_id", ASCENDING)], unique=True, name="application_id_unique")
        await c.create_index([("received_at", DESCENDING), ("application_id", DESCENDING)], name="received_order")
        await c.create_index([("status", ASCENDING)], name="status")
        await c.create_index([("application.company.country", ASCENDING)], name="country")
        await c.create_index([("acceptance.agreement_version", ASCENDING)], name="agreement_version")

    async def add(self, record: ApplicationRecord) -> ApplicationRecord:
        [stored] = await self.add_many([record])
        if isinstance(stored, ApplicationErased):
            raise stored
        return stored

    async def add_many(self, records: Sequence[ApplicationRecord]) -> list[ApplicationRecord | ApplicationErased]:
        """Store each record unless its application is stored already (one unordered insert); per record, the
        stored one, or ``ApplicationErased`` when that one's personal data was erased."""
        try:
            await self.collection.insert_many([_application_document(record) for record in records], ordered=False)
            return list(records)
        except BulkWriteError as exc:
            taken = set(duplicate_keys(exc))
        # Stored before (a redelivery, or twice in this batch): what was stored is what counts.
        wanted = [str(records[index].application_id) for index in taken]
        found = self.collection.find({"application_id": {"$in": wanted}}, {"_id": 0})
        existing = {document["application_id"]: document async for document in found}
        stored: list[ApplicationRecord | ApplicationErased] = []
        for index, record in enumerate(records):
            key = str(record.application_id)
            if index not in taken:
                stored.append(record)
            elif key not in existing:  # pragma: no cover - a unique index violation implies the document exists
                raise RuntimeError(f"application {key} refused as a duplicate, yet not found")
            elif "erasure" in existing[key]:
                stored.append(ApplicationErased(key))
            else:
                stored.append(ApplicationRecord.model_validate(existing[key]))
        return stored

    async def mark_recorded_many(self, recorded: Sequence[tuple[ApplicationRecord, LedgerEntry]]) -> None:
        """Each application recorded as its link says: one atomic update each (in one command), and only from
        "received", so a repeat finds nothing left to do."""
        updates = []
        for record, entry in recorded:
            moment = _moment("recorded", "recorded", record.recorded_at, {"sequence": entry.sequence})
            updates.append(UpdateOne(
                {"application_id": str(record.application_id), "status": Status.RECEIVED},
                {"$set": {"status": Status.RECORDED, "sequence": entry.sequence, "record_hash": entry.record_hash},
                 "$push": {"timeline": moment}},
            ))  # fmt: skip
        if updates:
            await self.collection.bulk_write(updates, ordered=False)

    async def note_notification(self, settled: NotificationSettledData) -> None:
        """Add an email's outcome to its application's timeline (a repeat changes nothing)."""
        if settled.application_id is None:
            return
        key = str(settled.application_id)
        kind = "email_sent" if settled.state == "sent" else "email_failed"
        detail = {"template": settled.template, "recipient": settled.recipient, "detail": settled.detail}
        await self._add_moment(
            key, _moment(f"{settled.notification_key}:{settled.state}", kind, settled.settled_at, detail)
        )
        reached = STATUS_ON_SENT.get(settled.template)
        if settled.state == "sent" and reached is not None:
            await self._move_to(key, reached)

    async def _move_to(self, application_id: str, status: Status) -> None:
        """Forward only: a late event about an earlier step never moves an application back."""
        await self.collection.update_one(
            {"application_id": application_id, "status": {"$in": status.earlier()}}, {"$set": {"status": status}}
        )

    async def stored_application(self, application_id: uuid.UUID) -> ApplicationRecord | None:
        """The stored application; None if unknown. Raises ``ApplicationErased`` once its data was erased."""
        document = await self.get(application_id)
        if document is None:
            return None
        if "erasure" in document:
            raise ApplicationErased(str(application_id))
        return ApplicationRecord.model_validate(document)

    async def keep_verification(
        self, application_id: uuid.UUID, evidence: VerificationEvidence
    ) -> VerificationEvidence:
        """Store the evidence of the verification unless some is stored already; the stored one (the first wins).

        A double click gives two copies of email.verified with one id and different times:
        the ledger link is made from what is stored here, so every replica builds the same one.
        """
        document = evidence.model_dump(mode="json")
        document["verified_at"], document["recorded_at"] = evidence.verified_at, evidence.recorded_at
        await self.collection.update_one(
            {"application_id": str(application_id), "email_verification": {"$exists": False},
             "erasure": {"$exists": False}},
            {"$set": {"email_verification": document}},
        )  # fmt: skip
        stored = await self.collection.find_one({"application_id": str(application_id)}, {"email_verification": 1})
        if stored is None or "email_verification" not in stored:
            raise ApplicationErased(str(application_id))
        return VerificationEvidence.model_validate(stored["email_verification"])

    async def mark_verified(self, application_id: uuid.UUID, entry: LedgerEntry, at: datetime) -> None:
        key = str(application_id)
        await self._add_moment(key, _moment(EMAIL_VERIFIED, EMAIL_VERIFIED, at, {"sequence": entry.sequence}))
        await self._move_to(key, Status.VERIFIED)

    async def mark_reaccepted(self, application_id: uuid.UUID, evidence: Document, entry: LedgerEntry) -> None:
        """Keep the re-acceptance's evidence and count its version as accepted (so the application leaves the
        re-acceptance list); a repeat changes nothing. Not on an erased application."""
        key, version = str(application_id), evidence["version"]
        await self.collection.update_one(
            {"application_id": key, "reacceptances.version": {"$ne": version}, "erasure": {"$exists": False}},
            {"$push": {"reacceptances": evidence}, "$addToSet": {"accepted_versions": version}},
        )
        moment = _moment(f"reaccepted:{version}", "reaccepted", evidence["accepted_at"],
                         {"sequence": entry.sequence, "version": version})  # fmt: skip
        await self._add_moment(key, moment)

    async def _add_moment(self, application_id: str, moment: Document) -> None:
        # Filtering on the key makes a repeated event a no-op. An erased application's timeline
        # is closed: a late outcome would bring the applicant's address back.
        await self.collection.update_one(
            {"application_id": application_id, "timeline.key": {"$ne": moment["key"]}, "erasure": {"$exists": False}},
            {"$push": {"timeline": moment}},
        )

    async def erased_at(self, application_id: uuid.UUID | str) -> datetime | None:
        """When the applicant's personal data was erased; None if it was not (or the application is unknown)."""
        document = await self.collection.find_one({"application_id": str(application_id)}, {"erasure.erased_at": 1})
        erasure = document.get("erasure") if document else None
        return erasure["erased_at"] if erasure else None

    async def erase(self, application_id: uuid.UUID | str, reason: str | None, now: datetime) -> Document | None:
        """Remove the applicant's personal data, leaving a tombstone; the existing tombstone if erased before.

        The document is rewritten only if its timeline has not grown meanwhile (moments are
        only ever pushed), so an email outcome noted concurrently is never written back in plain.
        """
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as MongoDB keeps it: a repeat answers alike
        for _ in range(10):
            document = await self.collection.find_one({"application_id": str(application_id)})
            if document is None:
                return None
            if "erasure" in document:
                return dict(document["erasure"])
            if document.get("status") == Status.RECEIVED:
                raise StillRecording(str(application_id))
            update = erasure_update(document, reason, now)
            written = await self.collection.update_one(
                {"_id": document["_id"], "erasure": {"$exists": False},
                 "timeline": {"$size": len(document.get("timeline", []))}},
                update,
            )  # fmt: skip
            if written.matched_count:
                return dict(update["$set"]["erasure"])
        raise ErasureContention(str(application_id))

    async def get(self, application_id: uuid.UUID | str) -> Document | None:
        return await self.collection.find_one({"application_id": str(application_id)}, {"_id": 0})

    def find(self, query: Document, limit: int | None = None) -> AsyncIterator[Document]:
        cursor = self.collection.find(query, {"_id": 0}).sort(
            [("received_at", DESCENDING), ("application_id", DESCENDING)]
        )
        return cursor.limit(limit) if limit else cursor


# What an email's delivery says about where its application stands.
STATUS_ON_SENT = {"email_verification": Status.AWAITING_VERIFICATION, "client_confirmation": Status.CONFIRMED}


def _application_document(record: ApplicationRecord) -> Document:
    document = record.model_dump(mode="json")
    # Dates that staff filter on are stored as BSON dates, not strings.
    document["received_at"] = record.received_at
    document["recorded_at"] = record.recorded_at
    document["status"] = Status.RECEIVED
    document["timeline"] = [
        _moment("submitted", "submitted", record.received_at, {"client_ip": record.acceptance.client_ip})
    ]
    return document


def _moment(key: str, kind: str, at: datetime, detail: Document) -> Document:
    return {"key": key, "kind": kind, "at": at, "detail": detail}


def erasure_update(document: Document, reason: str | None, now: datetime) -> Document:
    """The update that erases ``document``: personal fields removed, the text that may repeat them blanked, a tombstone.

    Only the places where text can repeat a personal value are blanked, each by its path: the
    applicant's notes, each timeline moment's key and what it says of an email (its recipient and
    the SMTP reply) or of the request (its IP), and the reason. Nothing else is touched, so a
    company, an account name or a status that happens to equal a personal value stays as it is.
    """
    application, acceptance = document.get("application", {}), document.get("acceptance", {})
    verification = document.get("email_verification", {})
    operator = application.get("operator", {})
    personal = [operator.get(name) for name in ("name", "email", "phone")]
    observed = [acceptance.get("client_ip"), acceptance.get("user_agent")]
    observed += [verification.get(name) for name in ("email", "client_ip", "user_agent")]
    reacceptances = document.get("reacceptances", [])
    observed += [item.get(name) for item in reacceptances for name in ("client_ip", "user_agent")]
    blank = _blanker([*personal, *observed])
    tombstone = {"erased_at": now, "reason": blank(reason) if reason else None}
    changed: Document = {"application": {key: value for key, value in application.items() if key != "operator"}}
    if isinstance(notes := application.get("notes"), str):
        changed["application"]["notes"] = blank(notes)
    changed["acceptance"] = {key: value for key, value in acceptance.items() if key not in ("client_ip", "user_agent")}
    if verification:
        removed = ("email", "client_ip", "user_agent")
        changed["email_verification"] = {key: value for key, value in verification.items() if key not in removed}
    if reacceptances:
        changed["reacceptances"] = [
            {key: value for key, value in item.items() if key not in ("client_ip", "user_agent")}
            for item in reacceptances
        ]
    moments = [_blanked_moment(moment, blank) for moment in document.get("timeline", [])]
    changed["timeline"] = [*moments, _moment("erased", "personal_data_erased", now, tombstone)]
    changed["erasure"] = tombstone
    # Only the fields above are written: a status moving on meanwhile is kept.
    return {"$set": changed, "$unset": {"personal_salt": ""}}


class MongoEnquiryErasures:
    """The tombstone of each erased enquiry (``enquiry_erasures``: ``_id`` its id, ``erased_at``, ``reason``).

    Agreements holds nothing of an enquiry; it remembers the erasure so that asking again answers
    and announces the same one.
    """

    def __init__(self, client: AsyncMongoClient[Document], database: str) -> None:
        self.collection: AsyncCollection[Document] = client[database]["enquiry_erasures"]

    async def erase(self, enquiry_id: uuid.UUID | str, reason: str | None, now: datetime) -> Document:
        """Keep the tombstone (the first one wins); return it."""
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)  # as MongoDB keeps it: a repeat answers alike
        tombstone = {"erased_at": now, "reason": blank_contact_details(reason) if reason else None}
        stored = await self.collection.find_one_and_update(
            {"_id": str(enquiry_id)}, {"$setOnInsert": tombstone}, upsert=True, return_document=ReturnDocument.AFTER
        )
        if stored is None:  # SecantusDB may answer None to a raced upsert: read what was written
            stored = await self.collection.find_one({"_id": str(enquiry_id)})
        assert stored is not None
        return {"erased_at": stored["erased_at"], "reason": stored["reason"]}


# What looks like an email address or a phone number, in a reason typed about an enquiry, whose values
# agreements does not know (intake takes phone numbers only with "+" and the country code; a name cannot
# be recognised: the staff are asked not to type it).
CONTACT_DETAILS = re.compile(r"[^\s@<>()\[\],;:\"']+@[^\s@<>()\[\],;:\"']+|\+\d[\d ().-]{5,}\d")


def blank_contact_details(text: str) -> str:
    return CONTACT_DETAILS.sub(ERASED, text)


# What a timeline moment's detail may hold that repeats a personal value: an email's recipient and
# the SMTP server's reply or error (``detail``), the submitting request's IP.
MOMENT_TEXT = ("recipient", "detail", "client_ip")
# The moments about an email, whose keys are notification keys: they end with the recipient's address.
# The other moments have fixed keys ("submitted", "recorded"...), which are never blanked.
EMAIL_MOMENTS = ("email_sent", "email_failed")


def _blanked_moment(moment: Document, blank: Callable[[str], str]) -> Document:
    blanked = dict(moment)
    if moment.get("kind") in EMAIL_MOMENTS and isinstance(key := moment.get("key"), str):
        blanked["key"] = blank(key)
    if isinstance(detail := moment.get("detail"), dict):
        blanked["detail"] = {
            name: blank(value) if name in MOMENT_TEXT and isinstance(value, str) else value
            for name, value in detail.items()
        }
    return blanked


def _blanker(values: Iterable[Any]) -> Callable[[str], str]:
    """Replaces each of ``values`` in a text, in any case (keys hold addresses lower-cased).

    A value must stand on its own among Latin letters and digits ("Li" is not blanked in
    "Limited"), but not among Chinese characters, which have no spaces between words
    ("李伟" is blanked in "申请人李伟要求删除"). One-character values are left alone: they
    would blank unrelated letters everywhere.
    """
    words = sorted({value for value in values if isinstance(value, str) and len(value) > 1}, key=len, reverse=True)
    if not words:
        return lambda text: text
    alone = "(?<![A-Za-z0-9_])", "(?![A-Za-z0-9_])"
    pattern = re.compile(rf"{alone[0]}(?:{'|'.join(map(re.escape, words))}){alone[1]}", re.IGNORECASE)
    return lambda text: pattern.sub(ERASED, text)


@dataclass
class MongoAcceptanceLedger:
    """The chain: link ``n`` is the document with ``_id`` n. Appends race optimistically on that key.

    A writer builds the next link on the last one it knows and inserts it; when
    another writer took that sequence first, the unique ``_id`` refuses the insert
    and the writer goes on from the newer link. Nothing is ever updated or
    deleted, so every stored link's predecessor exists and is final: no gaps, and
    every ``prev_hash`` is right, however many replicas write at once.

    Within one process appends take turns (a lock) and remember the link they
    wrote, so a steady stream costs one insert per link: concurrent handlers
    racing for the same sequence would each lose round trips instead.
    """

    client: AsyncMongoClient[Document]
    database: str
    max_tries: int = 200
    # The ledger keys' public keys by key id: what a checkpoint must be signed with.
    public_keys: Mapping[str, bytes] = field(default_factory=dict)
    _writing: asyncio.Lock = field(default_factory=asyncio.Lock, init=False, repr=False)
    _last: Head | None = field(default=None, init=False, repr=False)  # the link this process wrote last

    @property
    def links(self) -> AsyncCollection[Document]:
        return self.client[self.database]["acceptance_ledger"]

    @property
    def heads(self) -> AsyncCollection[Document]:
        return self.client[self.database]["acceptance_ledger_head"]

    async def ensure_indexes(self) -> None:
        # One link of each kind per application: its acceptance (no kind) and its email verification.
        await self.links.create_index(
            [("application_id", ASCENDING), ("kind", ASCENDING)], unique=True, name="application_kind_unique"
        )
        # The index of the ledgers written before verification links existed (one link per application).
        with contextlib.suppress(OperationFailure):
            await self.links.drop_index("application_id_unique")

    async def append_many(self, records: Sequence[ApplicationRecord]) -> list[LedgerEntry]:
        """Each acceptance as the next link, in order (one ordered insert), or its existing link."""
        return await self._append_many(
            [(record.application_id, None, _acceptance_builder(record)) for record in records]
        )

    async def append_verification(
        self, application: ApplicationRecord, acceptance: LedgerEntry, evidence: VerificationEvidence
    ) -> LedgerEntry:
        """Add the verification as the next link, or return its existing link: one per application."""

        def build(after: Head) -> LedgerEntry:
            return verification_link(application, acceptance, evidence, after)

        [entry] = await self._append_many([(application.application_id, EMAIL_VERIFIED, build)])
        return entry

    async def append_document(
        self, data: DocumentReceivedData, acceptance: LedgerEntry, recorded_at: datetime
    ) -> LedgerEntry:
        """Add a client's document (its hash) as the next link, or return its existing link: one per file."""

        def build(after: Head) -> LedgerEntry:
            return document_link(data, acceptance, millisecond_precision(recorded_at), after)

        [entry] = await self._append_many([(data.application_id, document_kind(data.document_id), build)])
        return entry

    async def _append_many(self, wanted: Sequence[tuple[uuid.UUID, str | None, LinkBuilder]]) -> list[LedgerEntry]:
        async with self._writing:
            linked = await self._link_many(wanted)
        if linked:
            # Found links too: an earlier attempt may have written them and failed before moving the head
            # (they are final, and the head never moves back).
            last = max((entry for entry, _ in linked), key=lambda entry: entry.sequence)
            await self._advance_head(last)
            if any(is_new for _, is_new in linked):
                # The length is the sequence of the last link; a racing writer's lower value is
                # overwritten by the next append.
                LEDGER_LENGTH.set(last.sequence)
        return [entry for entry, _ in linked]

    async def _link_many(
        self, wanted: Sequence[tuple[uuid.UUID, str | None, LinkBuilder]]
    ) -> list[tuple[LedgerEntry, bool]]:
        """Insert the links in order with one ordered insert; where one is refused, find out why and go on.

        Refused for its application (that one has its link of this kind: a redelivery), its existing link
        is the answer and the rest follow the links written so far; refused for its sequence (another
        writer took it), the rest are built again after the other writer's link.
        """
        linked: dict[int, tuple[LedgerEntry, bool]] = {}
        todo = list(range(len(wanted)))
        after = self._last or await self._head_or_genesis()
        for _ in range(self.max_tries):
            if not todo:
                return [linked[index] for index in range(len(wanted))]
            entries: list[LedgerEntry] = []
            for index in todo:
                entries.append(wanted[index][2](entries[-1].head if entries else after))
            documents = [_link_document(entry, *wanted[index][:2]) for index, entry in zip(todo, entries, strict=True)]
            try:
                await self.links.insert_many(documents, ordered=True)
                written = len(documents)
            except BulkWriteError as exc:
                written = duplicate_keys(exc)[0]  # an ordered insert stops at its first refusal
            for index, entry in zip(todo[:written], entries[:written], strict=True):
                linked[index] = (entry, True)
            if written == len(todo):
                self._last = entries[-1].head
                return [linked[index] for index in range(len(wanted))]
            self._last = None
            refused = todo[written]
            application_id, kind, _ = wanted[refused]
            after = entries[written - 1].head if written else after
            found = await self._find(application_id, kind)
            if found is not None:  # a redelivery: the application has its link of this kind already
                linked[refused] = (found, False)
                todo = todo[written + 1 :]
                continue
            todo = todo[written:]
            after = await self._after_taken(entries[written].sequence)
        raise LedgerContention(f"no free sequence after {self.max_tries} tries")

    async def _head_or_genesis(self) -> Head:
        return await self.head() or GENESIS

    async def _after_taken(self, sequence: int) -> Head:
        """What to build on once another writer took ``sequence``."""
        head = await self._head_or_genesis()
        if head.sequence >= sequence:  # the head is there already, or past it: jump
            return head
        # The head lags behind the link just written: build on that link (or start over from the head).
        taken = await self.links.find_one({"_id": sequence}, {"record_hash": 1})
        return Head(sequence, str(taken["record_hash"])) if taken else head

    async def _advance_head(self, entry: LedgerEntry) -> None:
        # The head remembers the last link written, so removing links from the end is detectable.
        with contextlib.suppress(DuplicateKeyError):  # a later link already moved the head past this one
            await self.heads.update_one(
                {"_id": "head", "sequence": {"$lt": entry.sequence}},
                {"$set": {"sequence": entry.sequence, "record_hash": entry.record_hash}},
                upsert=True,
            )

    async def append_reacceptance(self, application_id: uuid.UUID, kind: str, build: LinkBuilder) -> LedgerEntry:
        """Add a re-acceptance (``kind`` ``reacceptance:<version>``) as the next link, or return its existing link:
        one per application and version."""
        [entry] = await self._append_many([(application_id, kind, build)])
        return entry

    async def find(self, application_id: uuid.UUID | str) -> LedgerEntry | None:
        """The application's acceptance link."""
        return await self._find(application_id, None)

    async def find_verification(self, application_id: uuid.UUID | str) -> LedgerEntry | None:
        """The link recording that the applicant verified their address, if they did."""
        return await self._find(application_id, EMAIL_VERIFIED)

    async def _find(self, application_id: uuid.UUID | str, kind: str | None) -> LedgerEntry | None:
        of_kind = {"kind": kind} if kind is not None else {"kind": {"$exists": False}}
        link = await self.links.find_one({"application_id": str(application_id), **of_kind})
        return None if link is None else _entry(link)

    def walk(self) -> AsyncIterator[Document]:
        return self.links.find({}).sort("_id", ASCENDING)

    async def head(self) -> Head | None:
        """The last link written, as the head marker remembers it; None before the first."""
        head = await self.heads.find_one({"_id": "head"})
        return Head(int(head["sequence"]), str(head["record_hash"])) if head else None

    @property
    def checkpoints(self) -> AsyncCollection[Document]:
        return self.client[self.database]["ledger_checkpoints"]

    async def verify(self, anchors: Sequence[Mapping[str, Any]] = ()) -> ChainReport:
        """Walk the whole chain against the head marker, then hold it against every stored checkpoint and
        ``anchors`` (checkpoints kept outside: the archive mailbox, receipts); report the first fault, if any."""
        head = await self.head()
        report = await verify_links_async(self.walk(), head)
        if not report.ok:
            return report
        stored = await self.checkpoints.find({}, {"_id": 0, "announced": 0}).to_list()
        signed = sorted([*stored, *anchors], key=_sequence_of)
        wanted = [checkpoint.get("sequence") for checkpoint in signed]
        found = self.links.find({"_id": {"$in": wanted}}, {"record_hash": 1})
        hashes = {link["_id"]: str(link["record_hash"]) async for link in found}
        for checkpoint in signed:
            fault = chain_disagrees(checkpoint, hashes.get(checkpoint.get("sequence")), self.public_keys)
            if fault is not None:
                at = checkpoint.get("sequence")
                return replace(report, ok=False, broken_at=at if isinstance(at, int) else None, reason=fault)
        return replace(report, checkpoints=len(signed))

    async def verified_through(self, start: Head, end: int) -> Head:
        """Check links ``start.sequence + 1`` … ``end`` follow ``start`` (the latest checkpoint); the head at ``end``.

        Nothing is signed on a chain that does not verify since the last checkpoint."""
        last = start
        async for link in self.links.find({"_id": {"$gt": start.sequence, "$lte": end}}).sort("_id", ASCENDING):
            if fault := link_fault(link, last):
                raise UnsignableChain(fault)
            last = Head(last.sequence + 1, str(link["record_hash"]))
        if last.sequence != end:
            raise UnsignableChain(f"link {last.sequence + 1} is missing")
        return last

    async def measure(self) -> None:
        """Set ``wechat_ledger_length`` from the head (at start-up; appends keep it current)."""
        head = await self.head()
        LEDGER_LENGTH.set(head.sequence if head else 0)

    def entries(self) -> AsyncIterator[Document]:
        """The acceptance links, in order (the acceptances export)."""
        return self.links.find({"kind": {"$exists": False}}, {"_id": 0, "record": 1, "record_hash": 1}).sort(
            "_id", ASCENDING
        )


def _acceptance_builder(record: ApplicationRecord) -> LinkBuilder:
    return lambda after: acceptance_link(record, after)


def _link_document(entry: LedgerEntry, application_id: uuid.UUID, kind: str | None) -> Document:
    document = {"_id": entry.sequence, "sequence": entry.sequence, "application_id": str(application_id),
                "record_hash": entry.record_hash, "record": entry.record}  # fmt: skip
    if kind is not None:
        document["kind"] = kind
    return document


def _sequence_of(checkpoint: Mapping[str, Any]) -> int:
    """Where a checkpoint sorts (one without a whole-number sequence first: it is reported as malformed)."""
    sequence = checkpoint.get("sequence")
    return sequence if isinstance(sequence, int) else 0


def _entry(link: Document) -> LedgerEntry:
    record = link["record"]
    return LedgerEntry(
        sequence=link["sequence"], prev_hash=record["prev_hash"], record_hash=link["record_hash"], record=record
    )
