"""Counting what ``CoalescedWrites`` sends: how many of its callers' writes each of its socket writes carried."""

import pytest

from agency_chassis.coalescing import CoalescedWrites


def count_flushes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on (for the test), one entry per flush that sent anything: how many writes it carried."""
    flushes: list[int] = []
    flush = CoalescedWrites.flush

    def counted(writes: CoalescedWrites) -> None:
        if writes._kept:
            flushes.append(len(writes._kept))
        flush(writes)

    monkeypatch.setattr(CoalescedWrites, "flush", counted)
    return flushes
