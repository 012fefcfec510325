"""Realistic submissions for tests: an overseas company applying, with Chinese and English text."""

import copy
from collections.abc import Mapping
from typing import Any

from agency_shared.agreement_documents import AgreementCatalog

CURRENT = AgreementCatalog.bundled().current()
# The staff the test settings send notifications to (tests/conftest.py).
STAFF = ("ops@agency.example", "sales@agency.example")

APPLICATION: dict[str, Any] = {
    "account": {
        "type": "service",
        "name": "Maple Tea 枫叶茶",
        "description": "Premium Canadian maple tea for customers in China. 加拿大枫叶茶。",
        "category": "Food & Beverage",
    },
    "operator": {"name": "Li Wei 李伟", "email": "li.wei@mapletea.example", "phone": "+1 604 555 0199"},
    "company": {
        "legal_name": "Maple Tea Trading Ltd. 枫叶茶贸易有限公司",
        "registration_number": "BC1234567",
        "country": "CA",
        "address": "1000 Granville St\nVancouver, BC V6Z 1L5",
        "website": "https://mapletea.example",
        "industry": "Retail",
    },
    "notes": "We would like to start with a Service Account.\n希望尽快开通。",
    "agreement": {"version": CURRENT.version, "sha256": CURRENT.sha256, "accepted": True},
    "locale": "en",
}


def application(overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """A valid application body, with ``overrides`` by dotted path, e.g. ``{"company.country": "XX"}``.

    An override of ``DELETE`` removes the field.
    """
    body = copy.deepcopy(APPLICATION)
    for path, value in (overrides or {}).items():
        *parents, leaf = path.split(".")
        target = body
        for key in parents:
            target = target[key]
        if value is DELETE:
            target.pop(leaf, None)
        else:
            target[leaf] = value
    return body


DELETE: Any = object()


def flat_form(body: Mapping[str, object], prefix: str = "") -> list[tuple[str, str]]:
    """``body`` as the fields a browser posts for it (``company.country=CA``, ``agreement.accepted=on``)."""
    pairs: list[tuple[str, str]] = []
    for key, value in body.items():
        if isinstance(value, Mapping):
            pairs += flat_form(value, f"{prefix}{key}.")
        elif value is True:
            pairs.append((f"{prefix}{key}", "on"))
        elif isinstance(value, list):
            pairs += [(f"{prefix}{key}", str(v)) for v in value]
        else:
            pairs.append((f"{prefix}{key}", str(value)))
    return pairs
