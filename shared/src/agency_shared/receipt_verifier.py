"""Verify an agreement-acceptance receipt offline, with the Python standard library only.

    python receipt_verifier.py receipt.json [agreement.txt] [--public-key key.json] [--current now.json]

Checks that the receipt's ``record_hash`` is the SHA-256 of its canonical record, that the
record agrees with the receipt's summary fields, that the personal data the receipt carries
is what the record's salted hashes were made from (unless it was erased), and, given the
agreement text the client was shown, that the text's SHA-256 is the one the record says was
accepted. Its ``checkpoint`` must name its link and hash; given ``--public-key`` (the JSON of
``GET /v1/ledger/public-key``), the checkpoint's Ed25519 signature must be the ledger key's
(checked with the ``cryptography`` package when installed, else in plain Python). Given
``--current`` (the receipt the service serves now for the same application), both must name
the same link and hash: an older receipt that disagrees shows that the ledger was rewritten.
Exit status 0 when everything holds, 1 otherwise. The hashes and signatures come from the
modules the services use (``agency_shared.chain``, ``agency_shared.checkpoints``); the copy
served at ``GET /v1/receipt-verifier.py`` has them written in, so it is one file to copy anywhere.
"""

import argparse
import hashlib
import json
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

# One line: the served copy has chain.py itself in its place (agency_shared.receipts.standalone_verifier).
from agency_shared.chain import record_hash
from agency_shared.checkpoints import checkpoint_problems, public_keys_by_id

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


def verify_receipt(
    receipt: dict[str, Any], agreement_text: str | None = None, public_keys: dict[str, bytes] | None = None
) -> list[str]:
    """Every problem found; an empty list means the receipt is intact (and matches the text, if given).

    With ``public_keys`` (``{key_id: raw public key}``) the receipt must carry a checkpoint signed by one of them.
    """
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
    return problems + _checkpoint_problems(receipt, computed, public_keys)


def _checkpoint_problems(receipt: dict[str, Any], computed: str, public_keys: dict[str, bytes] | None) -> list[str]:
    """The receipt's checkpoint must sign exactly its link: the record's sequence and hash."""
    checkpoint = receipt.get("checkpoint")
    if checkpoint is None:
        return ["the receipt carries no signed checkpoint"] if public_keys is not None else []
    problems = checkpoint_problems(checkpoint, public_keys)
    if problems:
        return problems
    if checkpoint["sequence"] != receipt["record"].get("sequence") or checkpoint["record_hash"] != computed:
        return [
            f"the checkpoint signs link {checkpoint['sequence']} at {checkpoint['record_hash']}, "
            f"not this receipt's link {receipt['record'].get('sequence')} at {computed}"
        ]
    return []


def compare_receipts(older: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Whether the ledger still holds the link ``older`` (a receipt kept by the client) was issued for."""
    old_record, new_record = older.get("record") or {}, current.get("record") or {}
    if old_record.get("acceptance_id") != new_record.get("acceptance_id"):
        return ["the current receipt is for another acceptance"]
    if (older.get("sequence"), older.get("record_hash")) != (current.get("sequence"), current.get("record_hash")):
        signed = (older.get("checkpoint") or {}).get("time", "when it was issued")
        return [
            f"the ledger was rewritten: this receipt (signed {signed}) records link {older.get('sequence')} as "
            f"{older.get('record_hash')}, the ledger now serves link {current.get('sequence')} as "
            f"{current.get('record_hash')}"
        ]
    return []


def _personal_problems(personal: dict[str, Any], record: dict[str, Any]) -> list[str]:
    if not all(isinstance(personal.get(name), str) for name in ("salt", *PERSONAL_FIELDS)):
        return ["personal_data lacks the salt or one of " + ", ".join(PERSONAL_FIELDS)]
    return [
        f"{name.removesuffix('_sha256')} is not the value whose salted hash the record holds"
        for name, expected in personal_hashes(personal).items()
        if record.get(name) != expected
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="receipt_verifier.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("receipt")
    parser.add_argument("agreement", nargs="?", help="the exact text of GET /v1/agreements/<version>")
    parser.add_argument("--public-key", help="the JSON of GET /v1/ledger/public-key")
    parser.add_argument("--current", help="the receipt served now for the same application")
    arguments = parser.parse_args(argv[1:])
    receipt = _read_json(arguments.receipt)
    text = Path(arguments.agreement).read_text(encoding="utf-8") if arguments.agreement else None
    keys = None
    if arguments.public_key:
        published = _read_json(arguments.public_key)
        keys = public_keys_by_id([published, *published.get("retired", [])])
    problems = verify_receipt(receipt, text, keys)
    if arguments.current and not problems:
        problems = compare_receipts(receipt, _read_json(arguments.current))
    for problem in problems:
        print(f"NOT VALID: {problem}")
    if not problems:
        print(_summary(receipt, text, keys))
    return 1 if problems else 0


def _read_json(path: str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _summary(receipt: dict[str, Any], text: str | None, keys: dict[str, bytes] | None) -> str:
    record, checkpoint = receipt["record"], receipt.get("checkpoint")
    if checkpoint is None:
        signed = "; no signed checkpoint (a receipt from before checkpoints)"
    elif keys is None:
        signed = f"; checkpoint by key {checkpoint['key_id']} not checked (give --public-key)"
    else:
        signed = f"; signed by ledger key {checkpoint['key_id']} at {checkpoint['time']}"
    return (
        f"valid: acceptance #{record['sequence']} of {record['agreement_id']} version "
        f"{record['agreement_version']} at {record['accepted_at']}, record hash {receipt['record_hash']}"
        + ("; the agreement text matches" if text is not None else "")
        + ("; the personal data matches" if receipt.get("personal_data") else "")
        + (f"; personal data erased at {erased}" if (erased := receipt.get("personal_data_erased_at")) else "")
        + signed
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv))
