"""casework in tests: the events it consumes as their publishers build them; the service as main.py builds it
(lifespan included), staff of each role signed in through StaffAccess with a browser-like client over HTTPS, and
cases seeded as its consumers open them."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

import casework.main
from agency_shared.events import EnquiryReceived, EnquiryReleased, EnquiryReleasedData, derived_id, utc_now
from casework.access import Role, StaffAccess, StaffMember
from casework.cases import Case, case_id_for, reference_of
from casework.handlers import application_case, enquiry_case
from casework.settings import CaseworkSettings
from casework.storage import MongoCases
from casework.workflow import CaseKind, due_at
from tests.support.apps import serving
from tests.support.events import agreement_recorded_event, enquiry_received

# casework's bearer token for agreements' staff API where a test runs both (agreements' STAFF_API_TOKEN).
AGREEMENTS_TOKEN = "casework-test-token-0123456789-abcdef"
PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')
T = TypeVar("T")


def csrf_in(page: str) -> str:
    found = CSRF_INPUT.search(page)
    assert found, "no csrf_token field on the page"
    return found.group(1)


@dataclass
class SignedIn:
    """A staff member's browser: their session cookie and the CSRF token their pages' forms carry."""

    member: StaffMember
    http: httpx.AsyncClient
    csrf: str

    async def post(self, path: str, data: dict[str, Any] | None = None, **options: Any) -> httpx.Response:
        return await self.http.post(path, data={"csrf_token": self.csrf, **(data or {})}, **options)


@dataclass
class Casework:
    app: FastAPI
    settings: CaseworkSettings

    @property
    def access(self) -> StaffAccess:
        access: StaffAccess = self.app.state.access
        return access

    @property
    def cases(self) -> MongoCases:
        cases: MongoCases = self.app.state.adapters.cases
        return cases

    async def account(self, role: Role, email: str | None = None, name: str | None = None) -> StaffMember:
        account, _ = await self.access.create_account(
            email=email or f"{role.value}@agency.example", name=name or f"A {role.value}", role=role, password=PASSWORD
        )
        return StaffMember(account.id, account.email, account.name, account.role)

    @asynccontextmanager
    async def signed_in(self, role: Role, email: str | None = None, name: str | None = None) -> AsyncIterator[SignedIn]:
        member = await self.account(role, email, name)
        started = await self.access.sign_in(member.email, PASSWORD, "203.0.113.9")
        assert started.token is not None, started.problem
        transport = httpx.ASGITransport(app=self.app, client=("203.0.113.9", 50123))
        # The cookie as the browser sends it (httpx's jar keeps no cookie for a host name without a dot).
        headers = {"Accept": "text/html", "Cookie": f"{self.access.session_cookie}={started.token}"}
        async with httpx.AsyncClient(transport=transport, base_url="https://testserver", headers=headers) as http:
            page = await http.get("/console/cases")
            assert page.status_code == 200, page.text
            yield SignedIn(member, http, csrf_in(page.text))

    async def case(self, case_id: uuid.UUID) -> Case:
        found = await self.cases.get(case_id)
        assert found is not None
        return found

    async def open_application(self, status: str | None = None, *, now: datetime | None = None, **fields: Any) -> Case:
        """An application's case as the consumer opens it (then in ``status`` with ``fields``, if given)."""
        now = now or utc_now()
        data = agreement_recorded_event().data
        case = application_case(data, self.settings.time_limits, now)
        return await self._open(case, status, now, fields)

    async def open_enquiry(self, status: str | None = None, *, now: datetime | None = None, **fields: Any) -> Case:
        now = now or utc_now()
        event = enquiry_released(enquiry_received(locale="zh-CN"))
        case = enquiry_case(event, self.settings.time_limits, now)
        return await self._open(case, status, now, fields)

    async def _open(self, case: Case, status: str | None, now: datetime, fields: dict[str, Any]) -> Case:
        if status is not None:
            fields = {"status": status, "due_at": due_at(status, now, self.settings.time_limits), **fields}
        case = case.model_copy(update=fields)
        assert await self.cases.open(case)
        return case


def enquiry_released(enquiry: EnquiryReceived, verified_at: datetime | None = None) -> EnquiryReleased:
    """enquiry.released as notifications publishes it once the staff got ``enquiry``."""
    data = enquiry.data
    return EnquiryReleased(
        event_id=derived_id(EnquiryReleased.routing_key, str(data.enquiry_id)),
        correlation_id=enquiry.correlation_id,
        occurred_at=datetime.now(UTC),
        data=EnquiryReleasedData(
            enquiry_id=data.enquiry_id,
            enquiry=data.enquiry,
            received_at=data.received_at,
            locale=data.locale,
            verified_at=verified_at,
        ),
    )


def another(case: Case, **fields: Any) -> Case:
    """A copy of ``case`` about another application: its own ids and reference."""
    subject = uuid.uuid4()
    case_id = case_id_for(subject, case.kind)
    ids = {"application_id": subject} if case.kind is CaseKind.APPLICATION else {"enquiry_id": subject}
    return case.model_copy(update={"id": case_id, "reference": reference_of(case_id, case.kind), **ids, **fields})


@asynccontextmanager
async def running_casework(settings: CaseworkSettings) -> AsyncIterator[Casework]:
    app = casework.main.create_app(settings)
    async with serving(app):
        yield Casework(app, settings)


async def eventually(check: Callable[[], Awaitable[T | None]], timeout: float = 30) -> T:
    """The first truthy result of ``check``, polled until ``timeout`` (a consumer's effect, over the broker)."""
    async with asyncio.timeout(timeout):
        while not (result := await check()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    return result


def days_ago(days: float) -> datetime:
    return utc_now() - timedelta(days=days)
