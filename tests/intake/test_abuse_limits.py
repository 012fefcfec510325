"""Abuse limits, idempotency and enquiries over HTTP, against the real RabbitMQ."""

import asyncio
import json
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import httpx
import pytest
from prometheus_client import REGISTRY

from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, NOTIFICATIONS_ENQUIRY_RECEIVED
from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import application, flat_form
from tests.support.events import ENQUIRY
from tests.support.settings import settings_with

FRONTEND = "https://www.agency.example"


async def test_a_body_over_64_kib_is_413_and_publishes_nothing(intake_settings: IntakeSettings, amqp_url: str) -> None:
    app = create_app(intake_settings)
    huge = application({"notes": "x" * 70_000})

    async def chunks() -> AsyncIterator[bytes]:
        for chunk in (b'{"notes": "', b"y" * 70_000, b'"}'):
            yield chunk

    async with serving(app), client(app) as http:
        response = await http.post("/v1/applications", json=huge)
        chunked = await http.post(
            "/v1/applications",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
    for refused in (response, chunked):  # with and without a Content-Length to trust
        assert refused.status_code == 413
        assert refused.json()["type"] == "/problems/body-too-large"
    assert await broker.depth(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name) == 0


async def test_content_types_other_than_json_and_form_are_415(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        for content_type in ("text/plain", "multipart/form-data; boundary=x", "application/xml"):
            response = await http.post("/v1/applications", content=b"x", headers={"Content-Type": content_type})
            assert response.status_code == 415, content_type
            assert response.headers["content-type"] == "application/problem+json"
        missing = await http.post("/v1/enquiries", content=b"{}")
    assert missing.status_code == 415


async def test_form_encoded_posts_are_accepted_like_json(intake_settings: IntakeSettings, amqp_url: str) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.post(
            "/v1/applications",
            content=urlencode(flat_form(application())),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    assert response.status_code == 202, response.text
    [message] = await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name)
    event = json.loads(message.body)
    assert event["data"]["application"]["company"]["address"] == "1000 Granville St\nVancouver, BC V6Z 1L5"
    assert event["data"]["application"]["agreement"]["accepted"] is True


async def test_rate_limit_per_client_with_retry_after(intake_settings: IntakeSettings) -> None:
    app = create_app(settings_with(intake_settings, rate_limit="3/minute"))
    async with (
        serving(app),
        client(app, client_ip="203.0.113.50") as http,
        client(app, client_ip="203.0.113.51") as other,
    ):
        statuses = [(await http.post("/v1/applications", json=application())).status_code for _ in range(3)]
        limited = await http.post("/v1/applications", json=application())
        enquiry_limited = await http.post("/v1/enquiries", json=ENQUIRY)
        neighbour = await other.post("/v1/applications", json=application())
    assert statuses == [202, 202, 202]
    assert limited.status_code == 429
    assert enquiry_limited.status_code == 429
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    assert limited.json()["type"] == "/problems/rate-limited"
    assert neighbour.status_code == 202


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(intake_settings: IntakeSettings, amqp_url: str) -> None:
    app = create_app(settings_with(intake_settings, rate_limit="1/minute", trusted_proxies="10.0.0.0/8"))
    async with (
        serving(app),
        client(app, client_ip="10.0.0.5") as proxy,
        client(app, client_ip="198.51.100.1") as direct,
    ):
        first = await proxy.post("/v1/applications", json=application(), headers={"X-Forwarded-For": "192.0.2.1"})
        second_client = await proxy.post(
            "/v1/applications", json=application(), headers={"X-Forwarded-For": "192.0.2.2"}
        )
        spoofing = [
            await direct.post("/v1/applications", json=application(), headers={"X-Forwarded-For": f"192.0.2.{n}"})
            for n in (10, 11)
        ]
    assert (first.status_code, second_client.status_code) == (202, 202)  # two clients behind one proxy
    assert [r.status_code for r in spoofing] == [202, 429]  # an untrusted peer cannot rotate its identity
    events = [json.loads(m.body) for m in await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, count=3)]
    assert sorted(e["data"]["acceptance"]["client_ip"] for e in events) == ["192.0.2.1", "192.0.2.2", "198.51.100.1"]


def honeypot_hits(form: str) -> float:
    return REGISTRY.get_sample_value("intake_honeypot_hits_total", {"form": form}) or 0.0


async def test_a_filled_honeypot_looks_accepted_but_publishes_nothing_and_is_counted(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    before = honeypot_hits("application")
    async with serving(app), client(app) as http:
        response = await http.post("/v1/applications", json={**application(), "fax": "+1 555 0100"})
        metrics = (await http.get("/metrics")).text
    assert response.status_code == 202
    assert set(response.json()) == {"application_id", "status_url"}
    assert honeypot_hits("application") == before + 1
    assert 'intake_honeypot_hits_total{form="application"}' in metrics
    assert await broker.depth(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name) == 0


async def test_cors_preflight_for_allowed_frontends_only(intake_settings: IntakeSettings) -> None:
    app = create_app(settings_with(intake_settings, allowed_origins=FRONTEND))
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,idempotency-key",
    }
    async with serving(app), client(app) as http:
        allowed = await http.options("/v1/applications", headers={"Origin": FRONTEND, **preflight})
        refused = await http.options("/v1/applications", headers={"Origin": "https://evil.example", **preflight})
        cross_site_post = await http.post(
            "/v1/applications", json=application(), headers={"Origin": "https://evil.example"}
        )
        frontend_post = await http.post("/v1/applications", json=application(), headers={"Origin": FRONTEND})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == FRONTEND
    assert "idempotency-key" in allowed.headers["access-control-allow-headers"].lower()
    assert refused.status_code == 400
    assert "access-control-allow-origin" not in refused.headers
    assert cross_site_post.status_code == 403
    assert cross_site_post.json()["type"] == "/problems/origin-refused"
    assert frontend_post.status_code == 202
    assert frontend_post.headers["access-control-allow-origin"] == FRONTEND


async def test_the_same_idempotency_key_yields_the_same_application_also_concurrently(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:

        async def post(key: str) -> httpx.Response:
            return await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": key})

        sequential = [await post("key-A-6f1c7d2a-4a0e"), await post("key-A-6f1c7d2a-4a0e")]
        concurrent = await asyncio.gather(*(post("key-B-6f1c7d2a-4a0e") for _ in range(5)))
        different = await post("key-C-6f1c7d2a-4a0e")
    assert len({r.json()["application_id"] for r in sequential}) == 1
    assert len({r.json()["application_id"] for r in concurrent}) == 1
    assert different.json()["application_id"] not in {
        sequential[0].json()["application_id"],
        concurrent[0].json()["application_id"],
    }
    messages = await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, count=8)
    # Each copy carries the same event id, which is what lets consumers drop repeats.
    assert len({m.message_id for m in messages}) == 3


@pytest.mark.parametrize("key", ["1", "short-key", "k" * 129, "sixteen chars w/ spaces"])
async def test_a_guessable_or_malformed_idempotency_key_is_a_field_error(
    intake_settings: IntakeSettings, key: str
) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": key})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["idempotency_key"]


async def test_an_enquiry_is_published_as_enquiry_received(intake_settings: IntakeSettings, amqp_url: str) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.post(
            "/v1/enquiries", json={**ENQUIRY, "locale": "zh-CN"}, headers={"X-Correlation-ID": "enq-1"}
        )
        invalid = await http.post("/v1/enquiries", json={**ENQUIRY, "services": ["seo"], "email": "nope"})
    assert response.status_code == 202, response.text
    [message] = await broker.take(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.name)
    event = json.loads(message.body)
    assert event["event_type"] == "enquiry.received"
    assert event["data"]["enquiry_id"] == response.json()["enquiry_id"]
    assert event["data"]["locale"] == "zh-CN"
    assert message.correlation_id == "enq-1"
    assert invalid.status_code == 422
    assert {e["field"] for e in invalid.json()["errors"]} == {"services.0", "email"}


POST_ROUTES = {"/v1/applications": "application/problem+json", "/v1/enquiries": "application/problem+json",
               "/": "text/html", "/contact": "text/html"}  # fmt: skip
DEEP_FORM_NAME = ".".join(["company"] * 5000)
JSON_TYPE = "application/json"
BAD_BODIES = {
    "deep JSON": (JSON_TYPE, b'{"notes": ' + b"[" * 5000 + b"]" * 5000 + b"}"),
    "JSON nested past a form": (JSON_TYPE, b'{"notes": ' + b"[" * 900 + b"]" * 900 + b"}"),
    "a 5000-digit number": (JSON_TYPE, b'{"notes": ' + b"9" * 5000 + b"}"),
    "deep form names": ("application/x-www-form-urlencoded", f"{DEEP_FORM_NAME}=x".encode()),
    "text": ("text/plain", b"name=x"),
    "XML": ("application/xml", b"<application/>"),
}


async def test_bad_bodies_are_4xx_on_every_post_route_and_publish_nothing(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(settings_with(intake_settings, rate_limit="1000/minute"))
    async with serving(app), client(app) as http:
        for path, answer_type in POST_ROUTES.items():
            bodies = {**BAD_BODIES, "JSON of the right form": (JSON_TYPE, json.dumps(ENQUIRY).encode())}
            if path.startswith("/v1/"):
                del bodies["JSON of the right form"]  # the API reads JSON; the pages only their forms' data
            for what, (content_type, body) in bodies.items():
                response = await http.post(path, content=body, headers={"Content-Type": content_type})
                assert response.status_code in (400, 413, 415, 422), (path, what, response.status_code)
                assert response.headers["content-type"].startswith(answer_type), (path, what)
                if answer_type == "text/html":
                    assert "The form could not be read." in response.text, (path, what)
                else:
                    assert response.json()["status"] == response.status_code
    for queue in (AGREEMENTS_APPLICATION_SUBMITTED, NOTIFICATIONS_ENQUIRY_RECEIVED):
        assert await broker.depth(amqp_url, queue.name) == 0


async def test_ipv6_clients_are_counted_by_their_64(intake_settings: IntakeSettings, amqp_url: str) -> None:
    app = create_app(settings_with(intake_settings, rate_limit="1/minute"))
    async with serving(app):
        statuses = []
        for address in ("2001:db8:7:1::1", "2001:db8:7:1:ffff::2", "2001:db8:7:2::1"):
            async with client(app, client_ip=address) as http:
                statuses.append((await http.post("/v1/enquiries", json=ENQUIRY)).status_code)
    # A /64 is one subscriber: rotating addresses inside it does not reset the count; the next /64 is another client.
    assert statuses == [202, 429, 202]
    events = [json.loads(m.body) for m in await broker.take(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.name, count=2)]
    assert len(events) == 2
