"""casework's staff access in tests: a small console app built as main.py builds it (``app.state.access`` and
``access_routes.install``), a clock the test moves, staff of each role, and a browser-like client over HTTPS."""

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Request
from pydantic import MongoDsn
from pymongo import AsyncMongoClient

from casework.access import Permission, Role, StaffAccess, StaffMember, audit_request, require
from casework.access_routes import install
from casework.settings import CaseworkSettings

PASSWORD = "correct horse battery staple"
CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]*)"')


@dataclass
class Clock:
    """The time StaffAccess reads; tests move it instead of sleeping.

    It starts at the real time (to the second): sessions and sign-in counters carry TTL indexes that the database
    applies by its own clock, and a fixed date in the past had its TTL monitor delete a test's live session at a
    random moment (a 401 in a full run, seen twice)."""

    now: datetime = field(default_factory=lambda: datetime.now(UTC).replace(microsecond=0))

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def casework_settings(mongo_url: str, mongo_db: str, **changes: Any) -> CaseworkSettings:
    return CaseworkSettings.model_validate(
        {
            "environment": "test",
            "mongodb_url": MongoDsn(mongo_url),
            "mongodb_db": mongo_db,
            "session_cookie_secure": True,
            **changes,
        }
    )


def probe_app(app: FastAPI) -> None:
    """``GET|POST /console/probe/<permission>``: a page guarded by ``require(permission)``, answering who passed;
    ``GET /console/probe/cases/<id>/documents``: a page that shows personal data, and audits the view."""
    for permission in Permission:

        def make(permission: Permission) -> Any:
            async def probe(staff: Annotated[StaffMember, Depends(require(permission))]) -> dict[str, str]:
                return {"email": staff.email, "role": staff.role.value}

            return probe

        app.add_api_route(f"/console/probe/{permission.value}", make(permission), methods=["GET", "POST"])

    async def view_case(
        request: Request, case_id: str, staff: Annotated[StaffMember, Depends(require(Permission.READ_CASES))]
    ) -> dict[str, str]:
        await audit_request(request, "view_personal_data", case_id, {"document": "passport"})
        return {"case": case_id}

    app.add_api_route("/console/probe/cases/{case_id}/documents", view_case, methods=["GET"])


@dataclass
class Console:
    app: FastAPI
    access: StaffAccess
    clock: Clock
    settings: CaseworkSettings

    def client(self, address: str = "203.0.113.9") -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(address, 50123))
        return httpx.AsyncClient(transport=transport, base_url="https://testserver", headers={"Accept": "text/html"})

    async def staff(self, role: Role, email: str | None = None, password: str = PASSWORD) -> StaffMember:
        account, _ = await self.access.create_account(
            email=email or f"{role.value}@agency.example", name=f"A {role.value}", role=role, password=password
        )
        return StaffMember(account.id, account.email, account.name, account.role)


@asynccontextmanager
async def console(
    mongo: AsyncMongoClient[dict[str, Any]], mongo_url: str, mongo_db: str, **settings: Any
) -> AsyncIterator[Console]:
    config = casework_settings(mongo_url, mongo_db, **settings)
    clock = Clock()
    access = StaffAccess(config, clock)
    await access.open(mongo, mongo_db)
    app = FastAPI()
    app.state.access = access
    install(app)
    probe_app(app)
    try:
        yield Console(app, access, clock, config)
    finally:
        await access.close()


def csrf_in(page: str) -> str:
    found = CSRF_INPUT.search(page)
    assert found, "no csrf_token field on the page"
    return found.group(1)


async def sign_in(client: httpx.AsyncClient, email: str, password: str = PASSWORD, next: str = "") -> httpx.Response:
    form = await client.get("/console/login")
    # Already signed in, the form redirects: then the session's token is the one a page's forms carry.
    token = csrf_in(form.text) if form.status_code == 200 else await session_csrf(client)
    return await client.post(
        "/console/login", data={"email": email, "password": password, "csrf_token": token, "next": next}
    )


async def signed_in_token(client: httpx.AsyncClient, email: str, password: str = PASSWORD) -> str:
    """Signs in and returns the session's CSRF token (read from a page, as a browser's form has it)."""
    answer = await sign_in(client, email, password)
    assert answer.status_code == 303, answer.text
    return await session_csrf(client)


async def session_csrf(client: httpx.AsyncClient) -> str:
    """The signed-in session's CSRF token, as a page's forms carry it (base.html's sign-out form)."""
    page = await client.get("/console/audit")  # a 403 page too extends base.html, with the sign-out form
    assert page.status_code in (200, 403), page.status_code
    return csrf_in(page.text)
