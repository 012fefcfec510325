"""The hash chain's pure functions: building links from the genesis on, and naming the first broken one."""

import hashlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from agency_shared.chain import (
    GENESIS,
    GENESIS_HASH,
    ChainReport,
    Head,
    Link,
    next_link,
    verify_links,
    verify_links_async,
)

Stored = dict[str, Any]


def stored(link: Link) -> Stored:
    """A link as the ledger stores it: ``_id`` is its place in the chain."""
    return {"_id": link.sequence, "sequence": link.sequence, "record_hash": link.record_hash, "record": link.record}


def chain(length: int) -> list[Link]:
    links: list[Link] = []
    for number in range(1, length + 1):
        links.append(next_link(links[-1].head if links else GENESIS, {"application_id": f"app-{number}"}))
    return links


def test_the_first_link_points_at_the_genesis_hash_and_hashes_its_canonical_record() -> None:
    link = next_link(GENESIS, {"company_name": "枫叶茶 Ltd", "locale": "zh-CN"})

    assert GENESIS_HASH == "0" * 64
    assert (link.sequence, link.prev_hash) == (1, GENESIS_HASH)
    assert link.record == {"sequence": 1, "prev_hash": GENESIS_HASH, "company_name": "枫叶茶 Ltd", "locale": "zh-CN"}
    canonical = '{"company_name":"枫叶茶 Ltd","locale":"zh-CN","prev_hash":"' + "0" * 64 + '","sequence":1}'
    assert link.record_hash == hashlib.sha256(canonical.encode()).hexdigest()
    assert link.head == Head(1, link.record_hash)


def test_the_next_link_follows_the_head_it_is_built_on() -> None:
    first = next_link(GENESIS, {"application_id": "a"})
    second = next_link(first.head, {"application_id": "b"})

    assert (second.sequence, second.prev_hash) == (2, first.record_hash)
    assert (second.record["sequence"], second.record["prev_hash"]) == (2, first.record_hash)
    canonical = '{"application_id":"b","prev_hash":"' + first.record_hash + '","sequence":2}'
    assert second.record_hash == hashlib.sha256(canonical.encode()).hexdigest()
    # The same content after another head is another link.
    assert next_link(Head(1, "f" * 64), {"application_id": "b"}).record_hash != second.record_hash


def test_content_cannot_choose_its_own_place_in_the_chain() -> None:
    with pytest.raises(ValueError, match="come from the chain"):
        next_link(GENESIS, {"sequence": 9, "application_id": "a"})
    with pytest.raises(ValueError, match="come from the chain"):
        next_link(GENESIS, {"prev_hash": "f" * 64})


def test_an_intact_chain_is_reported_with_its_end() -> None:
    links = chain(3)

    assert verify_links(map(stored, links), links[-1].head) == ChainReport(
        ok=True, checked=3, head_sequence=3, head_hash=links[-1].record_hash
    )
    assert verify_links([], None) == ChainReport(ok=True, checked=0)


def broken(links: Iterable[Stored], head: Head | None) -> tuple[int | None, int, str]:
    report = verify_links(links, head)
    assert not report.ok
    assert report.head_sequence is None
    return report.broken_at, report.checked, report.reason or ""


def test_a_changed_record_is_named_as_altered() -> None:
    links = [stored(link) for link in chain(4)]
    links[2]["record"] = {**links[2]["record"], "application_id": "someone-else"}

    at, checked, reason = broken(links, None)

    assert (at, checked) == (3, 2)
    assert "link 3 was altered" in reason


def test_a_link_built_on_another_link_is_named_by_its_prev_hash() -> None:
    links = chain(3)
    # Link 3 rebuilt on a head that is not link 2: its own hash is right, its pointer is not.
    relinked = next_link(Head(2, "f" * 64), {"application_id": "app-3"})

    at, checked, reason = broken([*map(stored, links[:2]), stored(relinked)], relinked.head)

    assert (at, checked) == (3, 2)
    assert reason == "link 3 does not point at link 2 (prev_hash differs)"


def test_a_removed_link_is_named_as_missing() -> None:
    links = chain(4)

    at, checked, reason = broken([stored(links[0]), *map(stored, links[2:])], links[-1].head)

    assert (at, checked) == (2, 1)
    assert reason == "link 2 is missing (the next stored link is 3)"


def test_links_swapped_or_renumbered_are_named_by_their_sequence() -> None:
    first, second, third = map(stored, chain(3))
    swapped = [first, {**third, "_id": 2}, {**second, "_id": 3}]

    at, checked, reason = broken(swapped, None)

    assert (at, checked) == (2, 1)
    assert reason == "link 2 carries sequence 3 / 3"
    renumbered = [first, {**second, "_id": "2"}]
    assert broken(renumbered, None) == (2, 1, "link stored as '2' where 2 belongs")


def test_links_removed_from_the_end_are_caught_by_the_head() -> None:
    links = chain(4)

    at, checked, reason = broken(map(stored, links[:2]), links[-1].head)

    assert (at, checked) == (3, 2)
    assert reason == "the chain ends at 2 but link 4 was written: links were removed"


def test_a_last_link_that_is_not_the_one_written_last_is_caught_by_the_head_hash() -> None:
    links = chain(3)

    at, checked, reason = broken(map(stored, links), Head(3, links[1].record_hash))

    assert (at, checked) == (3, 3)
    assert reason == "link 3 is not the link that was written last (head hash differs)"
    assert broken([], Head(0, "f" * 64))[0] == 0


async def test_links_streamed_from_a_database_get_the_same_verdict() -> None:
    links = [stored(link) for link in chain(5)]
    altered = [*links[:3], {**links[3], "record_hash": "f" * 64}, links[4]]

    async def stream(items: list[Stored]) -> AsyncIterator[Stored]:
        for item in items:
            yield item

    for case, head in ((links, Head(5, links[4]["record_hash"])), (altered, None), (links[:4], Head(5, "f" * 64))):
        assert await verify_links_async(stream(case), head) == verify_links(case, head)
    assert (await verify_links_async(stream(altered), None)).broken_at == 4
