"""Who answers intake's submissions: the route table's SubmissionRoute, running the endpoint FastAPI documents."""

import gc
import inspect
import uuid
from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.types import Receive, Scope, Send

from agency_chassis.correlation import CorrelationIdMiddleware
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.forms import ApplicationForm, EnquiryForm
from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED, NOTIFICATIONS_ENQUIRY_RECEIVED
from bench.ceiling_intake import DiscardingSink
from intake.accepting import Intake
from intake.captcha import CaptchaOff
from intake.deps import Context
from intake.guards import FORM, JSON, SubmissionGuard
from intake.main import create_app
from intake.problems import install_problem_handlers
from intake.settings import IntakeSettings
from intake.submission import RequestContext
from intake.submission_route import SubmissionRoute
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import application, flat_form
from tests.support.events import ENQUIRY
from tests.support.fakes import FakeIdempotencyKeys
from tests.support.metrics import Samples, parse, value

SUBMISSIONS = {
    "/v1/applications": ("submit_application", ApplicationForm),
    "/v1/enquiries": ("submit_enquiry", EnquiryForm),
}
KEY = "routing-test-key-0001"


def routed(app: FastAPI) -> tuple[httpx.AsyncClient, list[Scope]]:
    """A client of ``app`` that keeps every request's scope: routing writes the matched ``route`` into it."""
    scopes: list[Scope] = []

    async def spy(scope: Scope, receive: Receive, send: Send) -> None:
        scopes.append(scope)
        await app(scope, receive, send)

    transport = httpx.ASGITransport(app=spy, client=("203.0.113.7", 51515))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver"), scopes


def accepted(samples: Samples, route: str) -> float:
    return value(samples, "wechat_http_requests_total", service="intake", route=route, method="POST", status="202")


def form_post(body: dict[str, object]) -> dict[str, object]:
    return {"content": urlencode(flat_form(body)).encode(), "headers": {"Content-Type": FORM, "Idempotency-Key": KEY}}


async def test_the_route_table_names_who_answers_json_and_form_posts_alike(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    http, scopes = routed(app)
    bodies = {"/v1/applications": application(), "/v1/enquiries": ENQUIRY}
    async with serving(app), http:
        before = parse((await http.get("/metrics")).text)
        answers = [
            await http.post(path, **post)
            for path, body in bodies.items()
            for post in ({"json": body, "headers": {"Idempotency-Key": KEY}}, form_post(body))
        ]
        after = parse((await http.get("/metrics")).text)
    assert [answer.status_code for answer in answers] == [202] * 4, [answer.text for answer in answers]
    assert all(answer.headers["content-type"] == JSON and "X-Correlation-ID" in answer.headers for answer in answers)
    # The same key names the same submission, whichever way it was posted: the two took the same path.
    assert answers[0].json() == answers[1].json()
    assert answers[2].json() == answers[3].json()
    assert set(answers[0].json()) == {"application_id", "status_url"}
    assert set(answers[2].json()) == {"enquiry_id"}
    posts = [scope for scope in scopes if scope["method"] == "POST"]
    for scope, path in zip(posts, [p for p in bodies for _ in range(2)], strict=True):
        route = scope["route"]
        assert isinstance(route, SubmissionRoute)
        assert (route.path, route.endpoint.__name__, route.form) == (path, *SUBMISSIONS[path])
        assert scope["endpoint"] is route.endpoint
    # No middleware of its own answers a submission: CORS, correlation ids and metrics only wrap the routes.
    middleware = [m.cls.__name__ for m in app.user_middleware]  # type: ignore[attr-defined]
    assert sorted(middleware) == ["CORSMiddleware", "CorrelationIdMiddleware", "HttpMetricsMiddleware"]
    for path in bodies:  # labelled by the route's path template
        assert accepted(after, path) - accepted(before, path) == 2
    assert len(await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 2)) == 2
    assert len(await broker.take(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.name, 2)) == 2


async def test_the_openapi_request_bodies_are_what_the_answering_endpoints_declare(
    intake_settings: IntakeSettings,
) -> None:
    app = create_app(intake_settings)
    http, scopes = routed(app)
    async with http:
        for path in SUBMISSIONS:  # refused (no lifespan, no fields), but routed
            assert (await http.post(path, json={})).status_code == 422
        schema = (await http.get("/openapi.json")).json()
    routes = {scope["route"].path: scope["route"] for scope in scopes[:2]}
    assert set(routes) == set(SUBMISSIONS)
    for path, route in routes.items():
        operation = schema["paths"][path]["post"]
        assert operation["description"] == inspect.getdoc(route.endpoint)
        content = operation["requestBody"]["content"]
        assert set(content) == {JSON, FORM}
        assert content[JSON]["schema"] == {"$ref": f"#/components/schemas/{route.form.__name__}"}
        assert {"name": "idempotency-key", "in": "header"}.items() <= operation["parameters"][0].items()
        assert operation["responses"]["202"]["content"][JSON]["schema"]["$ref"].endswith("Accepted")
        assert "application/problem+json" in operation["responses"]["422"]["content"]
        assert schema["paths"][path].keys() == {"post"}


class Echo(BaseModel):
    country: str
    idempotency_key: str | None
    client_ip: str


def echo_app(calls: list[tuple[ApplicationForm, RequestContext]], rate: str = "100/minute") -> FastAPI:
    """An app with one SubmissionRoute whose endpoint records what it was called with."""
    intake = Intake(AgreementCatalog.bundled(), DiscardingSink(), FakeIdempotencyKeys(), CaptchaOff())

    async def echo(application: ApplicationForm, context: Context) -> Echo:
        calls.append((application, context))
        return Echo(country=application.company.country, idempotency_key=context.idempotency_key,
                    client_ip=context.client_ip)  # fmt: skip

    app = FastAPI()
    app.state.settings = IntakeSettings(environment="test")
    guard = SubmissionGuard(rate, 65536, [], [])
    app.router.routes.append(
        SubmissionRoute(
            "/echo", echo, kind="application", decoy=lambda _: Echo(country="", idempotency_key=None, client_ip=""),
            intake=intake, guard=guard, settings=app.state.settings, response_model=Echo,
        )
    )  # fmt: skip
    install_problem_handlers(app, retry_after_seconds=5)
    app.add_middleware(CorrelationIdMiddleware)
    return app


async def test_the_endpoint_runs_with_the_form_validated_from_json_or_form_data() -> None:
    calls: list[tuple[ApplicationForm, RequestContext]] = []
    app = echo_app(calls)
    async with client(app) as http:
        json_post = await http.post(
            "/echo", json=application({"company.country": "GB"}), headers={"Idempotency-Key": KEY}
        )
        form = form_post(application({"company.country": "GB"}))
        form_answer = await http.post("/echo", **form)  # type: ignore[arg-type]
        invalid = await http.post("/echo", json=application({"company.country": "XX"}))
        trapped = await http.post("/echo", json={"fax": "1"})
    assert json_post.status_code == form_answer.status_code == 202
    assert (
        json_post.json() == form_answer.json() == {"country": "GB", "idempotency_key": KEY, "client_ip": "203.0.113.7"}
    )
    assert calls[0][0] == calls[1][0]  # the same form, whichever way it came
    assert [type(form) for form, _ in calls] == [ApplicationForm, ApplicationForm]  # not for the invalid or trapped
    assert invalid.status_code == 422
    assert invalid.json()["errors"][0]["field"] == "company.country"
    assert trapped.status_code == 202
    assert trapped.json()["country"] == ""  # the decoy answered


async def test_the_guard_refuses_before_the_body_is_parsed() -> None:
    calls: list[tuple[ApplicationForm, RequestContext]] = []
    app = echo_app(calls, rate="1/minute")
    async with client(app) as http:
        foreign = await http.post(
            "/echo", content=b"{not json", headers={"Content-Type": JSON, "Origin": "https://evil.example"}
        )
        first = await http.post("/echo", content=b"{not json", headers={"Content-Type": JSON})
        limited = await http.post("/echo", content=b"{not json", headers={"Content-Type": JSON})
    assert (foreign.status_code, first.status_code, limited.status_code) == (403, 422, 429)
    assert limited.headers["Retry-After"]
    assert not calls


def test_an_endpoint_must_take_the_form_model_first() -> None:
    async def untyped(application: dict[str, object], context: Context) -> Echo:
        raise AssertionError("never called")

    with pytest.raises(TypeError, match="must take the form model first"):
        # mypy refuses it too (the endpoint's form must be a BaseModel); this is the check at run time.
        SubmissionRoute(  # type: ignore[type-var]
            "/x", untyped, kind="application", decoy=lambda _: Echo(country="", idempotency_key=None, client_ip=""),
            intake=Intake(AgreementCatalog.bundled(), DiscardingSink(), FakeIdempotencyKeys(), CaptchaOff()),
            guard=SubmissionGuard("1/minute", 1024, [], []), settings=IntakeSettings(environment="test"),
        )  # fmt: skip


async def test_the_benchmark_ceiling_takes_every_submission_without_the_broker(
    intake_settings: IntakeSettings,
) -> None:
    # No lifespan: the broker publisher never connects, so a submission it took would get 503.
    sink = DiscardingSink()
    async with client(create_app(intake_settings, sink=sink)) as http:
        accepted = await http.post("/v1/applications", json=application())
    assert accepted.status_code == 202, accepted.text
    assert uuid.UUID(accepted.json()["application_id"])
    assert sink.discarded == 1


async def test_what_start_up_made_is_kept_from_the_collector_while_intake_serves(
    intake_settings: IntakeSettings,
) -> None:
    app = create_app(intake_settings)
    async with serving(app):
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0


async def test_other_media_types_are_refused_on_the_submission_route(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        before = parse((await http.get("/metrics")).text)
        unsupported = await http.post("/v1/applications", content=b"<xml/>", headers={"Content-Type": "text/xml"})
        after = parse((await http.get("/metrics")).text)
    assert unsupported.status_code == 415
    assert unsupported.headers["content-type"] == "application/problem+json"
    assert unsupported.json()["type"] == "/problems/unsupported-media-type"
    labels = {"service": "intake", "route": "/v1/applications", "method": "POST", "status": "415"}
    assert (
        value(after, "wechat_http_requests_total", **labels) - value(before, "wechat_http_requests_total", **labels)
        == 1
    )
