"""Sessions end when they should: idle, too old, signed out, account disabled or its role changed."""

from typing import Any

from pymongo import AsyncMongoClient

from casework.access import Role
from tests.support.console import console, sign_in, signed_in_token

Mongo = AsyncMongoClient[dict[str, Any]]
JSON = {"Accept": "application/json"}


async def test_an_idle_session_ends_and_a_used_one_lives_on(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, session_idle_minutes=30, session_max_hours=12) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as http:
            await sign_in(http, "viewer@agency.example")
            for _ in range(4):  # 4 x 25 minutes, each request pushing the idle expiry back
                c.clock.advance(minutes=25)
                assert (await http.get("/console/probe/read_cases", headers=JSON)).status_code == 200
            c.clock.advance(minutes=31)
            assert (await http.get("/console/probe/read_cases", headers=JSON)).status_code == 401
            page = await http.get("/console/probe/read_cases?x=1")
            assert page.status_code == 303
            assert page.headers["location"] == "/console/login?next=%2Fconsole%2Fprobe%2Fread_cases%3Fx%3D1"
            assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 0  # gone, not left to TTL


async def test_a_session_ends_at_its_absolute_limit_however_busy(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, session_idle_minutes=60, session_max_hours=2) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as http:
            await sign_in(http, "viewer@agency.example")
            for _ in range(3):
                c.clock.advance(minutes=39)
                assert (await http.get("/console/probe/read_cases", headers=JSON)).status_code == 200
            c.clock.advance(minutes=4)  # 2 h 1 min after sign-in
            assert (await http.get("/console/probe/read_cases", headers=JSON)).status_code == 401


async def test_sign_out_ends_the_session_server_side(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as http:
            csrf = await signed_in_token(http, "viewer@agency.example")
            stolen = http.cookies.get("__Host-console_session")
            answer = await http.post("/console/logout", data={"csrf_token": csrf})
            assert answer.status_code == 303
            assert answer.headers["location"] == "/console/login"
            assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 0
        async with c.client() as replay:  # the old cookie, replayed, no longer works
            replay.cookies.set("__Host-console_session", stolen or "", domain="testserver")
            assert (await replay.get("/console/probe/read_cases", headers=JSON)).status_code == 401


async def test_disabling_an_account_and_changing_a_role_end_its_sessions(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        operator = await c.staff(Role.OPERATOR)
        async with c.client() as admin, c.client("198.51.100.5") as staff:
            csrf = await signed_in_token(admin, "admin@agency.example")
            await sign_in(staff, "operator@agency.example")
            assert (await staff.get("/console/probe/work_cases", headers=JSON)).status_code == 200
            changed = await admin.post(
                f"/console/accounts/{operator.id}", data={"csrf_token": csrf, "action": "role", "role": "viewer"}
            )
            assert changed.status_code == 200
            assert (await staff.get("/console/probe/read_cases", headers=JSON)).status_code == 401
            await sign_in(staff, "operator@agency.example")
            assert (await staff.get("/console/probe/work_cases", headers=JSON)).status_code == 403  # now a viewer
            disabled = await admin.post(
                f"/console/accounts/{operator.id}", data={"csrf_token": csrf, "action": "disable"}
            )
            assert disabled.status_code == 200
            assert (await staff.get("/console/probe/read_cases", headers=JSON)).status_code == 401
            refused = await sign_in(staff, "operator@agency.example")
            assert refused.status_code == 401
            enabled = await admin.post(
                f"/console/accounts/{operator.id}", data={"csrf_token": csrf, "action": "enable"}
            )
            assert enabled.status_code == 200
            assert (await sign_in(staff, "operator@agency.example")).status_code == 303


async def test_a_disabled_account_with_a_live_session_is_refused_at_once(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    """Even a session the disabling missed (another replica's race) ends: every request reads the account."""
    async with console(mongo, mongo_url, mongo_db) as c:
        viewer = await c.staff(Role.VIEWER)
        async with c.client() as http:
            await sign_in(http, "viewer@agency.example")
            await c.access.accounts.change(viewer.id, active=False)
            assert (await http.get("/console/probe/read_cases", headers=JSON)).status_code == 401
