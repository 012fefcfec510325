"""CSV exports that stream row by row and cannot smuggle formulas into a spreadsheet."""

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

# A cell starting with one of these is a formula to Excel, LibreOffice and Sheets (OWASP: CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


Column = tuple[str, Callable[[dict[str, Any]], Any]]


def _get(*path: str) -> Callable[[dict[str, Any]], Any]:
    def read(document: dict[str, Any]) -> Any:
        value: Any = document
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        return value

    return read


APPLICATION_COLUMNS: Sequence[Column] = (
    ("application_id", _get("application_id")),
    ("status", _get("status")),
    ("received_at", lambda d: d["received_at"].isoformat() if d.get("received_at") else ""),
    ("account_type", _get("application", "account", "type")),
    ("account_name", _get("application", "account", "name")),
    ("account_description", _get("application", "account", "description")),
    ("operator_name", _get("application", "operator", "name")),
    ("operator_email", _get("application", "operator", "email")),
    ("operator_phone", _get("application", "operator", "phone")),
    ("company_legal_name", _get("application", "company", "legal_name")),
    ("company_registration_number", _get("application", "company", "registration_number")),
    ("company_country", _get("application", "company", "country")),
    ("company_address", _get("application", "company", "address")),
    ("company_website", _get("application", "company", "website")),
    ("notes", _get("application", "notes")),
    ("agreement_version", _get("acceptance", "agreement_version")),
    ("locale", _get("locale")),
    ("sequence", _get("sequence")),
    # An erased application keeps its row; the personal cells above are then empty.
    ("personal_data_erased_at", lambda d: d["erasure"]["erased_at"].isoformat() if d.get("erasure") else ""),
)

ACCEPTANCE_COLUMNS: Sequence[Column] = (
    *((name, _get("record", name)) for name in (
        "sequence", "application_id", "acceptance_id", "agreement_id", "agreement_version", "agreement_sha256",
        "accepted_at", "recorded_at", "client_ip_sha256", "user_agent_sha256", "applicant_name_sha256",
        "applicant_email_sha256", "applicant_phone_sha256", "account_name", "company_name",
        "company_registration_number", "company_country", "locale", "prev_hash",
    )),
    ("record_hash", _get("record_hash")),
)  # fmt: skip


async def csv_rows(documents: AsyncIterator[dict[str, Any]], columns: Sequence[Column]) -> AsyncIterator[str]:
    """The header, then one line per document as the cursor yields it: memory stays flat however many rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[str]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(cells)
        return buffer.getvalue()

    yield "\ufeff" + line([name for name, _ in columns])  # BOM: Excel then reads UTF-8 (Chinese names)
    async for document in documents:
        yield line([safe_cell(read(document)) for _, read in columns])
