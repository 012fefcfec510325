"""The receipt verifier as served: one file, run by a Python that has nothing but its standard library."""

import json
import subprocess
import sys
from pathlib import Path

from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.chain import GENESIS
from agency_shared.receipts import CHAIN_IMPORT, Receipt, standalone_verifier
from agreements.recording import acceptance_link
from tests.support.records import APPLICATION


def run(tmp_path: Path, receipt: Receipt | dict[str, object], *text: str) -> subprocess.CompletedProcess[str]:
    body = receipt.as_json() if isinstance(receipt, Receipt) else receipt
    (tmp_path / "receipt.json").write_text(json.dumps(body), encoding="utf-8")
    files = ["receipt.json"]
    if text:
        (tmp_path / "agreement.txt").write_text(text[0], encoding="utf-8")
        files.append("agreement.txt")
    # -I (no PYTHONPATH, no script directory) and -S (no site-packages): agency_shared is not importable.
    command = [sys.executable, "-I", "-S", "receipt_verifier.py", *files]
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
