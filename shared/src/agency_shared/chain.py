"""The acceptance ledger's hash chain: canonical form, hashing, the next link, and verifying a chain of links.

Pure functions on plain data: ledger storage, ``python -m agreements verify``, the staff
API's check, the receipt verifier and the tests all use these, and nothing else computes a
link or a hash. Standard library only, and nothing newer than the receipt verifier needs,
because the one-file verifier carries a copy of it (``agency_shared.receipts.standalone_verifier``).
"""

import hashlib
import json
from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# What link 1 points at: there is no link 0.
GENESIS_HASH = "0" * 64


def canonical_json(record: Mapping[str, Any]) -> bytes:
    """The bytes that are hashed: keys sorted, no whitespace, UTF-8, non-ASCII as is.

    Values are only objects, strings, integers and null (no floats), so this is
    RFC 8785 (JCS) for the records we write.
    """
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_hash(record: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


@dataclass(frozen=True)
class Head:
    """Where a chain ends: its last link's sequence and record hash."""

    sequence: int
    record_hash: str


# The end of an empty chain: the first link gets sequence 1 and points at GENESIS_HASH.
GENESIS = Head(0, GENESIS_HASH)


@dataclass(frozen=True)
class Link:
    """One link: its ``record`` holds ``sequence`` and ``prev_hash`` too, and ``record_hash`` covers all of it."""

    sequence: int
    prev_hash: str
    record_hash: str
    record: dict[str, Any]

    @property
    def head(self) -> Head:
        """The chain's end once this link is its last."""
        return Head(self.sequence, self.record_hash)


def next_link(head: Head, content: Mapping[str, Any]) -> Link:
    """The link that follows ``head`` and records ``content`` (flat; without ``sequence`` and ``prev_hash``)."""
    if "sequence" in content or "prev_hash" in content:
        raise ValueError("a link's sequence and prev_hash come from the chain, not from its content")
    sequence = head.sequence + 1
    record = {"sequence": sequence, "prev_hash": head.record_hash, **content}
    return Link(sequence=sequence, prev_hash=head.record_hash, record_hash=record_hash(record), record=record)


@dataclass(frozen=True)
class ChainReport:
    """The verdict on a chain: intact (with its end), or where it first breaks and why."""

    ok: bool
    checked: int
    head_sequence: int | None = None
    head_hash: str | None = None
    broken_at: int | None = None
    reason: str | None = None
    # Signed checkpoints (stored and given from outside) the chain was checked against.
    checkpoints: int = 0


def link_fault(link: Mapping[str, Any], after: Head) -> str | None:
    """Why the stored ``link`` cannot come right after ``after``; None when it can.

    ``link`` is a link as the ledger stores it: ``{"_id": n, "sequence": n, "record_hash": …,
    "record": {…}}``, where ``_id`` is its place in the chain.
    """
    expected = after.sequence + 1
    stored = link.get("record")
    record: Mapping[str, Any] = stored if isinstance(stored, dict) else {}
    position = link.get("_id")
    if position != expected:
        if isinstance(position, int) and position > expected:
            return f"link {expected} is missing (the next stored link is {position})"
        return f"link stored as {position!r} where {expected} belongs"
    if link.get("sequence") != expected or record.get("sequence") != expected:
        return f"link {expected} carries sequence {link.get('sequence')!r} / {record.get('sequence')!r}"
    if record.get("prev_hash") != after.record_hash:
        return f"link {expected} does not point at link {after.sequence} (prev_hash differs)"
    computed = record_hash(record)
    if computed != link.get("record_hash"):
        return f"link {expected} was altered: its record hashes to {computed}, stored {link.get('record_hash')}"
    return None


def verify_links(links: Iterable[Mapping[str, Any]], head: Head | None) -> ChainReport:
    """Check ``links`` in sequence order, then that they end where ``head`` (the last link written) says."""
    last = GENESIS
    for link in links:
        if fault := link_fault(link, last):
            return _broken(last, last.sequence + 1, fault)
        last = Head(last.sequence + 1, link["record_hash"])
    return _ending(last, head)


async def verify_links_async(links: AsyncIterable[Mapping[str, Any]], head: Head | None) -> ChainReport:
    """``verify_links`` for links streamed from a database, without holding them all."""
    last = GENESIS
    async for link in links:
        if fault := link_fault(link, last):
            return _broken(last, last.sequence + 1, fault)
        last = Head(last.sequence + 1, link["record_hash"])
    return _ending(last, head)


def _ending(last: Head, head: Head | None) -> ChainReport:
    """The report once every link checked out: ``last`` is where they end, ``head`` where they should."""
    if head is not None and head.sequence > last.sequence:
        return _broken(
            last,
            last.sequence + 1,
            f"the chain ends at {last.sequence} but link {head.sequence} was written: links were removed",
        )
    if head is not None and head.sequence == last.sequence and head.record_hash != last.record_hash:
        reason = f"link {last.sequence} is not the link that was written last (head hash differs)"
        return _broken(last, last.sequence, reason)
    if last == GENESIS:
        return ChainReport(ok=True, checked=0)
    return ChainReport(ok=True, checked=last.sequence, head_sequence=last.sequence, head_hash=last.record_hash)


def _broken(last_good: Head, at: int, reason: str) -> ChainReport:
    return ChainReport(ok=False, checked=last_good.sequence, broken_at=at, reason=reason)
