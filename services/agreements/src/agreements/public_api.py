"""What anyone may read: agreement versions, an application's status and receipt, the receipt verifier."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

from agency_shared.agreement_documents import AgreementCatalog, AgreementDocument
from agency_shared.application_status import Status
from agency_shared.receipt_verifier import timestamp
from agency_shared.receipts import Receipt, standalone_verifier
from agreements.recording import receipt_checkpoint
from agreements.signing import LedgerKey
from agreements.storage import MongoAcceptanceLedger, MongoApplications

router = APIRouter()


async def _applications(request: Request) -> MongoApplications:
    applications: MongoApplications = request.app.state.adapters.applications
    return applications


async def _ledger(request: Request) -> MongoAcceptanceLedger:
    ledger: MongoAcceptanceLedger = request.app.state.adapters.ledger
    return ledger


async def _catalog(request: Request) -> AgreementCatalog:
    catalog: AgreementCatalog = request.app.state.catalog
    return catalog


async def _ledger_key(request: Request) -> LedgerKey:
    key: LedgerKey = request.app.state.ledger_key
    return key


Applications = Annotated[MongoApplications, Depends(_applications)]
LedgerSigningKey = Annotated[LedgerKey, Depends(_ledger_key)]
Ledger = Annotated[MongoAcceptanceLedger, Depends(_ledger)]
Catalog = Annotated[AgreementCatalog, Depends(_catalog)]


class AgreementVersion(BaseModel):
    id: str
    version: str
    title: str
    effective_date: str
    sha256: str
    current: bool


class ApplicationStatus(BaseModel):
    """Only the status: the id is the capability, and nothing about the applicant is shown."""

    application_id: uuid.UUID
    status: Status
    description: str


DESCRIPTIONS = {
    Status.RECEIVED: "Your application has been received and is being recorded.",
    Status.RECORDED: "Your application and your acceptance of the Service Agreement are recorded.",
    Status.AWAITING_VERIFICATION: (
        "Recorded. We have emailed you a link: open it and confirm your email address to receive your receipt."
    ),
    Status.VERIFIED: "Your email address is confirmed; your receipt is on its way.",
    Status.CONFIRMED: "Recorded, your email address confirmed, and the confirmation email with your receipt sent.",
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"description": "No such application (a submission accepted moments ago appears within seconds)"}
}


@router.get("/v1/agreements", response_model=list[AgreementVersion], tags=["agreements"])
async def agreement_versions(catalog: Catalog) -> list[AgreementVersion]:
    """Every version of the agreement, oldest first; ``current`` marks the one applicants accept now."""
    current = catalog.current()
    return [
        AgreementVersion(
            id=d.id,
            version=d.version,
            title=d.title,
            effective_date=d.effective_date.isoformat(),
            sha256=d.sha256,
            current=d == current,
        )
        for d in catalog
    ]


@router.get("/v1/agreements/current", response_model=AgreementDocument, tags=["agreements"])
async def current_agreement(catalog: Catalog) -> AgreementDocument:
    return catalog.current()


@router.get("/v1/agreements/{version}", response_model=AgreementDocument, tags=["agreements"], responses=NOT_FOUND)
async def agreement_version(version: str, catalog: Catalog) -> AgreementDocument:
    """One version's exact text: the text whose SHA-256 a receipt names."""
    document = catalog.find(version)
    if document is None:
        raise HTTPException(404, f"no agreement version {version}")
    return document


@router.get(
    "/v1/applications/{application_id}/status",
    response_model=ApplicationStatus,
    tags=["applications"],
    responses=NOT_FOUND,
)
async def application_status(application_id: uuid.UUID, applications: Applications) -> ApplicationStatus:
    found = await applications.collection.find_one({"application_id": str(application_id)}, {"status": 1})
    if found is None:
        raise HTTPException(404, "no such application (yet)")
    status = Status(found["status"])
    return ApplicationStatus(application_id=application_id, status=status, description=DESCRIPTIONS[status])


@router.get("/v1/applications/{application_id}/receipt", tags=["applications"], responses=NOT_FOUND)
async def application_receipt(
    application_id: uuid.UUID, ledger: Ledger, applications: Applications, key: LedgerSigningKey
) -> dict[str, Any]:
    """The acceptance receipt: check it offline with the verifier from ``/v1/receipt-verifier.py``.

    Anyone holding the application id may fetch it, so it carries no personal data: its record
    holds only their salted hashes (``personal_data`` is null). The copy emailed to the applicant
    carries the values and the salt. After an erasure ``personal_data_erased_at`` is set. Its
    ``checkpoint`` is the ledger key's signature of its link (see ``/v1/ledger/public-key``).
    """
    entry = await ledger.find(application_id)
    if entry is None:
        raise HTTPException(404, "no recorded acceptance for this application (yet)")
    erased_at = await applications.erased_at(application_id)
    erased = timestamp(erased_at) if erased_at else None
    checkpoint = receipt_checkpoint(key, entry)
    return Receipt.from_record(entry.record, entry.record_hash, None, erased, checkpoint).as_json()


class PublicKey(BaseModel):
    key_id: str
    algorithm: str
    public_key: str


class LedgerPublicKeys(PublicKey):
    """The key checkpoints and receipts are signed with now, and the retired keys older ones were signed with."""

    retired: list[PublicKey]


@router.get("/v1/ledger/public-key", response_model=LedgerPublicKeys, tags=["applications"])
async def ledger_public_key(key: LedgerSigningKey) -> dict[str, object]:
    """The ledger's Ed25519 public key (base64 of the 32 raw bytes): ``receipt_verifier.py --public-key``."""
    return key.described()


@router.get(
    "/v1/receipt-verifier.py",
    response_class=PlainTextResponse,
    tags=["applications"],
    responses={200: {"content": {"text/x-python": {}}, "description": "The standalone verifier"}},
)
async def receipt_verifier() -> PlainTextResponse:
    """The standalone verifier (standard library only): ``python receipt_verifier.py receipt.json agreement.txt``."""
    return PlainTextResponse(standalone_verifier(), media_type="text/x-python; charset=utf-8")
