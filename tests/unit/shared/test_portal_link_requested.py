"""portal.link-requested names the case's link generation (notifications signs the link); an earlier casework's
event carries the signed link and its expiry instead: exactly one of the two, never both, never neither."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from agency_shared.events import PortalLinkRequestedData, utc_now

NOW = utc_now()
LINK = {"link": "https://portal.agency.example/portal/open?t=abc", "expires_at": NOW + timedelta(days=30)}


def data(**values: Any) -> dict[str, Any]:
    return {"case_id": uuid.uuid4(), "application_id": uuid.uuid4(), "reference": "A-7KQ2M4XD",
            "email": "li.wei@mapletea.example", "name": "李伟", "locale": "zh-CN", "requested_at": NOW,
            **values}  # fmt: skip


@pytest.mark.parametrize("values", [{"portal_generation": 0}, {"portal_generation": 3}, LINK])
def test_either_the_generation_or_an_earlier_caseworks_signed_link(values: dict[str, Any]) -> None:
    PortalLinkRequestedData.model_validate(data(**values))


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({}, "exactly one of link and portal_generation"),
        ({"portal_generation": 1, **LINK}, "exactly one of link and portal_generation"),
        ({"link": LINK["link"]}, "expires_at comes with link"),
        ({"portal_generation": 1, "expires_at": NOW}, "expires_at comes with link"),
        ({"portal_generation": -1}, "greater than or equal to 0"),
    ],
)
def test_anything_else_is_refused_saying_why(values: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationError, match=reason):
        PortalLinkRequestedData.model_validate(data(**values))
