"""The bundled agreement text and the choice of the current version."""

import hashlib
from datetime import date
from pathlib import Path

import pytest

from agency_shared.agreement_documents import AgreementCatalog, AgreementDocument

SEED = Path(__file__).parents[4] / "shared" / "seed" / "wechat-agency-site.txt"
V1_SHA256 = "e3b0b919d17436e6e740d458f3f455c15f0fd748d97a4331648fced85d7bdb50"


def test_v1_hash_is_pinned_so_an_edit_of_the_text_cannot_go_unnoticed() -> None:
    v1 = AgreementCatalog.bundled().find("1")
    assert v1 is not None
    assert v1.sha256 == V1_SHA256
    assert v1.sha256 == hashlib.sha256(v1.text.encode("utf-8")).hexdigest()
    assert v1.title == "WeChat Official Account Admin Platform Service Agreement"


@pytest.mark.skipif(not SEED.exists(), reason="the seed document lies beside the repository, not in it")
def test_v1_is_the_service_agreement_of_the_seed_document() -> None:
    v1 = AgreementCatalog.bundled().find("1")
    assert v1 is not None
    seed = SEED.read_text(encoding="utf-8")
    assert v1.text in seed
    assert v1.text.startswith("Introduction\n\nWelcome to the WeChat Official Account Admin Platform!")
    assert v1.text.endswith("the English language version shall prevail.")


def _doc(version: str, effective: date) -> AgreementDocument:
    return AgreementDocument(id="a", version=version, title="t", effective_date=effective, text=f"text {version}")


def test_current_is_the_latest_version_already_in_effect() -> None:
    catalog = AgreementCatalog([_doc("1", date(2024, 1, 1)), _doc("2", date(2025, 6, 1)), _doc("3", date(2099, 1, 1))])
    assert catalog.current(today=date(2025, 1, 1)).version == "1"
    assert catalog.current(today=date(2025, 6, 1)).version == "2"
    assert catalog.current(today=date(2099, 1, 2)).version == "3"


def test_an_empty_catalog_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        AgreementCatalog([])
