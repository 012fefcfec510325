"""Intake's HTTP contract against the real RabbitMQ."""

import json
import time
from urllib.parse import urlsplit

import pytest
from pydantic import AmqpDsn

from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED
from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import CURRENT, application
from tests.support.servers import FreezableRelay, set_queue_policy


async def test_accepted_application_is_a_persistent_confirmed_event_in_every_consumer_queue(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.post("/v1/applications", json=application(), headers={"X-Correlation-ID": "corr-42"})

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status_url"].endswith(f"/v1/applications/{body['application_id']}/status")
    for queue in (AGREEMENTS_APPLICATION_SUBMITTED.name,):  # its one consumer queue (topology.EDGE_EVENTS)
        [message] = await broker.take(amqp_url, queue)
        event = json.loads(message.body)
        assert message.delivery_mode == 2  # persistent
        assert message.content_type == "application/json"
        assert message.message_id == event["event_id"]
        assert message.correlation_id == event["correlation_id"] == "corr-42"
        assert event["event_type"] == "application.submitted"
        assert event["data"]["application_id"] == body["application_id"]
        acceptance = event["data"]["acceptance"]
        assert acceptance["client_ip"] == "203.0.113.7"
        assert acceptance["user_agent"] == "pytest-browser/1.0"
        assert acceptance["agreement_sha256"] == CURRENT.sha256
        assert event["data"]["application"]["company"]["legal_name"] == "Maple Tea Trading Ltd. 枫叶茶贸易有限公司"


async def test_current_agreement_is_served_with_its_hash(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.get("/v1/agreements/current")
    assert response.status_code == 200
    assert response.json() == {
        "id": CURRENT.id,
        "version": CURRENT.version,
        "title": CURRENT.title,
        "effective_date": CURRENT.effective_date.isoformat(),
        "text": CURRENT.text,
        "sha256": CURRENT.sha256,
    }


async def test_invalid_fields_answer_422_problem_with_every_field_and_publish_nothing(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    bad = application({"company.country": "XX", "operator.name": "Li\r\nBcc: x@y.z", "agreement.accepted": False})
    async with serving(app), client(app) as http:
        response = await http.post("/v1/applications", json=bad)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "/problems/invalid-submission"
    assert {e["field"] for e in problem["errors"]} == {"company.country", "operator.name", "agreement.accepted"}
    assert await broker.depth(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name) == 0


async def test_malformed_json_is_a_422_not_a_crash(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.post(
            "/v1/applications", content=b'{"account": ', headers={"Content-Type": "application/json"}
        )
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/malformed-body"
    assert response.json()["errors"][0]["field"] == "body"


async def test_stale_agreement_answers_409_with_the_current_version(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        response = await http.post("/v1/applications", json=application({"agreement.sha256": "a" * 64}))
    assert response.status_code == 409
    assert response.json()["current_agreement"] == {
        "id": CURRENT.id,
        "version": CURRENT.version,
        "sha256": CURRENT.sha256,
    }
    assert await broker.depth(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name) == 0


@pytest.mark.parametrize("failure", ["queue-full", "unroutable"])
async def test_503_with_retry_after_when_the_broker_does_not_take_the_event(
    intake_settings: IntakeSettings, amqp_url: str, failure: str
) -> None:
    vhost = amqp_url.rsplit("/", 1)[1]
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        if failure == "queue-full":
            # The broker nacks the publish: the agreements queue takes no more messages.
            # A quorum queue starts rejecting once it is over its limit, so one
            # message goes in first to put it there.
            policy = json.dumps({"max-length": 0, "overflow": "reject-publish"})
            set_queue_policy(vhost, "full", r"^agreements\.", policy, priority=100)  # above the services' own
            await broker.publish_raw(amqp_url, b"{}", "application.submitted", message_id="filler")
        else:
            # The broker returns the mandatory publish: no queue is bound for it.
            async with broker.channel(amqp_url) as ch:
                for queue in (AGREEMENTS_APPLICATION_SUBMITTED,):
                    declared = await ch.get_queue(queue.name)
                    await declared.unbind("wechat_agency.events", routing_key="application.submitted")
        response = await http.post("/v1/applications", json=application())
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(intake_settings.retry_after_seconds)
    assert response.json()["type"] == "/problems/temporarily-unavailable"


async def test_503_within_the_publish_timeout_when_the_broker_never_confirms(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    # Intake reaches RabbitMQ through a relay; frozen, the broker's confirms stop arriving.
    url = urlsplit(amqp_url)
    relay = FreezableRelay(url.hostname or "localhost", url.port or 5672)
    async with relay.serving() as port:
        relayed = url._replace(netloc=f"{url.username}:{url.password}@127.0.0.1:{port}").geturl()
        app = create_app(intake_settings.model_copy(update={"amqp_url": AmqpDsn(relayed)}))
        async with serving(app), client(app) as http:
            assert (await http.post("/v1/applications", json=application())).status_code == 202
            relay.freeze()
            started = time.monotonic()
            response = await http.post("/v1/applications", json=application())
            waited = time.monotonic() - started
            relay.thaw()
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(intake_settings.retry_after_seconds)
    assert response.json()["type"] == "/problems/temporarily-unavailable"
    assert intake_settings.publish_timeout_seconds <= waited < intake_settings.publish_timeout_seconds + 1


async def test_health_and_readiness(intake_settings: IntakeSettings) -> None:
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"broker": True, "publisher": True, "database": True}
