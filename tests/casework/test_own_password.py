"""A staff member changes their own password: the form (current password, new one twice, CSRF), audited; and an
account with a password an admin handed over sees nothing else until it is changed."""

from typing import Any

from pymongo import AsyncMongoClient

from casework.access import Role
from tests.support.console import PASSWORD, Console, console, csrf_in, sign_in, signed_in_token

Mongo = AsyncMongoClient[dict[str, Any]]
NEW = "a brand new passphrase 新密码"


async def handed_over(c: Console, email: str = "li.lei@agency.example") -> str:
    """An account an admin made: its one-time password."""
    _, password = await c.access.create_account(email=email, name="Li Lei", role=Role.OPERATOR)
    assert password is not None
    return password


async def test_a_one_time_password_leads_to_the_form_and_nowhere_else(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        one_time = await handed_over(c)
        async with c.client() as http:
            answer = await sign_in(http, "li.lei@agency.example", one_time, next="/console/probe/read_cases")
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/console/password?next=")
            page = await http.get("/console/probe/read_cases")
            assert (page.status_code, page.headers["location"]) == (303, "/console/password")
            as_json = await http.get("/console/probe/read_cases", headers={"Accept": "application/json"})
            assert as_json.status_code == 403
            assert "change your password" in as_json.json()["detail"]
            form = await http.get("/console/password")
            assert form.status_code == 200
            assert "Choose a new password before you go on" in form.text
            csrf = csrf_in(form.text)
            post = await http.post("/console/probe/work_cases", data={"csrf_token": csrf})
            assert post.status_code == 403
            assert "Change your password first, on the Change password page." in post.text
            assert "<h1>Change your password first</h1>" in post.text
            changed = await http.post(
                "/console/password",
                data={
                    "csrf_token": csrf,
                    "current": one_time,
                    "new": NEW,
                    "again": NEW,
                    "next": "/console/probe/read_cases",
                },
            )
            assert (changed.status_code, changed.headers["location"]) == (303, "/console/probe/read_cases")
            assert (
                await http.get("/console/probe/read_cases", headers={"Accept": "application/json"})
            ).status_code == 200
        async with c.client() as again:
            assert (await sign_in(again, "li.lei@agency.example", one_time)).status_code == 401
            assert (await sign_in(again, "li.lei@agency.example", NEW)).status_code == 303
        changes = await mongo[mongo_db]["casework_audit"].find({"action": "password_changed"}).to_list()
        assert [(e["actor"], e["from_address"]) for e in changes] == [("li.lei@agency.example", "203.0.113.9")]
        assert NEW not in str(changes)


async def test_a_wrong_current_password_or_a_bad_new_one_changes_nothing(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as http:
            csrf = await signed_in_token(http, "viewer@agency.example")
            cases = [
                ({"current": "not my password!", "new": NEW, "again": NEW}, "The current password is wrong"),
                ({"current": PASSWORD, "new": NEW, "again": NEW + "x"}, "The two new passwords differ."),
                ({"current": PASSWORD, "new": "short", "again": "short"}, "12 to 1024 characters"),
                ({"current": PASSWORD, "new": PASSWORD, "again": PASSWORD}, "not the current one"),
            ]
            for form, message in cases:
                answer = await http.post("/console/password", data={"csrf_token": csrf, **form})
                assert answer.status_code == 400, form
                assert message in answer.text
                assert 'role="alert"' in answer.text
            forged = await http.post("/console/password", data={"current": PASSWORD, "new": NEW, "again": NEW})
            assert forged.status_code == 403
        async with c.client() as fresh:
            assert (await sign_in(fresh, "viewer@agency.example")).status_code == 303
        assert await mongo[mongo_db]["casework_audit"].count_documents({"action": "password_changed"}) == 0


async def test_the_form_needs_a_session_and_speaks_chinese(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        one_time = await handed_over(c)
        async with c.client() as http:
            away = await http.get("/console/password")
            assert (away.status_code, away.headers["location"]) == (303, "/console/login?next=/console/password")
            await sign_in(http, "li.lei@agency.example", one_time)
            page = await http.get("/console/password", headers={"Accept-Language": "zh-CN"})
            assert "继续之前，请设置新密码" in page.text


async def test_changing_the_password_ends_the_other_sessions(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as mine, c.client() as elsewhere:
            csrf = await signed_in_token(mine, "viewer@agency.example")
            await signed_in_token(elsewhere, "viewer@agency.example")
            changed = await mine.post(
                "/console/password", data={"csrf_token": csrf, "current": PASSWORD, "new": NEW, "again": NEW}
            )
            assert changed.status_code == 303
            json_accept = {"Accept": "application/json"}
            assert (await mine.get("/console/probe/read_cases", headers=json_accept)).status_code == 200
            assert (await elsewhere.get("/console/probe/read_cases", headers=json_accept)).status_code == 401
