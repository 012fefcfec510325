"""The permission matrix: each role against each of access's pages and each permission ``require`` guards."""

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from casework.access import ROLE_PERMISSIONS, Permission, Role
from tests.support.console import console, sign_in, signed_in_token

Mongo = AsyncMongoClient[dict[str, Any]]
ADMIN_ONLY_PAGES = ("/console/accounts", "/console/audit", "/console/audit.csv")


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_against_each_page_and_permission(
    mongo: Mongo, mongo_url: str, mongo_db: str, role: Role
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(role)
        async with c.client() as http:
            csrf = await signed_in_token(http, f"{role.value}@agency.example")
            for path in ADMIN_ONLY_PAGES:
                answer = await http.get(path)
                assert answer.status_code == (200 if role is Role.ADMIN else 403), path
                if role is not Role.ADMIN:
                    assert "Your role does not allow this" in answer.text
            created = await http.post(
                "/console/accounts",
                data={"csrf_token": csrf, "email": f"new-{role.value}@agency.example", "name": "N", "role": "admin"},
            )
            assert created.status_code == (201 if role is Role.ADMIN else 403)
            for permission in Permission:
                allowed = permission in ROLE_PERMISSIONS[role]
                for method in ("GET", "POST"):
                    answer = await http.request(
                        method,
                        f"/console/probe/{permission.value}",
                        data={"csrf_token": csrf} if method == "POST" else None,
                        headers={"Accept": "application/json"},
                    )
                    assert answer.status_code == (200 if allowed else 403), (permission, method)
                    if not allowed:
                        assert answer.json() == {"detail": "permission"}


async def test_no_session_redirects_a_page_and_refuses_anything_else(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        for path in ADMIN_ONLY_PAGES:
            page = await http.get(path)
            assert page.status_code == 303
            assert page.headers["location"].startswith("/console/login?next=%2Fconsole%2F")
        assert (await http.get("/console/audit", headers={"Accept": "application/json"})).status_code == 401
        assert (await http.post("/console/accounts", data={"email": "x@agency.example"})).status_code == 401
        assert await mongo[mongo_db]["casework_staff"].count_documents({}) == 0


async def test_after_sign_in_the_browser_returns_to_the_page_it_asked_for(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        await c.staff(Role.ADMIN)
        redirect = await http.get("/console/audit?action=login")
        login_page = await http.get(redirect.headers["location"])
        assert 'name="next" value="/console/audit?action=login"' in login_page.text
        answer = await sign_in(http, "admin@agency.example", next="/console/audit?action=login")
        assert answer.headers["location"] == "/console/audit?action=login"
