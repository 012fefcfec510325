"""The canonical form the README documents, pinned byte for byte, so another program can recompute record hashes."""

import hashlib
from datetime import datetime, timedelta, timezone

from agency_shared.chain import canonical_json, record_hash
from agency_shared.receipt_verifier import personal_sha256, timestamp


def test_the_canonical_bytes_are_exactly_what_the_readme_describes() -> None:
    record = {
        "sequence": 12,
        "prev_hash": "0" * 64,
        "company_name": '枫叶茶 "Maple" Ltd',
        "account_name": "Tab\there",
        "locale": "zh-CN",
        "missing": None,
    }
    # Keys sorted by code point, no whitespace, non-ASCII as UTF-8, only " \\ and control characters escaped.
    expected = (
        '{"account_name":"Tab\\there","company_name":"枫叶茶 \\"Maple\\" Ltd","locale":"zh-CN","missing":null,'
        '"prev_hash":"' + "0" * 64 + '","sequence":12}'
    ).encode()
    assert canonical_json(record) == expected
    assert record_hash(record) == hashlib.sha256(expected).hexdigest()


def test_times_are_utc_with_six_fraction_digits_and_z() -> None:
    beijing = timezone(timedelta(hours=8))
    assert timestamp(datetime(2026, 12, 1, 17, 5, 9, 120, tzinfo=beijing)) == "2026-12-01T09:05:09.000120Z"


def test_a_salted_personal_hash_is_sha256_of_salt_field_and_value() -> None:
    salt = "ab" * 32
    expected = hashlib.sha256(f"{salt}:applicant_email:li.wei@mapletea.example".encode()).hexdigest()
    assert personal_sha256(salt, "applicant_email", "li.wei@mapletea.example") == expected
