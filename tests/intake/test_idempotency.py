"""Idempotency-Key against the real RabbitMQ and SecantusDB: what the README promises, request by request."""

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from pymongo import monitoring

from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED
from intake.main import create_app
from intake.settings import IntakeSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import application, flat_form
from tests.support.events import ENQUIRY
from tests.support.servers import rabbitmqctl, set_queue_policy
from tests.support.settings import settings_with

Mongo = Any
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
PAGE = {**FORM, "Accept": "text/html"}
REUSED = "/problems/idempotency-key-reused"


def key() -> str:
    return str(uuid.uuid4())


def form_body(body: dict[str, Any], idempotency_key: str | None = None) -> str:
    pairs = flat_form(body)
    return urlencode(pairs + ([("idempotency_key", idempotency_key)] if idempotency_key else []))


async def test_the_same_key_and_data_as_json_or_form_data_is_one_application_published_again(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app, k = create_app(intake_settings), key()
    reordered = dict(reversed(list(application().items())))
    async with serving(app), client(app) as http:
        first = await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k})
        as_form = await http.post("/v1/applications", content=form_body(application(), k), headers=FORM)
        as_json = await http.post("/v1/applications", json=reordered, headers={"Idempotency-Key": k})
    assert [r.status_code for r in (first, as_form, as_json)] == [202, 202, 202]
    assert first.json()["application_id"] == as_form.json()["application_id"] == as_json.json()["application_id"]
    events = [json.loads(m.body) for m in await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 3)]
    assert len({e["event_id"] for e in events}) == 1  # agreements and notifications drop the repeats


async def test_the_same_key_with_other_data_is_422_and_nothing_is_published(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app, k = create_app(intake_settings), key()
    async with serving(app), client(app) as http:
        first = await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k})
        await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name)
        other = await http.post(
            "/v1/applications", json=application({"notes": "edited"}), headers={"Idempotency-Key": k}
        )
        as_form = await http.post("/v1/applications", content=form_body(application({"notes": "x"}), k), headers=FORM)
        enquiry = await http.post("/v1/enquiries", json=ENQUIRY, headers={"Idempotency-Key": k})  # another form
    assert first.status_code == 202
    for refused in (other, as_form):
        assert refused.status_code == 422
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"] == REUSED
    assert enquiry.status_code == 202
    assert await broker.depth(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name) == 0


async def test_of_concurrent_requests_with_one_key_and_different_data_exactly_one_is_accepted(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app = create_app(settings_with(intake_settings, rate_limit="1000/minute"))
    keys = [key() for _ in range(5)]
    async with serving(app), client(app) as http:
        answers = await asyncio.gather(
            *(
                http.post("/v1/applications", json=application({"notes": f"body {n}"}), headers={"Idempotency-Key": k})
                for k in keys
                for n in range(4)
            )
        )
    statuses = [a.status_code for a in answers]
    for n in range(len(keys)):
        of_key = statuses[4 * n : 4 * n + 4]
        assert sorted(of_key) == [202, 422, 422, 422], of_key
    assert {a.json()["type"] for a in answers if a.status_code == 422} == {REUSED}
    published = await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, len(keys))
    assert len(published) == len(keys)


async def test_concurrent_requests_with_one_key_and_the_same_data_are_all_the_same_application(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    app, k = create_app(settings_with(intake_settings, rate_limit="1000/minute")), key()
    async with serving(app), client(app) as http:
        answers = await asyncio.gather(
            *(http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k}) for _ in range(6))
        )
    assert [a.status_code for a in answers] == [202] * 6
    assert len({a.json()["application_id"] for a in answers}) == 1
    published = await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 6)
    assert len({json.loads(m.body)["event_id"] for m in published}) == 1


async def test_after_a_503_the_retry_with_the_same_key_and_data_is_accepted_and_other_data_is_not(
    intake_settings: IntakeSettings, amqp_url: str
) -> None:
    vhost, k = amqp_url.rsplit("/", 1)[1], key()
    app = create_app(intake_settings)
    async with serving(app), client(app) as http:
        set_queue_policy(
            vhost, "full", r"^agreements\.", json.dumps({"max-length": 0, "overflow": "reject-publish"}), priority=100
        )
        await broker.publish_raw(amqp_url, b"{}", "application.submitted", message_id="filler")
        refused = await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k})
        rabbitmqctl("clear_policy", "-p", vhost, "full")
        await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name)  # the filler
        # RabbitMQ lifts the policy asynchronously: retry as a client told 503 would, with the same key and data.
        for _ in range(40):
            retried = await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k})
            if retried.status_code != 503:
                break
            await asyncio.sleep(0.25)
        other = await http.post("/v1/applications", json=application({"notes": "x"}), headers={"Idempotency-Key": k})
    assert refused.status_code == 503
    assert retried.status_code == 202
    assert other.status_code == 422
    assert other.json()["type"] == REUSED
    [event] = await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name)
    assert json.loads(event.body)["data"]["application_id"] == retried.json()["application_id"]


async def test_keys_are_kept_with_a_ttl_index_of_the_configured_lifetime(
    intake_settings: IntakeSettings, mongo: Mongo
) -> None:
    settings = settings_with(intake_settings, idempotency_key_ttl_seconds=3600)
    k = key()
    app = create_app(settings)
    async with serving(app), client(app) as http:
        await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k})
    collection = mongo[settings.mongodb_db]["idempotency_keys"]
    indexes = {i["name"]: i async for i in await collection.list_indexes()}
    assert indexes["created_at_ttl"]["expireAfterSeconds"] == 3600
    [stored] = await collection.find({}).to_list()
    assert stored["_id"] == f"application:{k}"
    assert re.fullmatch(r"[0-9a-f]{64}", stored["fingerprint"])
    assert stored["created_at"].tzinfo is not None
    # A changed setting replaces the index at the next start.
    async with serving(create_app(settings_with(intake_settings, idempotency_key_ttl_seconds=7200))):
        pass
    indexes = {i["name"]: i async for i in await collection.list_indexes()}
    assert indexes["created_at_ttl"]["expireAfterSeconds"] == 7200


async def test_once_the_key_expired_other_data_with_it_is_a_new_application_and_the_same_data_the_same_one(
    intake_settings: IntakeSettings, amqp_url: str, mongo: Mongo
) -> None:
    """README: after IDEMPOTENCY_KEY_TTL_SECONDS a key "is new again". Other data with it is a new application with
    its own id and event id (not dropped downstream as a repeat); the first data again is the first application."""
    app, k = create_app(intake_settings), key()
    collection = mongo[intake_settings.mongodb_db]["idempotency_keys"]
    async with serving(app), client(app) as http:
        first = await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k})
        await collection.delete_one({"_id": f"application:{k}"})  # what MongoDB's TTL monitor does
        other = await http.post("/v1/applications", json=application({"notes": "new"}), headers={"Idempotency-Key": k})
        await collection.delete_one({"_id": f"application:{k}"})
        again = await http.post("/v1/applications", json=application(), headers={"Idempotency-Key": k})
    assert [r.status_code for r in (first, other, again)] == [202] * 3
    assert other.json()["application_id"] != first.json()["application_id"] == again.json()["application_id"]
    events = [json.loads(m.body) for m in await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, 3)]
    assert events[0]["event_id"] != events[1]["event_id"]  # agreements and notifications record the new one
    assert events[0]["event_id"] == events[2]["event_id"]  # and drop the repeat of the first


class Commands(monitoring.CommandListener):
    """Every command any MongoDB client of this process starts while ``recording``."""

    def __init__(self) -> None:
        self.recording = False
        self.names: list[str] = []

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        if self.recording:
            self.names.append(event.command_name)

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        pass

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        pass


@pytest.fixture(scope="module")
def commands() -> Iterator[Commands]:
    listener = Commands()
    monitoring.register(listener)  # for clients made from now on; there is no unregister: it stops recording
    yield listener
    listener.recording = False


async def test_submissions_without_a_key_never_touch_the_database(
    intake_settings: IntakeSettings, amqp_url: str, commands: Commands
) -> None:
    app = create_app(settings_with(intake_settings, captcha="altcha"))
    async with serving(app), client(app) as http:
        commands.recording = True
        answers = [
            await http.post("/v1/applications", json=application()),
            await http.post("/v1/enquiries", json=ENQUIRY),
            await http.post("/", content=form_body(application()), headers=PAGE),
            await http.post("/contact", content=form_body(ENQUIRY), headers=PAGE),
        ]
        unkeyed, commands.names = commands.names, []
        keyed = await http.post("/v1/enquiries", json=ENQUIRY, headers={"Idempotency-Key": key()})
        commands.recording = False
    assert [a.status_code for a in answers] == [202, 202, 202, 202]
    assert unkeyed == []
    assert keyed.status_code == 202
    assert "insert" in commands.names  # what the listener sees when a request does reach the database


async def test_the_form_page_shows_a_reused_key_as_a_message_with_the_answers_kept_and_a_fresh_key(
    intake_settings: IntakeSettings,
) -> None:
    app, k = create_app(intake_settings), key()
    edited = application({"company.legal_name": "Edited Trading 改过的公司"})
    async with serving(app), client(app) as http:
        first = await http.post("/", content=form_body(application(), k), headers=PAGE)
        english = await http.post("/", content=form_body(edited, k), headers=PAGE)
        chinese = await http.post("/?lang=zh-CN", content=form_body(edited, k), headers=PAGE)
        contact = await http.post("/contact", content=form_body(ENQUIRY, k), headers=PAGE)
        contact_edited = await http.post(
            "/contact", content=form_body({**ENQUIRY, "message": "Other"}, k), headers=PAGE
        )
        fresh = hidden_key(english.text)
        resent = await http.post("/", content=form_body(edited, fresh), headers=PAGE)
    assert first.status_code == 202
    assert contact.status_code == 202
    for page, message in (
        (english, "This form was sent before with different answers"),
        (chinese, "此表单此前已用不同的内容提交过"),
        (contact_edited, "This form was sent before with different answers"),
    ):
        assert page.status_code == 422
        assert page.headers["content-type"].startswith("text/html")
        assert message in page.text
        assert hidden_key(page.text) not in (k, "")
    assert 'value="Edited Trading 改过的公司"' in english.text  # what was typed is kept
    assert 'value="Other"' in contact_edited.text or ">Other</textarea>" in contact_edited.text
    assert resent.status_code == 202  # sent again with the fresh key: a new application


def hidden_key(html: str) -> str:
    found = re.search(r'name="idempotency_key" value="([^"]*)"', html)
    assert found, "no idempotency_key field"
    return found.group(1)
