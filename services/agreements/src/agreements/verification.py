"""Walking the acceptance chain and naming its first broken link."""

from collections.abc import AsyncIterable
from typing import Any

from pydantic import BaseModel

from agency_shared.receipt_verifier import GENESIS_HASH, record_hash


class ChainReport(BaseModel):
    ok: bool
    checked: int
    head_sequence: int | None = None
    head_hash: str | None = None
    broken_at: int | None = None
    reason: str | None = None


async def verify_chain(links: AsyncIterable[dict[str, Any]], head: dict[str, Any] | None) -> ChainReport:
    """``links`` in ``_id`` (= sequence) order; ``head`` is the last link the ledger remembers writing."""
    expected, prev_hash, checked = 1, GENESIS_HASH, 0

    def broken(at: int, reason: str) -> ChainReport:
        return ChainReport(ok=False, checked=checked, broken_at=at, reason=reason)

    async for link in links:
        stored = link.get("record")
        record: dict[str, Any] = stored if isinstance(stored, dict) else {}
        position = link.get("_id")
        if position != expected:
            if isinstance(position, int) and position > expected:
                return broken(expected, f"link {expected} is missing (the next stored link is {position})")
            return broken(expected, f"link stored as {position!r} where {expected} belongs")
        if link.get("sequence") != expected or record.get("sequence") != expected:
            return broken(
                expected, f"link {expected} carries sequence {link.get('sequence')!r} / {record.get('sequence')!r}"
            )
        if record.get("prev_hash") != prev_hash:
            return broken(expected, f"link {expected} does not point at link {expected - 1} (prev_hash differs)")
        computed = record_hash(record)
        if computed != link.get("record_hash"):
            return broken(
                expected,
                f"link {expected} was altered: its record hashes to {computed}, stored {link.get('record_hash')}",
            )
        prev_hash, checked, expected = computed, checked + 1, expected + 1
    last = expected - 1
    if head is not None and head.get("sequence", 0) > last:
        return broken(last + 1, f"the chain ends at {last} but link {head['sequence']} was written: links were removed")
    if head is not None and head.get("sequence") == last and head.get("record_hash") != prev_hash:
        return broken(last, f"link {last} is not the link that was written last (head hash differs)")
    return ChainReport(ok=True, checked=checked, head_sequence=last or None, head_hash=prev_hash if last else None)
