"""Single sign-on through OpenID Connect against a hand-written fake provider (an httpx transport): a verified
email of an active account signs in; anything else is refused and audited."""

import base64
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from pymongo import AsyncMongoClient

from casework.access import Role
from casework.oidc import OpenIdProvider
from tests.support.console import Console, console

Mongo = AsyncMongoClient[dict[str, Any]]
ISSUER = "https://id.agency.example"
SSO = {"oidc_issuer": ISSUER, "oidc_client_id": "casework", "oidc_client_secret": "s3cret-of-the-client"}


class FakeProvider:
    """Discovery, token and UserInfo endpoints; records what casework sent to the token endpoint."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.claims = claims
        self.token_requests: list[dict[str, list[str]]] = []
        self.authorization: str = ""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/.well-known/openid-configuration":
            return httpx.Response(
                200,
                json={
                    "issuer": ISSUER,
                    "authorization_endpoint": f"{ISSUER}/authorize",
                    "token_endpoint": f"{ISSUER}/token",
                    "userinfo_endpoint": f"{ISSUER}/userinfo",
                },
            )
        if path == "/token":
            self.token_requests.append(parse_qs(request.content.decode()))
            self.authorization = request.headers.get("authorization", "")
            return httpx.Response(200, json={"access_token": "at-1", "token_type": "Bearer", "expires_in": 300})
        if path == "/userinfo" and request.headers.get("authorization") == "Bearer at-1":
            return httpx.Response(200, json=self.claims)
        return httpx.Response(401, json={"error": "invalid_token"})


def with_provider(c: Console, claims: dict[str, Any]) -> FakeProvider:
    fake = FakeProvider(claims)
    c.app.state.oidc_provider = OpenIdProvider(c.settings, transport=httpx.MockTransport(fake))
    return fake


async def go_through(http: httpx.AsyncClient, state: Callable[[str], str] = lambda s: s) -> httpx.Response:
    started = await http.get("/console/login/oidc", params={"next": "/console/cases/7"})
    assert started.status_code == 303
    query = parse_qs(urlsplit(started.headers["location"]).query)
    assert query["code_challenge_method"] == ["S256"]
    return await http.get("/console/login/oidc/callback", params={"state": state(query["state"][0]), "code": "c-1"})


async def test_a_verified_email_of_an_account_signs_in(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, **SSO) as c:
        operator = await c.staff(Role.OPERATOR)
        fake = with_provider(c, {"sub": "u1", "email": "Operator@Agency.example", "email_verified": True})
        async with c.client() as http:
            answer = await go_through(http)
            assert answer.status_code == 303
            assert answer.headers["location"] == "/console/cases/7"
            assert (
                await http.get("/console/probe/work_cases", headers={"Accept": "application/json"})
            ).status_code == 200
        sent = fake.token_requests[0]
        assert sent["code"] == ["c-1"]
        assert sent["code_verifier"]
        assert base64.b64decode(fake.authorization.split()[1]) == b"casework:s3cret-of-the-client"
        login = await mongo[mongo_db]["casework_audit"].find_one({"action": "login"})
        assert login is not None
        assert (login["actor"], login["subject"], login["detail"]) == (
            "operator@agency.example",
            operator.id,
            {"method": "single_sign_on"},
        )


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"sub": "u2", "email": "stranger@agency.example", "email_verified": True}, "single_sign_on_unknown_account"),
        ({"sub": "u3", "email": "operator@agency.example", "email_verified": False}, "single_sign_on"),
        ({"sub": "u4"}, "single_sign_on"),
    ],
)
async def test_anyone_else_is_refused_and_audited(
    mongo: Mongo, mongo_url: str, mongo_db: str, claims: dict[str, Any], reason: str
) -> None:
    async with console(mongo, mongo_url, mongo_db, **SSO) as c:
        await c.staff(Role.OPERATOR)
        with_provider(c, claims)
        async with c.client("198.51.100.3") as http:
            answer = await go_through(http)
            assert answer.status_code == 401
            assert "your verified email has no active staff account here" in answer.text
        assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 0
        failed = await mongo[mongo_db]["casework_audit"].find_one({"action": "login_failed"})
        assert failed is not None
        assert failed["detail"]["reason"] == reason
        assert failed["from_address"] == "198.51.100.3"


async def test_a_forged_state_is_refused(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, **SSO) as c:
        await c.staff(Role.OPERATOR)
        fake = with_provider(c, {"sub": "u1", "email": "operator@agency.example", "email_verified": True})
        async with c.client() as http:
            answer = await go_through(http, state=lambda _: "attacker-state")
            assert answer.status_code == 401
        async with c.client() as fresh:  # a callback without the browser's pending sign-in cookie
            direct = await fresh.get("/console/login/oidc/callback", params={"state": "s", "code": "c"})
            assert direct.status_code == 401
        assert fake.token_requests == []
        assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 0


async def test_without_configuration_there_is_no_single_sign_on(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c, c.client() as http:
        assert (await http.get("/console/login/oidc")).status_code == 404
        assert "/console/login/oidc" not in (await http.get("/console/login")).text
        assert json.loads((await http.get("/console/login/oidc", headers={"Accept": "application/json"})).text)


def discovery_failing(how: str) -> httpx.MockTransport:
    def answer(request: httpx.Request) -> httpx.Response:
        if how == "unreachable":
            raise httpx.ConnectError("connection refused", request=request)
        if how == "error":
            return httpx.Response(503, text="down for maintenance")
        if how == "not json":
            return httpx.Response(200, text="<html>hello</html>")
        return httpx.Response(200, json=["not", "an", "object"])

    return httpx.MockTransport(answer)


@pytest.mark.parametrize("how", ["unreachable", "error", "not json", "a list"])
async def test_a_provider_whose_discovery_fails_at_the_callback_refuses_clearly(
    mongo: Mongo, mongo_url: str, mongo_db: str, how: str
) -> None:
    async with console(mongo, mongo_url, mongo_db, **SSO) as c:
        await c.staff(Role.OPERATOR)
        with_provider(c, {"sub": "u1", "email": "operator@agency.example", "email_verified": True})
        async with c.client() as http:
            started = await http.get("/console/login/oidc")
            state = parse_qs(urlsplit(started.headers["location"]).query)["state"][0]
            # The callback reaches a replica that has not read the provider's metadata yet, and cannot.
            c.app.state.oidc_provider = OpenIdProvider(c.settings, transport=discovery_failing(how))
            answer = await http.get("/console/login/oidc/callback", params={"state": state, "code": "c-1"})
            assert answer.status_code == 401
            assert "Single sign-on did not sign you in" in answer.text
        failed = await mongo[mongo_db]["casework_audit"].find({"action": "login_failed"}).to_list()
        assert [e["detail"]["reason"] for e in failed] == ["single_sign_on"]
        assert await mongo[mongo_db]["casework_sessions"].count_documents({}) == 0


async def test_callbacks_without_a_pending_sign_in_write_nothing_and_are_limited(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db, login_attempts_per_minute=3, **SSO) as c:
        with_provider(c, {"sub": "u1", "email": "operator@agency.example", "email_verified": True})
        async with c.client("198.51.100.8") as http:
            for _ in range(3):
                answer = await http.get("/console/login/oidc/callback", params={"state": "s", "code": "c"})
                assert answer.status_code == 401
            throttled = await http.get("/console/login/oidc/callback", params={"state": "s", "code": "c"})
            assert throttled.status_code == 429
            assert 1 <= int(throttled.headers["retry-after"]) <= 60
        assert await mongo[mongo_db]["casework_audit"].count_documents({}) == 0
