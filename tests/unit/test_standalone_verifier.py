"""The receipt verifier as served: one file, run by a Python that has nothing but its standard library."""

import json
import subprocess
import sys
from pathlib import Path

from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.chain import GENESIS
from agency_shared.receipts import CHAIN_IMPORT, CHECKPOINTS_IMPORT, Receipt, standalone_verifier
from agreements.recording import acceptance_link, receipt_checkpoint
from agreements.signing import LedgerKey
from tests.support.records import APPLICATION


def run(
    tmp_path: Path, receipt: Receipt | dict[str, object], *text: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    body = receipt.as_json() if isinstance(receipt, Receipt) else receipt
    (tmp_path / "receipt.json").write_text(json.dumps(body), encoding="utf-8")
    files = ["receipt.json"]
    if text:
        (tmp_path / "agreement.txt").write_text(text[0], encoding="utf-8")
        files.append("agreement.txt")
    # -I (no PYTHONPATH, no script directory) and -S (no site-packages): agency_shared is not importable.
    command = [sys.executable, "-I", "-S", "receipt_verifier.py", *files, *options]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, check=False)


def test_the_served_verifier_carries_the_chain_module_and_checks_a_receipt_alone(tmp_path: Path) -> None:
    source = standalone_verifier()
    assert CHAIN_IMPORT not in source
    assert "def record_hash(" in source
    (tmp_path / "receipt_verifier.py").write_text(source, encoding="utf-8")
    link = acceptance_link(APPLICATION, GENESIS)
    receipt = Receipt.from_record(link.record, link.record_hash, APPLICATION.personal_data())
    agreement = AgreementCatalog.bundled().find("1")
    assert agreement is not None

    intact = run(tmp_path, receipt, agreement.text)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert f"valid: acceptance #1 of {link.record['agreement_id']} version 1" in intact.stdout
    assert "the agreement text matches; the personal data matches" in intact.stdout

    forged = receipt.as_json() | {"record": {**link.record, "company_country": "XX"}}
    rejected = run(tmp_path, forged)
    assert rejected.returncode == 1
    assert "record hashes to" in rejected.stdout


def test_the_served_verifier_checks_the_signed_checkpoint_and_an_older_receipt_against_the_current(
    tmp_path: Path,
) -> None:
    source = standalone_verifier()
    assert CHECKPOINTS_IMPORT not in source
    assert "def checkpoint_problems(" in source
    (tmp_path / "receipt_verifier.py").write_text(source, encoding="utf-8")
    key, impostor = LedgerKey(b"k" * 32), LedgerKey(b"i" * 32)
    (tmp_path / "key.json").write_text(json.dumps(key.described()), encoding="utf-8")
    link = acceptance_link(APPLICATION, GENESIS)
    receipt = Receipt.from_record(link.record, link.record_hash, checkpoint=receipt_checkpoint(key, link))

    signed = run(tmp_path, receipt, options=("--public-key", "key.json"))
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert f"signed by ledger key {key.key_id}" in signed.stdout
    unchecked = run(tmp_path, receipt)
    assert unchecked.returncode == 0
    assert "not checked (give --public-key)" in unchecked.stdout

    forged = receipt.model_copy(update={"checkpoint": receipt_checkpoint(impostor, link)})
    refused = run(tmp_path, forged, options=("--public-key", "key.json"))
    assert refused.returncode == 1
    assert "not one of the ledger's keys" in refused.stdout

    # The receipt served now names another hash for the same link: the ledger was rewritten since.
    rewritten = receipt.as_json() | {"record_hash": "e" * 64}
    (tmp_path / "now.json").write_text(json.dumps(rewritten), encoding="utf-8")
    caught = run(tmp_path, receipt, options=("--public-key", "key.json", "--current", "now.json"))
    assert caught.returncode == 1
    assert "NOT VALID: the ledger was rewritten" in caught.stdout
