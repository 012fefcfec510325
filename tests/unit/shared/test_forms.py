"""Validation rules of the application and enquiry forms."""

from typing import Any

import pytest
from pydantic import ValidationError

from agency_shared.forms import ApplicationForm, EnquiryForm
from tests.support.data import DELETE, application


def errors_for(overrides: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        ApplicationForm.model_validate(application(overrides))
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in caught.value.errors()}


def test_a_realistic_bilingual_application_is_valid() -> None:
    form = ApplicationForm.model_validate(application())
    assert form.company.legal_name == "Maple Tea Trading Ltd. 枫叶茶贸易有限公司"
    assert form.operator.phone == "+16045550199"  # normalised to E.164
    assert form.company.country == "CA"


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"account.name": "X"}, "account.name"),
        ({"account.name": "A" * 31}, "account.name"),
        ({"account.description": "abc"}, "account.description"),
        ({"account.description": "a" * 121}, "account.description"),
        ({"account.category": "c" * 65}, "account.category"),
        ({"account.type": "enterprise"}, "account.type"),
        ({"operator.email": "not-an-email"}, "operator.email"),
        ({"operator.phone": "604 555 0199"}, "operator.phone"),
        ({"operator.phone": "+12"}, "operator.phone"),
        ({"company.country": "XX"}, "company.country"),
        ({"company.country": "CAN"}, "company.country"),
        ({"company.website": "not a url"}, "company.website"),
        ({"notes": "n" * 2001}, "notes"),
        ({"agreement.accepted": False}, "agreement.accepted"),
        ({"agreement.sha256": "abc"}, "agreement.sha256"),
        ({"locale": "fr"}, "locale"),
        ({"company.legal_name": DELETE}, "company.legal_name"),
        ({"unexpected": 1}, "unexpected"),
    ],
)
def test_invalid_fields_are_reported_by_location(overrides: dict[str, Any], field: str) -> None:
    assert field in errors_for(overrides)


@pytest.mark.parametrize("value", ["Li Wei\r\nBcc: victim@example.com", "Li\nWei", "Li\x00Wei", "Li\u2028Wei"])
def test_single_line_fields_reject_line_breaks_and_control_characters(value: str) -> None:
    message = errors_for({"operator.name": value})["operator.name"]
    assert "single line" in message


def test_multi_line_fields_keep_newlines_but_reject_other_control_characters() -> None:
    assert ApplicationForm.model_validate(application({"notes": "line one\nline two"})).notes == "line one\nline two"
    assert "notes" in errors_for({"notes": "bell\x07"})


def test_lengths_count_characters_not_bytes() -> None:
    # 30 Chinese characters are 90 bytes in UTF-8 and still a valid account name.
    assert ApplicationForm.model_validate(application({"account.name": "枫" * 30})).account.name == "枫" * 30


def test_country_codes_are_normalised_to_upper_case() -> None:
    assert ApplicationForm.model_validate(application({"company.country": "sg"})).company.country == "SG"


def test_enquiry_needs_at_least_one_known_service() -> None:
    valid = {"name": "王芳", "email": "wang@example.com", "services": ["official_account"], "message": "你好"}
    assert EnquiryForm.model_validate(valid).services[0].value == "official_account"
    with pytest.raises(ValidationError):
        EnquiryForm.model_validate({**valid, "services": []})
    with pytest.raises(ValidationError):
        EnquiryForm.model_validate({**valid, "services": ["seo"]})
