"""The upload slots of one casework replica: so many at once, two per case, a bounded wait, always given back."""

import asyncio

import pytest

from casework.documents.inspection import RefusedDocument
from casework.documents.uploads import UploadSlots


async def test_a_request_waits_for_a_slot_then_is_refused_as_busy() -> None:
    slots = UploadSlots(at_once=1, wait_seconds=0.05)
    async with slots.slot("case-a"):
        with pytest.raises(RefusedDocument) as refused:
            async with slots.slot("case-b"):
                pass
    assert (refused.value.status, refused.value.reason) == (503, "busy")
    assert slots.sending("case-b") == 0
    async with slots.slot("case-b"):  # free again
        assert slots.sending("case-b") == 1


async def test_a_waiting_request_gets_the_slot_given_back() -> None:
    slots = UploadSlots(at_once=1, wait_seconds=5)
    first = slots.slot("case-a")
    await first.__aenter__()
    waiting = asyncio.create_task(slots.slot("case-b").__aenter__())
    await asyncio.sleep(0)
    assert not waiting.done()
    await first.__aexit__(None, None, None)
    await asyncio.wait_for(waiting, 1)


async def test_a_case_has_two_at_once_and_a_failed_upload_gives_its_slot_back() -> None:
    slots = UploadSlots(at_once=8, wait_seconds=0.5)
    async with slots.slot("case-a"), slots.slot("case-a"):
        with pytest.raises(RefusedDocument) as refused:
            async with slots.slot("case-a"):
                pass
        async with slots.slot("case-b"):  # another case is not held back
            pass
    assert (refused.value.status, refused.value.reason) == (429, "busy_case")
    with pytest.raises(ValueError, match="broken"):
        async with slots.slot("case-a"):
            raise ValueError("broken")
    assert slots.sending("case-a") == 0
    # All eight come back: eight cases hold one each, all at once.
    inside, release = [], asyncio.Event()

    async def hold(case: str) -> None:
        async with slots.slot(case):
            inside.append(case)
            await release.wait()

    async with asyncio.TaskGroup() as group:
        for number in range(8):
            group.create_task(hold(f"case-{number}"))
        async with asyncio.timeout(1):
            while len(inside) < 8:  # noqa: ASYNC110 - the holders are tasks of this loop
                await asyncio.sleep(0)
        release.set()


async def test_a_request_cancelled_while_waiting_leaves_no_count() -> None:
    slots = UploadSlots(at_once=1, wait_seconds=5)
    async with slots.slot("case-a"):
        waiting = asyncio.create_task(slots.slot("case-b").__aenter__())
        await asyncio.sleep(0)
        assert slots.sending("case-b") == 1
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert slots.sending("case-b") == 0
