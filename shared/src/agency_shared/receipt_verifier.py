"""Verify an agreement-acceptance receipt offline. Standard library only: copy this one file anywhere.

    python receipt_verifier.py receipt.json [agreement.txt]

Checks that the receipt's ``record_hash`` is the SHA-256 of its canonical record, that the
record agrees with the receipt's summary fields, and, given the agreement text the client
was shown, that the text's SHA-256 is the one the record says was accepted. Exit status 0
when everything holds, 1 otherwise. The services compute hashes with these same functions.
"""

import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

GENESIS_HASH = "0" * 64
# Fields the receipt repeats outside the record, for people; each must equal the record's.
SUMMARY_FIELDS = (
    "application_id", "acceptance_id", "sequence", "prev_hash",
    "agreement_id", "agreement_version", "agreement_sha256", "accepted_at",
)  # fmt: skip


def canonical_json(record: dict[str, Any]) -> bytes:
    """The bytes that are hashed: keys sorted, no whitespace, UTF-8, non-ASCII as is.

    Values are only objects, strings, integers and null (no floats), so this is
    RFC 8785 (JCS) for the records we write.
    """
    return json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def record_hash(record: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(record)).hexdigest()


def timestamp(moment: datetime) -> str:
    """How times are written in records: UTC, microseconds, ``Z`` (e.g. 2026-11-25T01:24:13.123456Z)."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")  # noqa: UP017 - stdlib 3.9+ file


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


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
    if agreement_text is not None and text_sha256(agreement_text) != record.get("agreement_sha256"):
        problems.append("the agreement text given is not the text that was accepted (SHA-256 differs)")
    return problems


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
        )
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
