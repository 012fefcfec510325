"""Staff accounts: an admin creates one (a one-time password that works), bad input is refused with clear errors
and changes nothing, the first admin of a local run, and ``create-admin``."""

import asyncio
import io
from typing import Any

import httpx
import pytest
from argon2 import PasswordHasher
from pymongo import AsyncMongoClient

from casework import admin_cli
from casework.access import Role
from tests.support.console import casework_settings, console, sign_in, signed_in_token

Mongo = AsyncMongoClient[dict[str, Any]]
ONE_TIME = "<code>"


async def test_a_new_account_signs_in_with_its_one_time_password(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        async with c.client() as admin, c.client() as newcomer:
            csrf = await signed_in_token(admin, "admin@agency.example")
            answer = await admin.post(
                "/console/accounts",
                data={"csrf_token": csrf, "email": " Li.Lei@Agency.example", "name": "李雷", "role": "operator"},
            )
            assert answer.status_code == 201
            assert answer.headers["cache-control"] == "no-store"
            password = answer.text.split(ONE_TIME, 1)[1].split("</code>", 1)[0]
            assert len(password) >= 12
            assert (await sign_in(newcomer, "li.lei@agency.example", password)).status_code == 303
            stored = await mongo[mongo_db]["casework_staff"].find_one({"email": "li.lei@agency.example"})
            assert stored is not None
            assert stored["password_hash"].startswith("$argon2id$")
            assert password not in str(stored)
            listing = await admin.get("/console/accounts")
            assert ONE_TIME not in listing.text  # shown once, only in the answer to the creation


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"email": "bad\r\nemail@agency.example", "name": "X", "role": "viewer"}, "Enter an email address"),
        ({"email": "x" * 300 + "@agency.example", "name": "X", "role": "viewer"}, "Enter an email address"),
        ({"email": "ok@agency.example", "name": "", "role": "viewer"}, "Enter a name of 1 to 100 characters"),
        ({"email": "ok@agency.example", "name": "名" * 101, "role": "viewer"}, "Enter a name of 1 to 100 characters"),
        ({"email": "ok@agency.example", "name": "X\x1b[31m", "role": "viewer"}, "Enter a name of 1 to 100 characters"),
        ({"email": "ok@agency.example", "name": "X", "role": "superuser"}, "Choose a role"),
        ({"email": "admin@agency.example", "name": "X", "role": "viewer"}, "An account with this email already exists"),
        ({"email": "ok@agency.example", "name": "X", "role": "viewer", "sign_in": "sso"}, "Choose how the account"),
    ],
)
async def test_bad_input_is_refused_clearly_and_creates_nothing(
    mongo: Mongo, mongo_url: str, mongo_db: str, form: dict[str, str], message: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        async with c.client() as http:
            csrf = await signed_in_token(http, "admin@agency.example")
            answer = await http.post("/console/accounts", data={"csrf_token": csrf, **form})
            assert answer.status_code == 400
            assert message in answer.text
            assert 'role="alert"' in answer.text
            assert "aria-describedby=" in answer.text
            assert "\x1b" not in answer.text
            assert "\r\nemail" not in answer.text
        assert await mongo[mongo_db]["casework_staff"].count_documents({}) == 1
        assert await mongo[mongo_db]["casework_audit"].count_documents({"action": "account_created"}) == 0


async def test_an_admin_cannot_demote_or_disable_themselves(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        admin = await c.staff(Role.ADMIN)
        async with c.client() as http:
            csrf = await signed_in_token(http, "admin@agency.example")
            for form in ({"action": "role", "role": "viewer"}, {"action": "disable"}, {"action": "drop"}):
                answer = await http.post(f"/console/accounts/{admin.id}", data={"csrf_token": csrf, **form})
                assert answer.status_code == 400
            missing = await http.post("/console/accounts/nope", data={"csrf_token": csrf, "action": "disable"})
            assert missing.status_code == 404
        stored = await c.access.accounts.by_id(admin.id)
        assert stored is not None
        assert stored.role is Role.ADMIN
        assert stored.active


async def test_the_first_admin_is_made_only_when_no_account_exists(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        generated = await c.access.ensure_first_admin("admin@localhost", None)
        assert generated is not None
        assert len(generated) >= 12
        assert await c.access.ensure_first_admin("other@localhost", None) is None
        assert await c.access.ensure_first_admin("other@localhost", "a chosen password") is None
        assert [a.email for a in await c.access.accounts.all()] == ["admin@localhost"]
        async with c.client() as http:
            assert (await sign_in(http, "admin@localhost", generated)).status_code == 303
    async with console(mongo, mongo_url, mongo_db + "_given") as c:
        assert await c.access.ensure_first_admin("admin@localhost", "a chosen password") is None
        account = await c.access.accounts.by_email("admin@localhost")
        assert account is not None
        assert account.role is Role.ADMIN


async def test_a_stored_hash_with_old_parameters_is_replaced_at_sign_in(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        viewer = await c.staff(Role.VIEWER)
        old = PasswordHasher(time_cost=1, memory_cost=8192).hash("correct horse battery staple")
        await c.access.accounts.change(viewer.id, password_hash=old)
        async with c.client() as http:
            assert (await sign_in(http, "viewer@agency.example")).status_code == 303
        stored = await c.access.accounts.by_id(viewer.id)
        assert stored is not None
        assert stored.password_hash != old
        assert PasswordHasher().verify(stored.password_hash or "", "correct horse battery staple")


def test_create_admin_from_the_command_line(mongo_url: str, mongo_db: str, capsys: pytest.CaptureFixture[str]) -> None:
    settings = casework_settings(mongo_url, mongo_db)
    argv = ["create-admin", "--email", "Boss@Agency.example", "--name", "Boss", "--password-stdin"]
    assert admin_cli.main(argv, settings, stdin=io.StringIO("a long enough password\n")) == 0
    assert "created admin" in capsys.readouterr().out
    assert admin_cli.main(argv, settings, stdin=io.StringIO("another long password\n")) == 1
    assert "already exists" in capsys.readouterr().err
    short = ["create-admin", "--email", "x@agency.example", "--password-stdin"]
    assert admin_cli.main(short, settings, stdin=io.StringIO("short\n")) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    prompts = iter(["first password typed", "second is different"])
    typed = ["create-admin", "--email", "y@agency.example"]
    assert admin_cli.main(typed, settings, prompt=lambda _: next(prompts)) == 2
    assert "differ" in capsys.readouterr().err


async def lock_out(http: httpx.AsyncClient, email: str, failures: int) -> None:
    for _ in range(failures):
        assert (await sign_in(http, email, "wrong password here")).status_code == 401


async def test_an_admin_s_reset_unlocks_and_must_be_changed(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, login_max_failures=3) as c:
        await c.staff(Role.ADMIN)
        viewer = await c.staff(Role.VIEWER)
        async with c.client() as admin, c.client("198.51.100.66") as attacker, c.client() as owner:
            await lock_out(attacker, "viewer@agency.example", 3)
            csrf = await signed_in_token(admin, "admin@agency.example")
            listing = await admin.get("/console/accounts")
            assert "sign-in locked" in listing.text
            answer = await admin.post(
                f"/console/accounts/{viewer.id}", data={"csrf_token": csrf, "action": "reset_password"}
            )
            assert answer.status_code == 200
            password = answer.text.split(ONE_TIME, 1)[1].split("</code>", 1)[0]
            assert "sign-in locked" not in answer.text
            signed = await sign_in(owner, "viewer@agency.example", password)
            assert signed.status_code == 303
            assert signed.headers["location"].startswith("/console/password")
        stored = await c.access.accounts.by_id(viewer.id)
        assert stored is not None
        assert stored.must_change_password


async def test_an_admin_unlocks_an_account_and_it_is_audited(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, login_max_failures=3) as c:
        await c.staff(Role.ADMIN)
        viewer = await c.staff(Role.VIEWER)
        async with c.client() as admin, c.client("198.51.100.66") as attacker, c.client() as owner:
            await lock_out(attacker, "viewer@agency.example", 3)
            assert (await sign_in(owner, "viewer@agency.example")).status_code == 401
            csrf = await signed_in_token(admin, "admin@agency.example")
            assert 'value="unlock"' in (await admin.get("/console/accounts")).text
            answer = await admin.post(f"/console/accounts/{viewer.id}", data={"csrf_token": csrf, "action": "unlock"})
            assert answer.status_code == 200
            assert 'value="unlock"' not in answer.text
            assert (await sign_in(owner, "viewer@agency.example")).status_code == 303
        unlocked = await mongo[mongo_db]["casework_audit"].find_one({"detail.change": "unlock"})
        assert unlocked is not None
        assert (unlocked["actor"], unlocked["subject"]) == ("admin@agency.example", viewer.id)


async def test_a_single_sign_on_account_has_no_password_to_reset(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        sso, _ = await c.access.create_account(
            email="sso@agency.example", name="S", role=Role.VIEWER, single_sign_on=True
        )
        async with c.client() as admin:
            csrf = await signed_in_token(admin, "admin@agency.example")
            answer = await admin.post(
                f"/console/accounts/{sso.id}", data={"csrf_token": csrf, "action": "reset_password"}
            )
            assert answer.status_code == 400
            assert "single sign-on only" in answer.text
            assert ONE_TIME not in answer.text
        stored = await c.access.accounts.by_id(sso.id)
        assert stored is not None
        assert stored.password_hash is None


async def test_the_last_active_admin_cannot_be_removed(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        first = await c.staff(Role.ADMIN, "first@agency.example")
        second = await c.staff(Role.ADMIN, "second@agency.example")
        async with c.client() as http:
            csrf = await signed_in_token(http, "first@agency.example")
            demoted = await http.post(
                f"/console/accounts/{second.id}", data={"csrf_token": csrf, "action": "role", "role": "viewer"}
            )
            assert demoted.status_code == 200
        # The second admin's own request, sent before the demotion landed, arrives now: it would leave no admin.
        account = await c.access.accounts.by_id(first.id)
        assert account is not None
        assert not await c.access.keep_an_admin(account, role="viewer")
        assert not await c.access.keep_an_admin(account, active=False)
        stored = await c.access.accounts.by_id(first.id)
        assert stored is not None
        assert (stored.role, stored.active) == (Role.ADMIN, True)


async def test_two_admins_removing_each_other_at_once_leave_one(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        first = await c.staff(Role.ADMIN, "first@agency.example")
        second = await c.staff(Role.ADMIN, "second@agency.example")
        async with c.client() as one, c.client() as other:
            one_csrf = await signed_in_token(one, "first@agency.example")
            other_csrf = await signed_in_token(other, "second@agency.example")
            answers = await asyncio.gather(
                one.post(f"/console/accounts/{second.id}", data={"csrf_token": one_csrf, "action": "disable"}),
                other.post(f"/console/accounts/{first.id}", data={"csrf_token": other_csrf, "action": "disable"}),
            )
        assert await c.access.accounts.active_admins() >= 1
        for answer in answers:
            assert answer.status_code in (200, 401, 409)
            if answer.status_code == 409:
                assert "That would leave no active admin" in answer.text
