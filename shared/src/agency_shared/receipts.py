"""The acceptance receipt a client can check without the server, and the one-file verifier it is checked with."""

import functools
import uuid
from importlib import resources
from typing import Any

from pydantic import BaseModel, ConfigDict

from agency_shared.events import AgreementRecordedData, Checkpoint, PersonalData

VERIFY_HINT = (
    "record_hash is the SHA-256 of the canonical JSON of record (keys sorted, no whitespace, UTF-8); "
    "each <field>_sha256 of record is the SHA-256 of 'salt:field:value' over personal_data. "
    "checkpoint is the ledger key's Ed25519 signature of (sequence, record_hash, time, key_id); the key is at "
    "GET /v1/ledger/public-key. Check it with receipt_verifier.py (Python standard library only), optionally "
    "with the agreement text and the public key."
)


class Receipt(BaseModel):
    model_config = ConfigDict(frozen=True)

    application_id: uuid.UUID
    acceptance_id: uuid.UUID
    agreement_id: str
    agreement_version: str
    agreement_sha256: str
    accepted_at: str
    sequence: int
    prev_hash: str
    record_hash: str
    record: dict[str, Any]
    # The values and salt behind the record's salted hashes; None once erased (then erased_at says when).
    personal_data: PersonalData | None = None
    personal_data_erased_at: str | None = None
    # The ledger key's signature of this link (sequence, record_hash); None on receipts from before checkpoints.
    checkpoint: Checkpoint | None = None
    how_to_verify: str = VERIFY_HINT

    @classmethod
    def from_record(
        cls,
        record: dict[str, Any],
        record_hash: str,
        personal_data: PersonalData | None = None,
        erased_at: str | None = None,
        checkpoint: Checkpoint | None = None,
    ) -> "Receipt":
        return cls(
            application_id=record["application_id"],
            acceptance_id=record["acceptance_id"],
            agreement_id=record["agreement_id"],
            agreement_version=record["agreement_version"],
            agreement_sha256=record["agreement_sha256"],
            accepted_at=record["accepted_at"],
            sequence=record["sequence"],
            prev_hash=record["prev_hash"],
            record_hash=record_hash,
            record=record,
            personal_data=personal_data,
            personal_data_erased_at=erased_at,
            checkpoint=checkpoint,
        )

    @classmethod
    def from_event(cls, data: AgreementRecordedData) -> "Receipt":
        return cls.from_record(data.record, data.record_hash, data.personal_data, checkpoint=data.checkpoint)

    def as_json(self) -> dict[str, Any]:
        """As served and attached: UUIDs as strings, the record exactly as hashed."""
        return self.model_dump(mode="json")


# The lines of receipt_verifier.py that the one-file copy replaces with the modules themselves.
CHAIN_IMPORT = "from agency_shared.chain import "
CHECKPOINTS_IMPORT = "from agency_shared.checkpoints import "
INLINED = {CHAIN_IMPORT: "chain.py", CHECKPOINTS_IMPORT: "checkpoints.py"}


@functools.cache
def standalone_verifier() -> str:
    """``receipt_verifier.py`` as one file that needs only the standard library: ``chain.py`` and
    ``checkpoints.py`` written in.

    The hash chain's and the checkpoints' rules stay in one module each, which the services import and
    this copy carries.
    """
    package = resources.files("agency_shared")
    lines = []
    for line in (package / "receipt_verifier.py").read_text(encoding="utf-8").splitlines(keepends=True):
        module = next((name for prefix, name in INLINED.items() if line.startswith(prefix)), None)
        if module is None:
            lines.append(line)
            continue
        # An inlined module's own imports of agency_shared are the modules written in before it.
        source = "".join(
            kept
            for kept in (package / module).read_text(encoding="utf-8").splitlines(keepends=True)
            if not kept.startswith("from agency_shared.")
        )
        lines.append(f"# --- agency_shared/{module}, written in ---\n{source}# --- end of agency_shared/{module} ---\n")
    return "".join(lines)
