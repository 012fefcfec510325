"""The upload checks as pure functions: types by content, names, the PDF inflation budget across chunk boundaries,
the checklists' data."""

import io
import zlib

import pytest

from casework.documents.checklists import DEFAULT, checklist_for, checklists
from casework.documents.inspection import (
    MAX_NAME_LENGTH,
    DocumentLimits,
    FlateBudget,
    RefusedDocument,
    check_image,
    check_pdf,
    content_type_of,
    safe_name,
)
from casework.documents.store import CHUNK_BYTES
from tests.support.documents import EXE, HTML, flate_bomb_pdf, in_slices, jpeg, pdf, pixel_bomb_png, png

LIMITS = DocumentLimits(max_bytes=10 * 1024 * 1024, max_pixels=40_000_000, max_inflate_ratio=100,
                        max_inflated_bytes=200 * 1024 * 1024)  # fmt: skip


def test_types_come_from_the_content() -> None:
    assert [content_type_of(data) for data in (pdf(), jpeg(), png())] == ["application/pdf", "image/jpeg", "image/png"]
    for data, reason in ((EXE, "wrong_type"), (HTML, "unknown_type"), (b"", "unknown_type")):
        with pytest.raises(RefusedDocument) as refused:
            content_type_of(data)
        assert (refused.value.status, refused.value.reason) == (415, reason)


@pytest.mark.parametrize(
    ("name", "content_type", "kept"),
    [
        ("C:\\Users\\me\\护照.JPEG", "image/jpeg", "护照.jpeg"),
        ("scan.pdf", "image/png", "scan.png"),
        ("\u202eexe.pdf", "application/pdf", "exe.pdf"),
        ("zero\u200bwidth.pdf", "application/pdf", "zerowidth.pdf"),
        ("  . hidden . ", "application/pdf", "hidden.pdf"),
        ("report.final.v2", "application/pdf", "report.final.pdf"),
        ("x" * 5000, "application/pdf", "x" * (MAX_NAME_LENGTH - 4) + ".pdf"),
    ],
)
def test_names(name: str, content_type: str, kept: str) -> None:
    assert safe_name(name, content_type) == kept


@pytest.mark.parametrize("step", [7, 4096, 1 << 20])
def test_the_inflation_budget_counts_across_chunk_boundaries(step: int) -> None:
    content = b"BT (hello) Tj ET " * 2000
    document = pdf(zlib.compress(content)) + pdf(zlib.compress(content))
    budget = FlateBudget(10 * 1024 * 1024)
    for start in range(0, len(document), step):
        budget.feed(document[start : start + step])
    assert budget.inflated == 2 * len(content)


def feed_all(budget: FlateBudget, document: bytes, step: int) -> None:
    for start in range(0, len(document), step):
        budget.feed(document[start : start + step])


@pytest.mark.parametrize("step", [4096, 1 << 20])
def test_a_flate_bomb_is_refused_at_the_allowance(step: int) -> None:
    document = flate_bomb_pdf(32)
    budget = FlateBudget(LIMITS.inflated_allowance(len(document)))
    with pytest.raises(RefusedDocument) as refused:
        feed_all(budget, document, step)
    assert refused.value.reason == "decompression_bomb"
    assert budget.inflated <= budget.allowance + 65_536  # stopped at the limit, not after inflating it all


def bomb_stream(megabytes: int) -> bytes:
    squeezer = zlib.compressobj(9)
    return b"".join(squeezer.compress(bytes(1 << 20)) for _ in range(megabytes)) + squeezer.flush()


def with_filter(document: bytes, filters: bytes) -> bytes:
    return document.replace(b"/Filter /FlateDecode", b"/Filter " + filters, 1)


def fed_whole(document: bytes, step: int) -> None:
    budget = FlateBudget(LIMITS.inflated_allowance(len(document)))
    feed_all(budget, document, step)
    budget.finish()


def refusal_of(document: bytes, step: int = CHUNK_BYTES) -> RefusedDocument:
    with pytest.raises(RefusedDocument) as refused:
        fed_whole(document, step)
    return refused.value


@pytest.mark.parametrize(
    "filters",
    [
        b"[/ASCIIHexDecode /FlateDecode]",
        b"[ /AHx /Fl ]",
        b"/ASCII85Decode",
        b"/LZWDecode",
        b"/RunLengthDecode",
        b"/Crypt",
        b"[/FlateDecode /FlateDecode]",
        b"[/FlateDecode /DCTDecode]",
        b"/AS#43IIHexDecode",
    ],
)
def test_a_stream_with_a_filter_we_cannot_bound_is_refused(filters: bytes) -> None:
    hex_bomb = bomb_stream(64).hex().encode() + b">"
    refused = refusal_of(with_filter(pdf(hex_bomb), filters))
    assert (refused.status, refused.reason) == (422, "unsupported_filter")
    assert filters.strip(b"[ ]").split()[0].decode().replace("#43", "C").lstrip("/") in refused.detail


@pytest.mark.parametrize("filters", [b"/DCTDecode", b"[/JPXDecode]", b"/CCITTFaxDecode", b"/JBIG2Decode"])
def test_image_codecs_pass_without_inflating(filters: bytes) -> None:
    budget = FlateBudget(LIMITS.inflated_allowance(1000))
    feed_all(budget, with_filter(pdf(jpeg(64, 64)), filters), 4096)
    budget.finish()
    assert budget.inflated == 0


def test_a_filter_as_an_indirect_reference_or_twice_is_refused() -> None:
    for filters in (b"9 0 R", b"/FlateDecode /Filter /LZWDecode"):
        assert refusal_of(with_filter(pdf(), filters)).reason == "broken_pdf"


SOUND = zlib.compress(b"".join(b"line %d of the certificate\n" % number for number in range(2000)))


@pytest.mark.parametrize("corrupt", [b"not zlib at all", SOUND[:2] + b"\xff" * 8 + SOUND[10:]])
def test_a_flate_stream_that_does_not_inflate_is_refused(corrupt: bytes) -> None:
    refused = refusal_of(pdf(corrupt))
    assert (refused.status, refused.reason) == (422, "broken_pdf")


def test_a_flate_stream_cut_short_at_the_end_of_the_file_is_refused() -> None:
    document = pdf(bomb_stream(1))
    assert refusal_of(document[: document.index(b"stream\n") + 200]).reason == "broken_pdf"


@pytest.mark.parametrize("end_of_line", [b"\r\n", b"\n", b"  \r\n", b"\r"])
@pytest.mark.parametrize("split", [0, 1, 3, 6])
def test_a_bomb_whose_stream_keyword_meets_a_chunk_boundary_is_refused(end_of_line: bytes, split: int) -> None:
    """ "stream" and its end of line placed so that a GridFS chunk ends ``split`` bytes into "stream\\r"."""
    dictionary = b"1 0 obj\n<< /Length 9 /Filter /FlateDecode >>\n"
    keyword = b"stream" + end_of_line
    cut = len(b"stream") + min(split, len(end_of_line))
    padding = b"%PDF-1.4\n%" + b"x" * (CHUNK_BYTES - len(dictionary) - cut - 11) + b"\n"
    document = padding + dictionary + keyword + bomb_stream(64) + b"\nendstream\nendobj\n%%EOF\n"
    assert document.index(keyword) + cut == CHUNK_BYTES
    assert refusal_of(document).reason == "decompression_bomb"


async def test_check_pdf_refuses_a_boundary_bomb_as_the_store_reads_it() -> None:
    dictionary = b"\n1 0 obj\n<< /Filter /FlateDecode >>\nstream\r"
    document = b"%PDF-1.4\n%" + b"x" * (CHUNK_BYTES - len(dictionary) - 10) + dictionary + b"\n" + bomb_stream(64)
    assert document[CHUNK_BYTES - 7 : CHUNK_BYTES + 1] == b"stream\r\n"
    with pytest.raises(RefusedDocument) as refused:
        await check_pdf(in_slices(document, CHUNK_BYTES), len(document), LIMITS)
    assert refused.value.reason == "decompression_bomb"


def test_images_within_the_limits_pass_and_bombs_do_not() -> None:
    assert check_image(io.BytesIO(png(300, 200)), "image/png", LIMITS) == (300, 200)
    assert check_image(io.BytesIO(jpeg(640, 480)), "image/jpeg", LIMITS) == (640, 480)
    for bomb in (pixel_bomb_png(), pixel_bomb_png(8_000, 8_000)):
        with pytest.raises(RefusedDocument) as refused:
            check_image(io.BytesIO(bomb), "image/png", LIMITS)
        assert refused.value.reason == "too_many_pixels"


def test_every_checklist_item_has_both_languages_and_hong_kong_its_own_list() -> None:
    for items in checklists().values():
        assert len({item.key for item in items}) == len(items)
        assert all(item.label.get("en") and item.label.get("zh-CN") for item in items)
    hong_kong = [item.key for item in checklist_for("hk")]
    assert {"business_registration", "annual_return"} <= set(hong_kong)
    assert checklist_for("FR") == checklists()[DEFAULT]
    assert {item.key for item in checklist_for(None) if item.sensitive} == {
        "contact_id", "proof_of_address", "administrator_passport"
    }  # fmt: skip
