"""Constrained string types for user input: single-line fields, free text, countries, phones."""

import re
import unicodedata
from typing import Annotated

import pycountry
from pydantic import AfterValidator, StringConstraints, WithJsonSchema

_PHONE_SEPARATORS = re.compile(r"[\s\-.()]")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def _has_control_characters(value: str, allowed: str = "") -> bool:
    # Fast path (C): a printable string has no character of the categories below. Only
    # the rare text with other separators (e.g. U+3000) takes the character-by-character look.
    if (value.replace("\n", "").replace("\r", "").replace("\t", "") if allowed else value).isprintable():
        return False
    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") and ch not in allowed for ch in value)


def _reject_control_characters(value: str) -> str:
    # CR/LF in a single-line field is how header injection starts; other control
    # characters have no place in a name or an address line either.
    if _has_control_characters(value):
        raise ValueError("must be a single line without control characters")
    return value


def _reject_control_characters_except_newlines(value: str) -> str:
    if _has_control_characters(value, allowed="\n\r\t"):
        raise ValueError("must not contain control characters")
    return value


def _normalise_country(value: str) -> str:
    code = value.strip().upper()
    if len(code) != 2 or pycountry.countries.get(alpha_2=code) is None:
        raise ValueError("must be an ISO 3166-1 alpha-2 country code, e.g. GB or SG")
    return code


def _normalise_phone(value: str) -> str:
    compact = _PHONE_SEPARATORS.sub("", value)
    if not _E164.match(compact):
        raise ValueError("must be an international number starting with + and the country code, e.g. +44 20 7946 0958")
    return compact


SINGLE_LINE = AfterValidator(_reject_control_characters)
"""Attach to a ``str`` annotation to reject CR/LF and other control characters."""


def bounded(min_length: int, max_length: int) -> StringConstraints:
    """Length bounds (in characters) for a trimmed string."""
    return StringConstraints(strip_whitespace=True, min_length=min_length, max_length=max_length)


MULTI_LINE = AfterValidator(_reject_control_characters_except_newlines)
"""Attach to a ``str`` annotation for free text: newlines and tabs allowed, other control characters not."""
# The schema shows clients the shape; the validators decide, with messages a person can act on.
CountryCode = Annotated[
    str,
    AfterValidator(_normalise_country),
    WithJsonSchema({"type": "string", "pattern": "^[A-Za-z]{2}$", "description": "ISO 3166-1 alpha-2, e.g. GB"}),
]
PhoneNumber = Annotated[
    str,
    StringConstraints(max_length=32),
    AfterValidator(_normalise_phone),
    WithJsonSchema({"type": "string", "maxLength": 32, "pattern": "^\\+[0-9 ().\\-]{7,31}$"}),
]
Sha256Hex = Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, pattern=r"^[0-9a-f]{64}$")]
