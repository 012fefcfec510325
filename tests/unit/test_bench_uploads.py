"""The uploads benchmark's own parts: the file it sends is one casework keeps, and its memory probe sees growth."""

import os
from collections.abc import AsyncIterator

from bench.uploads import SIZE, PeakMemory, five_mib_pdf
from casework.documents.inspection import DocumentLimits, check_pdf, content_type_of


async def in_chunks(content: bytes, size: int = 255 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


async def test_the_file_is_five_mib_of_a_pdf_casework_keeps() -> None:
    content = five_mib_pdf()
    assert len(content) == SIZE
    assert content_type_of(content[:8192]) == "application/pdf"
    limits = DocumentLimits(max_bytes=10 * 1024 * 1024, max_pixels=1, max_inflate_ratio=100,
                            max_inflated_bytes=200 * 1024 * 1024)  # fmt: skip
    assert await check_pdf(in_chunks(content), len(content), limits) > 0


def test_the_probe_sees_memory_taken_after_it_started() -> None:
    probe = PeakMemory(os.getpid())
    held = b"x" * (64 * 1024 * 1024)  # written, so resident
    figures = probe.stop()
    assert len(held) == 64 * 1024 * 1024
    assert 60 <= figures["growth_mib"] < 200
    assert abs(figures["peak_mib"] - figures["baseline_mib"] - figures["growth_mib"]) <= 0.1
