"""Every state-changing console request needs its CSRF token: without it, or with a wrong one, 403 and no change."""

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from casework.access import Role
from tests.support.console import PASSWORD, console, csrf_in, sign_in, signed_in_token

Mongo = AsyncMongoClient[dict[str, Any]]
CSRF_MESSAGE = "CSRF token missing or wrong"


@pytest.mark.parametrize("token", [None, "", "wrong-token", "x" * 10_000])
async def test_account_creation_without_the_right_token_is_refused_and_changes_nothing(
    mongo: Mongo, mongo_url: str, mongo_db: str, token: str | None
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        async with c.client() as http:
            await signed_in_token(http, "admin@agency.example")
            form = {"email": "new@agency.example", "name": "New", "role": "admin", "sign_in": "password"}
            if token is not None:
                form["csrf_token"] = token
            answer = await http.post("/console/accounts", data=form)
            assert answer.status_code == 403
            assert "CSRF token missing or wrong" in answer.text
            assert await mongo[mongo_db]["casework_staff"].count_documents({}) == 1
            as_json = await http.post("/console/accounts", data=form, headers={"Accept": "application/json"})
            assert as_json.status_code == 403
            assert as_json.json() == {"detail": CSRF_MESSAGE}


async def test_the_header_carries_the_token_too(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.OPERATOR)
        async with c.client() as http:
            csrf = await signed_in_token(http, "operator@agency.example")
            json = {"Accept": "application/json"}
            assert (await http.post("/console/probe/work_cases", headers=json)).status_code == 403
            answer = await http.post("/console/probe/work_cases", headers={**json, "X-CSRF-Token": csrf})
            assert answer.status_code == 200


async def test_another_sessions_token_does_not_do(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.OPERATOR)
        async with c.client() as first, c.client() as second:
            first_token = await signed_in_token(first, "operator@agency.example")
            await signed_in_token(second, "operator@agency.example")
            answer = await second.post("/console/probe/work_cases", data={"csrf_token": first_token})
            assert answer.status_code == 403


async def test_sign_out_without_the_token_keeps_the_session(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as http:
            await signed_in_token(http, "viewer@agency.example")
            assert (await http.post("/console/logout", data={"csrf_token": "forged"})).status_code == 403
            assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 1
            assert (
                await http.get("/console/probe/read_cases", headers={"Accept": "application/json"})
            ).status_code == 200


async def test_sign_in_needs_the_pre_session_token(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    """Login CSRF: a page elsewhere cannot sign a browser in to an account of the attacker's choosing."""
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as http:
            form = {"email": "viewer@agency.example", "password": PASSWORD}
            assert (await http.post("/console/login", data=form)).status_code == 403
            page = await http.get("/console/login")
            token = csrf_in(page.text)
            cookie = next(h for h in page.headers.get_list("set-cookie") if h.startswith("__Host-console_csrf="))
            assert "HttpOnly" in cookie
            assert "Secure" in cookie
            # A token of the right shape but not signed by us is refused even when cookie and field agree.
            forged = token.rsplit(".", 1)[0] + ".AAAA"
            http.cookies.set("__Host-console_csrf", forged, domain="testserver")
            assert (await http.post("/console/login", data={**form, "csrf_token": forged})).status_code == 403
            assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 0
        async with c.client() as http:
            assert (await sign_in(http, "viewer@agency.example")).status_code == 303


async def test_the_language_switch_needs_a_token_and_a_local_next(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        refused = await http.post("/console/language", data={"lang": "zh-CN", "next": "/console/login"})
        assert refused.status_code == 403
        assert "console_lang" not in refused.headers.get("set-cookie", "")
        token = csrf_in((await http.get("/console/login")).text)
        answer = await http.post(
            "/console/language", data={"lang": "zh-CN", "next": "https://evil.example/", "csrf_token": token}
        )
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/cases"
        assert http.cookies.get("console_lang") == "zh-CN"
        page = await http.get("/console/login")
        assert 'lang="zh-CN"' in page.text
        assert "登录" in page.text
        unknown = await http.post("/console/language", data={"lang": "xx", "next": "/", "csrf_token": token})
        assert unknown.status_code == 400
