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
    content_type_of,
    safe_name,
)
from tests.support.documents import EXE, HTML, flate_bomb_pdf, jpeg, pdf, pixel_bomb_png, png

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
