"""agreements' staff API as the console reads it: an application's record and receipt, the re-acceptance list,
the ledger's verification, and the erasure of an applicant or an enquirer (casework's own bearer token)."""

import uuid
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import TypeAdapter, ValidationError

from agency_shared.chain import ChainReport
from casework.settings import CaseworkSettings

# The console waits this long for agreements before it says so (a page must not hang on a peer).
CONNECT_SECONDS = 2.0
READ_SECONDS = 10.0
# A ledger check walks the whole chain: it may take longer than a read.
VERIFY_SECONDS = 60.0
_CHAIN_REPORT = TypeAdapter(ChainReport)


class AgreementsUnavailable(Exception):
    """agreements could not be reached, timed out or failed (5xx): the console says so and changes nothing."""


class AgreementsRefused(Exception):
    """agreements answered a 4xx other than 404 (a wrong token, a conflict): ``status`` and its ``detail``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"agreements answered {status}: {detail}")
        self.status = status
        self.detail = detail


@dataclass(frozen=True)
class ReacceptancePage:
    items: list[dict[str, Any]]
    next_cursor: str | None


class AgreementsClient:
    def __init__(self, settings: CaseworkSettings) -> None:
        self._base_url = settings.agreements_url.rstrip("/")
        token = settings.agreements_api_token
        self._headers = {"Authorization": f"Bearer {token.get_secret_value()}"} if token else {}
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        self._client = httpx.AsyncClient(
            base_url=self._base_url,
            headers=self._headers,
            timeout=httpx.Timeout(READ_SECONDS, connect=CONNECT_SECONDS),
            follow_redirects=False,
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _request(
        self, method: str, path: str, *, json: Any = None, params: Any = None, timeout: float | None = None
    ) -> httpx.Response | None:
        """The response, None for a 404; ``AgreementsUnavailable`` or ``AgreementsRefused`` otherwise."""
        if self._client is None:
            raise AgreementsUnavailable("the agreements client is not open")
        try:
            response = await self._client.request(
                method, path, json=json, params=params, timeout=timeout or httpx.USE_CLIENT_DEFAULT
            )
        except httpx.HTTPError as exc:
            raise AgreementsUnavailable(f"{method} {path}: {type(exc).__name__}") from exc
        if response.status_code == 404:
            return None
        if response.status_code >= 500:
            raise AgreementsUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            raise AgreementsRefused(response.status_code, _detail(response))
        return response

    async def _json(self, method: str, path: str, **options: Any) -> Any:
        response = await self._request(method, path, **options)
        if response is None:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise AgreementsUnavailable(f"{method} {path}: not JSON") from exc

    async def application(self, application_id: uuid.UUID) -> dict[str, Any] | None:
        """The application's record, its ledger links and timeline; None if agreements has none."""
        found = await self._json("GET", f"/v1/staff/applications/{application_id}")
        return found if isinstance(found, dict) else None

    async def receipt(self, application_id: uuid.UUID) -> dict[str, Any] | None:
        """The acceptance receipt (no personal data: salted hashes, the ledger key's checkpoint)."""
        found = await self._json("GET", f"/v1/applications/{application_id}/receipt")
        return found if isinstance(found, dict) else None

    async def reacceptance(self, cursor: str | None = None, limit: int = 50) -> ReacceptancePage:
        params: dict[str, Any] = {"limit": limit, **({"cursor": cursor} if cursor else {})}
        found = await self._json("GET", "/v1/staff/reacceptance", params=params)
        if not isinstance(found, dict):
            raise AgreementsUnavailable("GET /v1/staff/reacceptance: no list")
        return ReacceptancePage(list(found.get("items") or []), found.get("next_cursor"))

    async def current_agreement(self) -> dict[str, Any]:
        """The agreement version applicants accept now (agreements' public ``/v1/agreements/current``): its id,
        version, title, text and the text's SHA-256."""
        found = await self._json("GET", "/v1/agreements/current")
        if not isinstance(found, dict) or not all(isinstance(found.get(k), str) for k in ("version", "text", "sha256")):
            raise AgreementsUnavailable("GET /v1/agreements/current: not an agreement")
        return found

    async def verify_ledger(self) -> ChainReport:
        """The ledger's verdict; ``AgreementsUnavailable`` for an answer that is not a whole report (a field
        missing or of another type, e.g. "ok": "false"): a verdict guessed from it could be the wrong one."""
        path = "/v1/ledger/verify"
        response = await self._request("GET", path, timeout=VERIFY_SECONDS)
        if response is None:
            raise AgreementsUnavailable(f"GET {path}: no report")
        try:
            return _CHAIN_REPORT.validate_json(response.content, strict=True)
        except ValidationError as exc:
            what = "not JSON" if exc.errors()[0]["type"] == "json_invalid" else "not a report"
            raise AgreementsUnavailable(f"GET {path}: {what} ({exc.error_count()} errors)") from exc

    async def erase_application(self, application_id: uuid.UUID, reason: str | None) -> dict[str, Any] | None:
        """Erase the applicant everywhere (agreements announces applicant.erased); None if agreements has no
        such application."""
        found = await self._json("POST", f"/v1/staff/applications/{application_id}/erasure", json={"reason": reason})
        return found if isinstance(found, dict) else None

    async def erase_enquiry(self, enquiry_id: uuid.UUID, reason: str | None) -> dict[str, Any]:
        found = await self._json("POST", f"/v1/staff/enquiries/{enquiry_id}/erasure", json={"reason": reason})
        if not isinstance(found, dict):
            raise AgreementsUnavailable(f"POST /v1/staff/enquiries/{enquiry_id}/erasure: no answer")
        return found


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    return str(detail) if detail else response.reason_phrase
