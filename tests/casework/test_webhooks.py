"""Signed outbound webhooks to the CRM: endpoints configured by admins in the console, each delivery signed per
Standard Webhooks and checked by a real receiver (``standardwebhooks.Webhook.verify``), retried, logged, replayed,
its secret rotated; deliveries recorded once per event and endpoint and sent once, however many loops run."""

import asyncio
import re
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpcore
import httpx
import pytest
from pymongo import AsyncMongoClient

from agency_shared.events import CaseClient, CaseStatusChanged, CaseStatusChangedData, utc_now
from casework.access import Role, StaffAccess
from casework.audit import AuditQuery
from casework.settings import CaseworkSettings
from casework.webhooks.delivery import RETRY_SCHEDULE, WebhookSender
from casework.webhooks.endpoints import new_endpoint, rotated
from casework.webhooks.guard import PublicOnlyBackend
from casework.webhooks.sources import announce_status_change
from casework.webhooks.store import DELIVERIES, ENDPOINTS, Delivery, MongoWebhooks
from casework.webhooks.wiring import OutboundWebhooks
from tests.support.broker import publish_events
from tests.support.casework import Casework, SignedIn, eventually, running_casework
from tests.support.events import agreement_recorded_event
from tests.support.webhooks import Receiver, receiving

Mongo = AsyncMongoClient[dict[str, Any]]
SECRET_ON_PAGE = re.compile(r"<code class=\"secret\" data-secret>(whsec_[A-Za-z0-9+/=]+)</code>")
ENDPOINT_LINK = re.compile(r'href="/console/webhooks/([0-9a-f-]{36})"')
SIGNATURE = re.compile(r"^v1,[A-Za-z0-9+/]+=*$")


@pytest.fixture
def settings(casework_settings: CaseworkSettings) -> CaseworkSettings:
    # Retries after milliseconds, not minutes; the loop looks for due deliveries every 50 ms.
    return casework_settings.model_copy(update={"webhook_poll_seconds": 0.05, "webhook_retry_scale": 0.0001})


def outbound_of(casework: Casework) -> OutboundWebhooks:
    outbound: OutboundWebhooks = casework.app.state.adapters.outbound
    return outbound


def store_of(casework: Casework) -> MongoWebhooks:
    return outbound_of(casework).store


async def add_endpoint(admin: SignedIn, url: str, *events: str) -> tuple[str, str]:
    """(endpoint id, secret) of an endpoint an admin added in the console."""
    answer = await admin.post("/console/webhooks", {"url": url, "event_type": list(events)})
    assert answer.status_code == 201, answer.text
    assert answer.headers["cache-control"] == "no-store"
    link = ENDPOINT_LINK.search(answer.text)
    assert link
    return link.group(1), secret_on(answer.text)


@asynccontextmanager
async def crm_endpoint(
    settings: CaseworkSettings, receiver: Receiver, *events: str
) -> AsyncIterator[tuple[Casework, SignedIn, str]]:
    """A running casework, an admin signed in, and the id of the endpoint that admin added for ``events`` (both
    kinds unless named) at ``receiver``, served meanwhile and holding the endpoint's secret."""
    async with (
        receiving(receiver) as url,
        running_casework(settings) as casework,
        casework.signed_in(Role.ADMIN) as admin,
    ):
        endpoint_id, secret = await add_endpoint(admin, url, *(events or ("case.status_changed", "case.opened")))
        receiver.secrets = [secret]
        yield casework, admin, endpoint_id


def secret_on(page: str) -> str:
    """The secret a page shows once (after adding an endpoint or rotating its secret)."""
    found = SECRET_ON_PAGE.search(page)
    assert found, "no secret on the page"
    return found.group(1)


def status_changed(reason: str = "营业执照不清晰\r\n请重新上传") -> CaseStatusChanged:
    """case.status-changed as casework publishes it, with a client and a staff note the CRM must never get."""
    return CaseStatusChanged(
        event_id=uuid.uuid4(),
        correlation_id="webhook-test",
        data=CaseStatusChangedData(
            case_id=uuid.uuid4(),
            application_id=uuid.uuid4(),
            previous="triage",
            current="awaiting_documents",
            action="request_documents",
            reason=reason,
            staff_member="operator@agency.example",
            changed_at=utc_now(),
            locale="zh-CN",
            client=CaseClient(name="王小明", email="wang@example.cn"),
            consultant="李顾问",
        ),
    )


async def announce(casework: Casework, event: CaseStatusChanged) -> None:
    """What the casework.case-status-changed consumer does with ``event`` (then the loop looks at once)."""
    await announce_status_change(event, store_of(casework))
    outbound_of(casework).loop.wake()


async def delivery_in(casework: Casework, endpoint_id: str, state: str) -> Delivery | None:
    for delivery in await store_of(casework).deliveries_of(endpoint_id):
        if delivery.state == state:
            return delivery
    return None


def test_the_retry_schedule_lasts_about_three_days() -> None:
    total = sum(RETRY_SCHEDULE, timedelta())
    assert timedelta(days=2, hours=20) <= total <= timedelta(days=3, hours=4), total
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE)  # never sooner than the wait before
    assert RETRY_SCHEDULE[0] == timedelta(seconds=5)


async def test_a_status_change_in_the_console_reaches_the_endpoint_signed_without_personal_data(
    settings: CaseworkSettings, amqp_url: str
) -> None:
    receiver = Receiver()
    async with crm_endpoint(settings, receiver, "case.status_changed") as (casework, admin, endpoint_id):
        (secret,) = receiver.secrets
        case = await casework.open_application()
        form = {"action": "request_documents", "reason": "公章不清晰 <script>alert(1)</script>"}
        assert (await admin.post(f"/console/cases/{case.id}/status", form)).status_code == 303
        (request,) = await receiver.wait_for(1)
        delivered = await eventually(lambda: delivery_in(casework, endpoint_id, "delivered"))
        page = (await admin.http.get(f"/console/webhooks/{endpoint_id}")).text

    assert request.path == "/crm/hooks"
    assert request.verified_by == {secret}
    assert request.webhook_id.startswith("msg_")
    assert SIGNATURE.match(request.headers["webhook-signature"])
    assert abs(int(request.headers["webhook-timestamp"]) - utc_now().timestamp()) < 60
    payload = request.payload
    assert payload["type"] == "case.status_changed"
    assert payload["data"]["case_id"] == str(case.id)
    assert payload["data"]["reference"] == case.reference
    assert (payload["data"]["previous_status"], payload["data"]["status"]) == ("triage", "awaiting_documents")
    text = request.body.decode()
    for personal in (case.client_email, case.client_name, case.company, "公章不清晰", "admin@agency.example"):
        assert personal
        assert personal not in text
    assert delivered.attempts[-1].status_code == 200
    assert "delivered" in page
    assert "<td>200</td>" in page


async def test_a_case_opened_by_the_consumer_is_announced_once_however_often_the_event_comes(
    settings: CaseworkSettings, amqp_url: str
) -> None:
    receiver = Receiver()
    async with crm_endpoint(settings, receiver, "case.opened") as (casework, _admin, endpoint_id):
        (secret,) = receiver.secrets
        event = agreement_recorded_event(locale="zh-CN")
        assert event.data.human_check != "none"
        await publish_events(amqp_url, [event, event])  # a redelivery, as a crash before the ack would make
        (request,) = await receiver.wait_for(1)
        await eventually(lambda: delivery_in(casework, endpoint_id, "delivered"))
        # Both copies consumed (the queue empty), still one delivery and one request.
        await eventually(lambda: _queue_empty(amqp_url, "casework.agreement-recorded"))
        assert await outbound_of(casework).delivery_loop().run_once() == 0
        deliveries = await store_of(casework).deliveries_of(endpoint_id)

    assert len(deliveries) == 1
    assert len(receiver.received) == 1
    assert request.verified_by == {secret}
    assert request.payload["type"] == "case.opened"
    assert request.payload["data"]["application_id"] == str(event.data.application_id)
    assert event.data.applicant_email not in request.body.decode()


async def _queue_empty(amqp_url: str, queue: str) -> bool:
    from tests.support.broker import depth

    return await depth(amqp_url, queue) == 0


async def test_a_redelivered_status_change_through_the_broker_makes_no_second_delivery(
    settings: CaseworkSettings, amqp_url: str
) -> None:
    receiver = Receiver()
    async with crm_endpoint(settings, receiver, "case.status_changed") as (casework, _admin, endpoint_id):
        receiver.secrets = []  # unverified: the CRM answers 401 and the delivery is retried, still one message
        event = status_changed()
        await publish_events(amqp_url, [event])
        await receiver.wait_for(1)
        await publish_events(amqp_url, [event, event])
        await eventually(lambda: _queue_empty(amqp_url, "casework.case-status-changed"))
        await outbound_of(casework).delivery_loop().run_once()
        deliveries = await store_of(casework).deliveries_of(endpoint_id)
    assert len(deliveries) == 1
    assert len({request.webhook_id for request in receiver.received}) == 1


async def test_a_500_is_retried_on_the_schedule_and_the_event_delivered_once(settings: CaseworkSettings) -> None:
    receiver = Receiver(answers=[500, 503])
    async with crm_endpoint(settings, receiver) as (casework, admin, endpoint_id):
        await announce(casework, status_changed())
        await receiver.wait_for(3)
        delivered = await eventually(lambda: delivery_in(casework, endpoint_id, "delivered"))
        assert await outbound_of(casework).delivery_loop().run_once() == 0
        page = (await admin.http.get(f"/console/webhooks/{endpoint_id}")).text
    assert len(receiver.received) == 3
    assert len({request.webhook_id for request in receiver.received}) == 1  # one message, three attempts
    assert all(request.verified_by for request in receiver.received)
    assert [attempt.status_code for attempt in delivered.attempts] == [500, 503, 200]
    assert all(attempt.duration_ms >= 0 for attempt in delivered.attempts)
    # What the endpoint answered is kept, truncated (it said 5,000 characters and more).
    assert all(attempt.response and len(attempt.response) <= 1000 for attempt in delivered.attempts)
    assert "<td>500</td>" in page
    assert "<td>503</td>" in page
    assert "收到" in page


async def test_an_unreachable_endpoint_is_retried_with_the_error_logged(settings: CaseworkSettings) -> None:
    from tests.support.servers import free_port

    async with running_casework(settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        endpoint_id, _ = await add_endpoint(admin, f"http://127.0.0.1:{free_port()}/nobody", "case.status_changed")
        await announce(casework, status_changed())

        async def retried() -> Delivery | None:
            found = await delivery_in(casework, endpoint_id, "pending")
            return found if found and len(found.attempts) >= 2 else None

        delivery = await eventually(retried)
    assert delivery.attempts[0].status_code is None
    assert delivery.attempts[0].error
    assert "ConnectError" in delivery.attempts[0].error


async def test_a_410_disables_the_endpoint(settings: CaseworkSettings) -> None:
    receiver = Receiver(answers=[410])
    async with crm_endpoint(settings, receiver) as (casework, admin, endpoint_id):
        await announce(casework, status_changed())
        failed = await eventually(lambda: delivery_in(casework, endpoint_id, "failed"))
        endpoint = await store_of(casework).endpoint(endpoint_id)
        # Later events find no endpoint to go to.
        await announce(casework, status_changed())
        assert await store_of(casework).deliveries_of(endpoint_id) == [failed]
        audit = await casework.access.audit.find(AuditQuery(action="webhook_endpoint_disabled"))
        page = (await admin.http.get("/console/webhooks")).text
    assert len(receiver.received) == 1
    assert failed.attempts[-1].status_code == 410
    assert endpoint is not None
    assert not endpoint.enabled
    assert endpoint.disabled_reason == "410 Gone"
    assert [entry.subject for entry in audit.entries] == [endpoint_id]
    assert "410 Gone" in page


async def test_a_rotated_secret_signs_with_the_old_one_too_until_the_grace_period_ends(
    settings: CaseworkSettings, mongo: Mongo
) -> None:
    receiver = Receiver()
    async with crm_endpoint(settings, receiver, "case.status_changed") as (casework, admin, endpoint_id):
        (old,) = receiver.secrets
        answer = await admin.post(f"/console/webhooks/{endpoint_id}/rotate")
        assert answer.status_code == 200
        assert answer.headers["cache-control"] == "no-store"
        new = secret_on(answer.text)
        receiver.secrets = [old, new]
        await announce(casework, status_changed())
        during = (await receiver.wait_for(1))[0]
        # The grace period over (24 hours in this test's settings, passed here by moving the old secret's end).
        past = utc_now() - timedelta(seconds=1)
        endpoints = mongo[settings.mongodb_db][ENDPOINTS]
        ended = {"$set": {"secrets.$.expires_at": past}}
        await endpoints.update_one({"_id": endpoint_id, "secrets.secret": old}, ended)
        await announce(casework, status_changed())
        after = (await receiver.wait_for(2))[1]
        page = (await admin.http.get(f"/console/webhooks/{endpoint_id}")).text
        audit = await casework.access.audit.find(AuditQuery(action="webhook_secret_rotated"))
    assert old != new
    assert during.verified_by == {old, new}
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    assert after.verified_by == {new}
    assert len(after.headers["webhook-signature"].split(" ")) == 1
    assert old not in page
    assert new not in page
    assert [entry.subject for entry in audit.entries] == [endpoint_id]


async def test_a_replay_from_the_console_sends_again_with_a_new_attempt_logged(settings: CaseworkSettings) -> None:
    receiver = Receiver()
    async with crm_endpoint(settings, receiver) as (casework, admin, endpoint_id):
        await announce(casework, status_changed())
        delivered = await eventually(lambda: delivery_in(casework, endpoint_id, "delivered"))
        path = f"/console/webhooks/deliveries/{delivered.id}/replay"
        assert path in (await admin.http.get(f"/console/webhooks/{endpoint_id}")).text
        no_csrf = await admin.http.post(path, data={})
        assert no_csrf.status_code == 403
        answer = await admin.post(path)
        assert answer.status_code == 303
        await receiver.wait_for(2)

        async def replayed() -> Delivery | None:
            found = await store_of(casework).delivery(delivered.id)
            return found if found and found.state == "delivered" and len(found.attempts) == 2 else None

        again = await eventually(replayed)
        audit = await casework.access.audit.find(AuditQuery(action="webhook_replayed"))
        unknown = await admin.post("/console/webhooks/deliveries/msg_nothing:nowhere/replay")
    assert [request.webhook_id for request in receiver.received] == [delivered.message_id] * 2
    assert all(request.verified_by for request in receiver.received)
    assert [attempt.replay for attempt in again.attempts] == [False, True]
    assert [entry.subject for entry in audit.entries] == [delivered.id]
    assert unknown.status_code == 404


async def test_two_delivery_loops_at_once_send_each_delivery_once(settings: CaseworkSettings) -> None:
    receiver = Receiver()
    async with crm_endpoint(settings, receiver) as (casework, _admin, endpoint_id):
        # The service's own loop runs too: three loops, as three replicas would.
        loops = [outbound_of(casework).delivery_loop(), outbound_of(casework).delivery_loop()]
        events = [status_changed() for _ in range(40)]
        for event in events:
            await announce_status_change(event, store_of(casework))
        for _ in range(10):
            await asyncio.gather(*(loop.run_once() for loop in loops))

        async def all_delivered() -> bool:
            return all(d.state == "delivered" for d in await store_of(casework).deliveries_of(endpoint_id, 100))

        await eventually(all_delivered)
        deliveries = await store_of(casework).deliveries_of(endpoint_id, 100)
    ids = [request.webhook_id for request in receiver.received]
    assert len(deliveries) == 40
    assert sorted(ids) == sorted(delivery.message_id for delivery in deliveries)  # each once, none twice
    assert all(len(delivery.attempts) == 1 for delivery in deliveries)


async def test_disabled_enabled_changed_and_deleted_endpoints(settings: CaseworkSettings, mongo: Mongo) -> None:
    receiver = Receiver()
    async with crm_endpoint(settings, receiver) as (casework, admin, endpoint_id):
        base = f"/console/webhooks/{endpoint_id}"
        endpoint = await store_of(casework).endpoint(endpoint_id)
        assert endpoint
        assert (await admin.post(f"{base}/enabled", {"enabled": "false"})).status_code == 303
        await announce(casework, status_changed())
        assert await store_of(casework).deliveries_of(endpoint_id) == []  # a disabled endpoint takes nothing
        assert (await admin.post(f"{base}/enabled", {"enabled": "true"})).status_code == 303
        assert (await admin.post(f"{base}/events", {"event_type": ["case.opened"]})).status_code == 303
        await announce(casework, status_changed())
        assert await store_of(casework).deliveries_of(endpoint_id) == []  # no longer subscribed
        assert (await admin.post(f"{base}/events", {"event_type": ["case.status_changed"]})).status_code == 303
        await announce(casework, status_changed())
        await receiver.wait_for(1)
        assert (await admin.post(f"{base}/delete")).status_code == 303
        gone = await admin.http.get(base)
        listing = (await admin.http.get("/console/webhooks")).text
        entries = (await casework.access.audit.find(AuditQuery())).entries
        actions = [entry.action for entry in entries]
    assert gone.status_code == 404
    # The audit log, kept for years, keeps the CRM's origin, never the hook's path (often a token) or query.
    origin = endpoint.url.removesuffix("/crm/hooks")
    recorded = [entry.detail["url"] for entry in entries if "url" in entry.detail]
    assert recorded == [f"{origin}/…", f"{origin}/…"]
    assert not any("crm/hooks" in value for entry in entries for value in entry.detail.values())
    assert endpoint.url not in listing
    assert await mongo[settings.mongodb_db][ENDPOINTS].count_documents({}) == 0
    assert await mongo[settings.mongodb_db][DELIVERIES].count_documents({"endpoint_id": endpoint_id}) == 1
    for action in ("webhook_endpoint_added", "webhook_endpoint_changed", "webhook_endpoint_deleted"):
        assert action in actions


WEBHOOK_ROUTES = [
    ("GET", "/console/webhooks", {}),
    ("POST", "/console/webhooks", {"url": "https://crm.example/hooks", "event_type": "case.opened"}),
    ("GET", "/console/webhooks/{endpoint}", {}),
    ("POST", "/console/webhooks/{endpoint}/events", {"event_type": "case.opened"}),
    ("POST", "/console/webhooks/{endpoint}/enabled", {"enabled": "false"}),
    ("POST", "/console/webhooks/{endpoint}/rotate", {}),
    ("POST", "/console/webhooks/deliveries/{delivery}/replay", {}),
    ("POST", "/console/webhooks/{endpoint}/delete", {}),
]


async def webhook_route_answers(who: SignedIn, endpoint_id: str, delivery_id: str) -> dict[tuple[str, str], int]:
    """The status each of ``WEBHOOK_ROUTES`` answers ``who``, in order (the POSTs change what the later ones see)."""
    answers = {}
    for method, path, form in WEBHOOK_ROUTES:
        path = path.format(endpoint=endpoint_id, delivery=delivery_id)
        answer = await (who.http.get(path) if method == "GET" else who.post(path, form))
        answers[(method, path)] = answer.status_code
    return answers


@pytest.mark.parametrize("role", [Role.VIEWER, Role.OPERATOR])
async def test_only_admins_reach_the_webhook_pages(settings: CaseworkSettings, role: Role) -> None:
    async with (
        running_casework(settings) as casework,
        casework.signed_in(Role.ADMIN) as admin,
        casework.signed_in(role) as staff,
    ):
        endpoint_id, _ = await add_endpoint(admin, "https://crm.example/hooks", "case.status_changed")
        await announce_status_change(status_changed(), store_of(casework))
        (delivery,) = await store_of(casework).deliveries_of(endpoint_id)
        answers = await webhook_route_answers(staff, endpoint_id, delivery.id)
        home = (await staff.http.get("/console/cases")).text
        admin_answers = await webhook_route_answers(admin, endpoint_id, delivery.id)
    assert set(answers.values()) == {403}, answers
    assert "/console/webhooks" not in home
    assert not {403, 500} & set(admin_answers.values()), admin_answers


BAD_URLS = [
    ("", "url_missing"),
    ("   ", "url_missing"),
    ("crm.example/hooks", "url_not_https"),
    ("ftp://crm.example/hooks", "url_not_https"),
    ("javascript:alert(1)", "url_not_https"),
    ("https://", "url_invalid"),
    ("https://crm.example/a b", "url_invalid"),
    ("https://crm.example/\r\nX-Injected: 1", "url_invalid"),
    ("https://crm.example/\u0000", "url_invalid"),
    ("https://user:pass@crm.example/hooks", "url_credentials"),
    ("https://crm.example/hooks#frag", "url_invalid"),
    ("https://crm.example/" + "钩" * 3000, "url_too_long"),
]


@pytest.mark.parametrize(("url", "reason"), BAD_URLS)
async def test_a_bad_endpoint_url_is_refused_with_its_field_and_reason(
    settings: CaseworkSettings, mongo: Mongo, url: str, reason: str
) -> None:
    async with running_casework(settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        form = {"url": url, "event_type": "case.opened"}
        as_json = await admin.post("/console/webhooks", form, headers={"Accept": "application/json"})
        page = await admin.post("/console/webhooks", form)
    assert as_json.status_code == 422, as_json.text
    assert as_json.json()["field"] == "url"
    assert page.status_code == 422
    assert 'class="field">url<' in page.text
    assert await mongo[settings.mongodb_db][ENDPOINTS].count_documents({}) == 0


@pytest.mark.parametrize(
    "events", [[], [""], ["case.deleted"], ["case.opened", "case.opened\r\nX: 1"], ["案件.已开立"], ["x"] * 21]
)
async def test_bad_event_types_are_refused(settings: CaseworkSettings, mongo: Mongo, events: list[str]) -> None:
    async with running_casework(settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        form: dict[str, Any] = {"url": "https://crm.example/hooks", "event_type": events}
        answer = await admin.post("/console/webhooks", form, headers={"Accept": "application/json"})
    assert answer.status_code == 422, answer.text
    assert answer.json()["field"] == "event_type"
    assert await mongo[settings.mongodb_db][ENDPOINTS].count_documents({}) == 0


async def test_an_unicode_host_is_an_endpoint_and_the_page_is_in_chinese(settings: CaseworkSettings) -> None:
    async with running_casework(settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        admin.http.headers["Accept-Language"] = "zh-CN"
        form = {"url": "https://客户.example/钩子", "event_type": "case.opened"}
        answer = await admin.post("/console/webhooks", form)
        listing = (await admin.http.get("/console/webhooks")).text
    assert answer.status_code == 201
    assert "请立即将此密钥复制到 CRM" in answer.text
    assert "xn--" in listing  # stored as the IDNA name httpx sends to
    assert "发往 CRM 的 Webhook" in listing


# The send-time guard against server-side request forgery (outside local and test runs).

# Names and numbers the system resolver turns into 127.0.0.1, where the receiver listens.
LOOPBACK_SPELLINGS = ["127.0.0.1", "127.1", "2130706433", "0x7f000001", "localhost"]


async def test_outside_test_runs_a_delivery_to_an_internal_address_is_refused_logged_and_retried(
    casework_settings: CaseworkSettings, mongo: Mongo
) -> None:
    production = casework_settings.model_copy(update={"environment": "production", "webhook_retry_scale": 0.0001})
    outbound = OutboundWebhooks(production, StaffAccess(production))  # as the service wires it in production
    store = MongoWebhooks(mongo, production.mongodb_db)
    receiver = Receiver()
    async with receiving(receiver) as url:
        port = httpx.URL(url).port
        # As stored before the URL was checked, or a public-looking name that resolves to an internal address.
        endpoints = [new_endpoint(f"http://{host}:{port}/crm/hooks", ["case.opened"], utc_now())
                     for host in LOOPBACK_SPELLINGS]  # fmt: skip
        for endpoint in endpoints:
            await store.insert_endpoint(endpoint)
        assert await store.record("msg_ssrf", "case.opened", "{}", None, utc_now()) == len(LOOPBACK_SPELLINGS)
        await outbound.sender.open()
        try:
            outbound.store = store
            assert await outbound.delivery_loop().run_once() == len(LOOPBACK_SPELLINGS)
        finally:
            await outbound.sender.close()
        # The same URLs do reach the receiver from a test run's sender: only the guard stops them.
        plain = WebhookSender(5)
        await plain.open()
        try:
            reached = await plain.send(f"http://2130706433:{port}/crm/hooks", {}, "{}")
        finally:
            await plain.close()
        deliveries = [(await store.deliveries_of(endpoint.id))[0] for endpoint in endpoints]
    assert reached.status_code == 401  # it got there (unsigned, so the receiver refuses it)
    assert len(receiver.received) == 1  # the plain sender's, none of the guarded ones
    for delivery in deliveries:
        assert delivery.state == "pending"  # retried like any other error
        (attempt,) = delivery.attempts
        assert attempt.status_code is None
        assert attempt.error
        assert "resolves to 127.0.0.1, not a public address" in attempt.error, attempt.error


async def test_the_guard_connects_to_the_address_it_checked_and_refuses_any_internal_one() -> None:
    connected: list[tuple[str, int]] = []

    class Recording(httpcore.AsyncNetworkBackend):
        async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> httpcore.AsyncNetworkStream:
            connected.append((host, port))
            raise httpcore.ConnectError("recorded")

    answers = {"crm.example": ["8.8.8.8"], "mixed.example": ["8.8.8.8", "10.0.0.7"],
               "metadata.example": ["169.254.169.254"], "svc.example": ["fd00::1"], "none.example": []}  # fmt: skip

    async def resolver(host: str, port: int) -> list[str]:
        return answers[host]

    backend = PublicOnlyBackend(resolver, inner=Recording())
    with pytest.raises(httpcore.ConnectError, match="recorded"):
        await backend.connect_tcp("crm.example", 443)
    refused = {}
    for host in ("mixed.example", "metadata.example", "svc.example", "none.example"):
        with pytest.raises(httpcore.ConnectError) as error:
            await backend.connect_tcp(host, 443)
        refused[host] = str(error.value)
    # The connection goes to the address that was checked, never to the name (which may resolve anew).
    assert connected == [("8.8.8.8", 443)]
    assert "10.0.0.7, not a public address" in refused["mixed.example"]
    assert "169.254.169.254, not a public address" in refused["metadata.example"]
    assert "fd00::1, not a public address" in refused["svc.example"]
    assert "no address" in refused["none.example"]


# Concurrent changes to an endpoint: each change is made to the version it was read at, never an upsert.

VERSION_ON_PAGE = re.compile(r'name="version" value="(\d+)"')


async def version_on_page(admin: SignedIn, endpoint_id: str) -> str:
    found = VERSION_ON_PAGE.search((await admin.http.get(f"/console/webhooks/{endpoint_id}")).text)
    assert found
    return found.group(1)


async def test_a_410_is_not_undone_by_an_admin_edit_from_an_older_page(settings: CaseworkSettings) -> None:
    receiver = Receiver(answers=[410])
    async with crm_endpoint(settings, receiver) as (casework, admin, endpoint_id):
        version = await version_on_page(admin, endpoint_id)  # the admin opens the page...
        await announce(casework, status_changed())  # ...and the CRM answers 410 meanwhile
        await eventually(lambda: delivery_in(casework, endpoint_id, "failed"))
        form = {"event_type": ["case.opened"], "version": version}
        stale = await admin.post(
            f"/console/webhooks/{endpoint_id}/events", form, headers={"Accept": "application/json"}
        )
        stale_page = await admin.post(f"/console/webhooks/{endpoint_id}/events", form)
        endpoint = await store_of(casework).endpoint(endpoint_id)
    assert stale.status_code == 409, stale.text
    assert stale_page.status_code == 409
    assert "reload" in stale_page.text.lower()
    assert endpoint is not None
    assert (endpoint.enabled, endpoint.disabled_reason) == (False, "410 Gone")
    assert list(endpoint.event_types) == ["case.opened", "case.status_changed"]


async def test_a_rotation_from_an_older_page_does_not_overwrite_the_secret_rotated_meanwhile(
    settings: CaseworkSettings,
) -> None:
    async with (
        running_casework(settings) as casework,
        casework.signed_in(Role.ADMIN) as first,
        casework.signed_in(Role.ADMIN, "second-admin@agency.example") as second,
    ):
        endpoint_id, _ = await add_endpoint(first, "https://crm.example/hooks", "case.opened")
        version = await version_on_page(first, endpoint_id)
        assert await version_on_page(second, endpoint_id) == version
        rotation = await second.post(f"/console/webhooks/{endpoint_id}/rotate", {"version": version})
        assert rotation.status_code == 200
        shown = secret_on(rotation.text)
        stale = await first.post(f"/console/webhooks/{endpoint_id}/rotate", {"version": version})
        stale_toggle = await first.post(f"/console/webhooks/{endpoint_id}/enabled",
                                        {"enabled": "false", "version": version})  # fmt: skip
        endpoint = await store_of(casework).endpoint(endpoint_id)
        audit = await casework.access.audit.find(AuditQuery(action="webhook_secret_rotated"))
    assert stale.status_code == 409
    assert SECRET_ON_PAGE.search(stale.text) is None  # no secret shown that is not stored
    assert stale_toggle.status_code == 409
    assert endpoint is not None
    assert endpoint.enabled
    assert endpoint.secrets[0].secret == shown
    assert len(endpoint.secrets) == 2
    assert len(audit.entries) == 1


async def test_changes_read_before_a_410_or_a_delete_neither_re_enable_nor_recreate(
    casework_settings: CaseworkSettings, mongo: Mongo
) -> None:
    store = MongoWebhooks(mongo, casework_settings.mongodb_db)
    endpoint = new_endpoint("https://crm.example/hooks", ["case.opened"], utc_now())
    await store.insert_endpoint(endpoint)
    read = await store.endpoint(endpoint.id)  # what an admin's request read...
    assert read is not None
    assert await store.set_enabled(endpoint.id, False, "410 Gone")  # ...before the delivery loop disabled it
    assert not await store.change_event_types(read, ["case.opened", "case.status_changed"])
    assert not await store.change_secrets(rotated(read, utc_now(), timedelta(hours=1))[0])
    assert not await store.set_enabled(endpoint.id, True, version=read.version)
    after = await store.endpoint(endpoint.id)
    assert after is not None
    assert (after.enabled, after.disabled_reason, list(after.event_types)) == (False, "410 Gone", ["case.opened"])
    assert after.secrets == read.secrets
    assert await store.change_event_types(after, ["case.status_changed"])  # at the version read now, it is made

    current = await store.endpoint(endpoint.id)
    assert current is not None
    assert await store.delete_endpoint(endpoint.id, utc_now())
    assert not await store.change_event_types(current, ["case.opened"])
    assert not await store.change_secrets(rotated(current, utc_now(), timedelta(hours=1))[0])
    assert not await store.set_enabled(endpoint.id, True, version=current.version)
    assert not await store.set_enabled(endpoint.id, False, "410 Gone")
    assert await mongo[casework_settings.mongodb_db][ENDPOINTS].count_documents({}) == 0
