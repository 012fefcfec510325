"""Verify an agreement-acceptance receipt offline, with the Python standard library only.

    python receipt_verifier.py receipt.json [agreement.txt]

Checks that the receipt's ``record_hash`` is the SHA-256 of its canonical record, that the
record agrees with the receipt's summary fields, that the personal data the receipt carries
is what the record's salted hashes were made from (unless it was erased), and, given the
agreement text the client was shown, that the text's SHA-256 is the one the record says was
accepted. Exit status 0 when everything holds, 1 otherwise. The record hash comes from the
hash chain's module (``agency_shared.chain``), the one the services use; the copy served at
``GET /v1/receipt-verifier.py`` has that module written in, so it is one file to copy anywhere.
"""

import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# One line: the served copy has chain.py itself in its place (agency_shared.receipts.standalone_verifier).
from agency_shared.chain import record_hash

# Fields the receipt repeats outside the record, for people; each must equal the record's.
SUMMARY_FIELDS = (
    "application_id", "acceptance_id", "sequence", "prev_hash",
    "agreement_id", "agreement_version", "agreement_sha256", "accepted_at",
)  # fmt: skip
# Personal data stays out of the record, so it can be erased without breaking the chain: the
# record holds ``<field>_sha256`` for each, and the receipt's ``personal_data`` the values and salt.
PERSONAL_FIELDS = ("applicant_name", "applicant_email", "applicant_phone", "client_ip", "user_agent")


def timestamp(moment: datetime) -> str:
    """How times are written in records: UTC, microseconds, ``Z`` (e.g. 2026-11-25T01:24:13.123456Z)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: UP017 - a stdlib-only file for Python 3.10+


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def personal_sha256(salt: str, field: str, value: str) -> str:
    """The salted hash of one personal field: SHA-256 (hex) of the UTF-8 bytes of ``salt:field:value``.

    ``salt`` is the acceptance's random salt (64 hex digits), ``field`` the name without
    ``_sha256`` (e.g. ``applicant_email``), ``value`` exactly as stored.
    """
    return hashlib.sha256(f"{salt}:{field}:{value}".encode()).hexdigest()


def personal_hashes(personal: dict[str, str]) -> dict[str, str]:
    """The record's ``<field>_sha256`` entries for ``personal`` (its ``salt`` and each of PERSONAL_FIELDS)."""
    return {f"{name}_sha256": personal_sha256(personal["salt"], name, personal[name]) for name in PERSONAL_FIELDS}


def verify_receipt(receipt: dict[str, Any], agreement_text: str | None = None) -> list[str]:
    """Every problem found; an empty list means the receipt is intact (and matches the text, if given)."""
    problems: list[str] = []
    record = receipt.get("record")
    if not isinstance(record, dict):
        return ["the receipt has no record"]
    computed = record_hash(record)
    if computed != receipt.get("record_hash"):
        problems.append(f"record_hash is {receipt.get('record_hash')}, but the record hashes to {computed}")
    for name in SUMMARY_FIELDS:
        if name in receipt and receipt[name] != record.get(name):
            problems.append(f"{name} is {receipt[name]!r} in the receipt but {record.get(name)!r} in the record")
    personal = receipt.get("personal_data")
    if isinstance(personal, dict):
        problems += _personal_problems(personal, record)
    if agreement_text is not None and text_sha256(agreement_text) != record.get("agreement_sha256"):
        problems.append("the agreement text given is not the text that was accepted (SHA-256 differs)")
    return problems


def _personal_problems(personal: dict[str, Any], record: dict[str, Any]) -> list[str]:
    if not all(isinstance(personal.get(name), str) for name in ("salt", *PERSONAL_FIELDS)):
        return ["personal_data lacks the salt or one of " + ", ".join(PERSONAL_FIELDS)]
    return [
        f"{name.removesuffix('_sha256')} is not the value whose salted hash the record holds"
        for name, expected in personal_hashes(personal).items()
        if record.get(name) != expected
    ]


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    receipt = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
    text = Path(argv[2]).read_text(encoding="utf-8") if len(argv) == 3 else None
    problems = verify_receipt(receipt, text)
    for problem in problems:
        print(f"NOT VALID: {problem}")
    if not problems:
        record = receipt["record"]
        print(
            f"valid: acceptance #{record['sequence']} of {record['agreement_id']} version "
            f"{record['agreement_version']} at {record['accepted_at']}, record hash {receipt['record_hash']}"
            + ("; the agreement text matches" if text is not None else "")
            + ("; the personal data matches" if receipt.get("personal_data") else "")
            + (f"; personal data erased at {erased}" if (erased := receipt.get("personal_data_erased_at")) else "")
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
