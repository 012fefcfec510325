"""Staff alerts in chat against local servers that speak WeCom's, DingTalk's, Feishu's and Slack's APIs and enforce
their limits: each channel's request shape and signature, a burst from two replicas within WeCom's 20 a minute,
retries after a 500 and after each API's rate-limit answer, giving up, no personal data, and one message per key
however often and wherever it is raised. Every clock runs 20x faster (CHAT_TIME_SCALE, the servers alike)."""

import asyncio
import inspect
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from prometheus_client import REGISTRY
from pydantic import MongoDsn, SecretStr
from pymongo import AsyncMongoClient
from pymongo.errors import OperationFailure

from agency_chassis.logs import configure_logging
from agency_shared.events import NotificationSettled
from casework.cases import case_id_for, reference_of
from casework.chat import Alert, ChatAlerts
from casework.chat.alerts import configured_robots
from casework.chat.store import ALERTS, SENDERS
from casework.handlers import note_email, open_application_case
from casework.settings import DEFAULT_TIME_LIMITS, CaseworkSettings
from casework.storage import MongoCases
from casework.workflow import CaseKind
from tests.support.apps import http_server
from tests.support.broker import publish_events
from tests.support.casework import running_casework
from tests.support.chat_servers import ChatServers, Received
from tests.support.events import agreement_recorded_event, notification_settled

SCALE = 0.05  # a minute lasts 3 s
CONSOLE = "https://console.agency.example"
DINGTALK_SECRET = "SEC0123456789abcdef-dingtalk-test-secret"
FEISHU_SECRET = "feishu-test-secret-0123456789"


@asynccontextmanager
async def chat_apis(
    scale: float = SCALE, dingtalk_secret: str | None = None, feishu_secret: str | None = None
) -> AsyncIterator[ChatServers]:
    servers = ChatServers(scale=scale, dingtalk_secret=dingtalk_secret, feishu_secret=feishu_secret)
    async with http_server(servers.app()) as url:
        servers.url = url
        yield servers


@pytest.fixture
async def apis() -> AsyncIterator[ChatServers]:
    async with chat_apis(dingtalk_secret=DINGTALK_SECRET, feishu_secret=FEISHU_SECRET) as servers:
        yield servers


def chat_settings(mongo_url: str, mongo_db: str, scale: float = SCALE, **chat: Any) -> CaseworkSettings:
    return CaseworkSettings(
        environment="test",
        mongodb_url=MongoDsn(mongo_url),
        mongodb_db=mongo_db,
        console_url=CONSOLE,
        chat_time_scale=scale,
        chat_retry_base_seconds=1.0,
        **chat,
    )


@asynccontextmanager
async def replica(settings: CaseworkSettings) -> AsyncIterator[ChatAlerts]:
    """One casework replica's chat alerts and senders, with its own connection to the database."""
    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(str(settings.mongodb_url), tz_aware=True)
    alerts = ChatAlerts(settings)
    await alerts.open(client, settings.mongodb_db)
    try:
        yield alerts
    finally:
        await alerts.close()
        await client.close()


def an_alert(kind: str = "new_application", key: str | None = None, owner: str | None = "Anna 陈安娜") -> Alert:
    case_id = uuid.uuid4()
    return Alert.model_validate({
        "kind": kind,
        "key": key or f"test:{case_id}",
        "case_id": case_id,
        "reference": reference_of(case_id, CaseKind.APPLICATION),
        "status": "triage",
        "owner": owner,
    })  # fmt: skip


async def until(check: Callable[[], Any], timeout: float = 30) -> Any:
    """The first truthy result of ``check`` (awaited if it is a coroutine), polled until ``timeout``."""
    async with asyncio.timeout(timeout):
        while True:
            result = check()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return result
            await asyncio.sleep(0.02)


def about(servers: ChatServers, alert: Alert) -> list[Received]:
    return [r for r in servers.delivered() if alert.reference in r.text]


async def test_each_channel_receives_the_alert_in_its_api_s_shape_signed_where_the_robot_signs(
    apis: ChatServers,
    mongo: AsyncMongoClient[dict[str, Any]],
    mongo_url: str,
    mongo_db: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    configure_logging("casework", "DEBUG", "text")  # as casework's create_app does
    caplog.set_level(logging.DEBUG)
    settings = chat_settings(
        mongo_url,
        mongo_db,
        chat_wecom_urls=[apis.wecom_url("wecom-key-7f3a")],
        chat_dingtalk_urls=[apis.dingtalk_url("dingtalk-token-91b2")],
        chat_dingtalk_secret=DINGTALK_SECRET,
        chat_feishu_urls=[apis.feishu_url("feishu-hook-c4d5")],
        chat_feishu_secret=FEISHU_SECRET,
        chat_slack_urls=[apis.slack_url("T0001/B0002/slackSecret03")],
    )
    alert = an_alert()
    async with replica(settings) as chat:
        await chat.raise_alert(alert)
        await until(lambda: len(apis.delivered()) == 4, timeout=30)

    by_channel = {r.channel: r for r in apis.delivered()}
    link = f"{CONSOLE}/console/cases/{alert.case_id}"
    expected = f"New application {alert.reference}\nStatus: Triage\nOwner: Anna 陈安娜\n{link}"
    assert {channel: r.text for channel, r in by_channel.items()} == dict.fromkeys(by_channel, expected)
    assert set(by_channel) == {"wecom", "dingtalk", "feishu", "slack"}
    wecom, dingtalk, feishu, slack = (by_channel[c].body for c in ("wecom", "dingtalk", "feishu", "slack"))
    assert json.loads(wecom) == {"msgtype": "text", "text": {"content": expected}}
    assert by_channel["dingtalk"].query.keys() == {"access_token", "timestamp", "sign"}  # the server checked the sign
    assert set(json.loads(feishu)) == {"timestamp", "sign", "msg_type", "content"}
    assert json.loads(dingtalk) == {"msgtype": "text", "text": {"content": expected}}
    assert json.loads(slack) == {"text": expected}
    assert [r.answer for r in apis.received] == ["ok"] * 4
    # The URLs are credentials: in no log line (httpx's request lines keep the origin) and nowhere in the database.
    secrets = ("wecom-key-7f3a", "dingtalk-token-91b2", "feishu-hook-c4d5", "slackSecret03")
    ours = [record for record in caplog.records if record.name != "uvicorn.access"]  # not the fake robots' own log
    assert not [record.getMessage() for record in ours if any(s in record.getMessage() for s in secrets)]
    requests = [record.getMessage() for record in caplog.records if record.name == "httpx"]
    assert len(requests) == 4
    assert all(f"POST {apis.url}/… " in line for line in requests), requests
    stored = [doc async for doc in mongo[mongo_db][ALERTS].find()]
    stored += [doc async for doc in mongo[mongo_db][SENDERS].find()]
    assert len(stored) == 8
    assert not [doc for doc in stored if any(s in repr(doc) for s in secrets)]
    assert {doc["state"] for doc in stored if "state" in doc} == {"sent"}


async def test_a_robot_that_refuses_the_signature_is_given_up_at_once_not_retried(
    apis: ChatServers, mongo_url: str, mongo_db: str
) -> None:
    settings = chat_settings(
        mongo_url, mongo_db, chat_dingtalk_urls=[apis.dingtalk_url("t-1")], chat_dingtalk_secret="SECnot-the-robot-s"
    )
    async with replica(settings) as chat:
        await chat.raise_alert(alert := an_alert())
        await until(lambda: any(r.answer == "bad_signature" for r in apis.received))
        store = chat._store
        assert store is not None
        state = await until(lambda: _settled(store.state_of(chat.robots[0].id, alert.key)))
    assert (state["state"], state["attempts"], state["detail"]) == ("failed", 1, "HTTP 200, errcode 310000")
    assert [r.answer for r in apis.received] == ["bad_signature"]


async def _settled(reading: Any) -> dict[str, Any] | None:
    state: dict[str, Any] | None = await reading
    return state if state and state["state"] != "pending" else None


async def test_the_wecom_stand_in_refuses_the_21st_message_of_a_minute(apis: ChatServers) -> None:
    """The limit the next test keeps to is really enforced here: a burst straight at the server is refused."""
    async with httpx.AsyncClient() as http:
        answers = [
            (await http.post(apis.wecom_url("raw"), json={"msgtype": "text", "text": {"content": f"n{n}"}})).json()
            for n in range(21)
        ]
    assert answers[:20] == [{"errcode": 0, "errmsg": "ok"}] * 20
    assert answers[20] == {"errcode": 45009, "errmsg": "api freq out of limit"}


async def test_a_burst_of_30_from_two_replicas_reaches_wecom_whole_never_above_20_a_minute(
    apis: ChatServers, mongo_url: str, mongo_db: str
) -> None:
    settings = chat_settings(mongo_url, mongo_db, chat_wecom_urls=[apis.wecom_url("burst")])
    alerts = [an_alert() for _ in range(30)]
    async with replica(settings) as first, replica(settings) as second:
        # Each alert raised on both replicas, all at once: stored once each, sent by whichever holds the robot.
        await asyncio.gather(*(chat.raise_alert(alert) for alert in alerts for chat in (first, second)))
        await until(lambda: len(apis.delivered()) >= 30, timeout=60)
    delivered = apis.delivered()
    assert sorted(r.text.split("\n")[0] for r in delivered) == sorted(f"New application {a.reference}" for a in alerts)
    assert apis.over_limit() == []  # never refused for going too fast
    assert [r.answer for r in apis.received] == ["ok"] * 30
    assert apis.most_in_any_window("wecom:burst", 20, 60) == 20  # the window was used, never exceeded
    arrivals = sorted(r.at for r in delivered)
    assert arrivals[20] - arrivals[0] >= 60 * SCALE


@pytest.mark.parametrize(
    ("channel", "rate_limit_answer"),
    [("wecom", b'"errcode":45009'), ("dingtalk", b'"errcode":130101'), ("feishu", b'"code":11232'), ("slack", b"")],
)
async def test_a_message_is_retried_after_a_500_and_after_the_api_s_rate_limit_answer(
    mongo_url: str, mongo_db: str, channel: str, rate_limit_answer: bytes
) -> None:
    scale = 0.005  # DingTalk holds a robot back 10 minutes: 3 s here
    async with chat_apis(scale) as apis:
        url = {
            "wecom": apis.wecom_url("k"),
            "dingtalk": apis.dingtalk_url("k"),
            "feishu": apis.feishu_url("k"),
            "slack": apis.slack_url("T/B/k"),
        }[channel]
        robot = f"{channel}:{'T/B/k' if channel == 'slack' else 'k'}"
        apis.fail_next(robot, "500", "rate_limit")
        settings = chat_settings(mongo_url, mongo_db, scale, **{f"chat_{channel}_urls": [url]})
        async with replica(settings) as chat:
            await chat.raise_alert(alert := an_alert())
            await until(lambda: about(apis, alert), timeout=30)
            store = chat._store
            assert store is not None
            state = await until(lambda: _settled(store.state_of(chat.robots[0].id, alert.key)))
    assert [r.answer for r in apis.received] == ["injected_500", "injected_rate_limit", "ok"]
    assert (state["state"], state["attempts"]) == ("sent", 3)
    limited, delivered = apis.received[1].at, apis.received[2].at
    throttle = {"wecom": 60 * scale, "dingtalk": 600 * scale, "feishu": 60 * scale, "slack": 1.0}[channel]
    assert delivered - limited >= throttle * 0.95  # the robot was left alone as long as the API asks


async def test_a_message_is_given_up_after_the_last_attempt_logged_and_counted(
    apis: ChatServers, mongo_url: str, mongo_db: str, caplog: pytest.LogCaptureFixture
) -> None:
    failed_before = REGISTRY.get_sample_value("wechat_chat_messages_total", {"channel": "wecom", "outcome": "failed"})
    settings = chat_settings(mongo_url, mongo_db, chat_wecom_urls=[apis.wecom_url("down")], chat_max_attempts=3)
    apis.fail_next("wecom:down", "500", "500", "500", "500")
    async with replica(settings) as chat:
        await chat.raise_alert(doomed := an_alert())
        store = chat._store
        assert store is not None
        state = await until(lambda: _settled(store.state_of(chat.robots[0].id, doomed.key)), timeout=30)
        await chat.raise_alert(after := an_alert())  # the robot is fine again (one 500 left, then ok)
        await until(lambda: about(apis, after), timeout=30)
    assert (state["state"], state["attempts"], state["detail"]) == ("failed", 3, "HTTP 500")
    assert sum(doomed.reference in r.body.decode() for r in apis.received) == 3
    failed = REGISTRY.get_sample_value("wechat_chat_messages_total", {"channel": "wecom", "outcome": "failed"})
    assert (failed or 0) - (failed_before or 0) == 1
    assert any(f"about {doomed.reference}" in r.getMessage() and "given up" in r.getMessage() for r in caplog.records)


async def test_an_alert_raised_twice_or_again_after_a_restart_is_sent_once(
    apis: ChatServers, mongo_url: str, mongo_db: str
) -> None:
    settings = chat_settings(mongo_url, mongo_db, chat_wecom_urls=[apis.wecom_url("once")])
    alert = an_alert(key="overdue:case-1:triage")
    async with replica(settings) as chat:
        await chat.raise_alert(alert)
        await chat.raise_alert(alert)
        await until(lambda: about(apis, alert))
    # A restarted replica (another holder of the robot), the same key, even with another status.
    async with replica(settings) as restarted:
        await restarted.raise_alert(alert)
        await restarted.raise_alert(alert.model_copy(update={"status": "on_hold"}))
        await restarted.raise_alert(later := an_alert())
        await until(lambda: about(apis, later))
    assert len(about(apis, alert)) == 1
    assert len(apis.received) == 2


async def test_no_personal_data_reaches_any_channel_from_a_new_application_or_a_failed_email(
    apis: ChatServers, mongo: AsyncMongoClient[dict[str, Any]], mongo_url: str, mongo_db: str
) -> None:
    settings = chat_settings(
        mongo_url,
        mongo_db,
        chat_wecom_urls=[apis.wecom_url("pd")],
        chat_dingtalk_urls=[apis.dingtalk_url("pd")],
        chat_dingtalk_secret=DINGTALK_SECRET,
        chat_feishu_urls=[apis.feishu_url("pd")],
        chat_feishu_secret=FEISHU_SECRET,
        chat_slack_urls=[apis.slack_url("T/B/pd")],
        chat_locale="zh-CN",
    )
    cases = MongoCases(mongo, mongo_db)
    await cases.ensure_indexes()
    event = agreement_recorded_event(locale="zh-CN")
    settled = notification_settled(event.data.application_id)
    failed = NotificationSettled.model_validate(
        settled.model_dump() | {"data": settled.data.model_dump() | {"state": "failed", "detail": "550 no such user"}}
    )
    async with replica(settings) as chat:
        await open_application_case(event, cases, DEFAULT_TIME_LIMITS, alerts=chat)
        await note_email(failed, cases, chat)
        await note_email(failed, cases, chat)  # redelivered: one alert
        await until(lambda: len(apis.delivered()) == 8, timeout=30)
    case = await cases.get(case_id_for(event.data.application_id))
    assert case is not None
    assert case.client_email  # the case holds the personal data; the chat must not
    personal = [
        event.data.applicant_name, event.data.applicant_email, event.data.company_name, event.data.account_name,
        event.data.applicant_email.split("@")[0], "198.51.100.20", "550 no such user", str(event.data.application_id),
    ]  # fmt: skip
    bodies = [r.body.decode() + r.text for r in apis.received]
    assert [p for p in personal if p and any(p.casefold() in body.casefold() for body in bodies)] == []
    headlines = sorted({r.text.split("\n")[0] for r in apis.delivered()})
    assert headlines == sorted([f"新申请 {case.reference}", f"案件 {case.reference} 的客户邮件发送失败"])
    assert all(f"/console/cases/{case.id}" in r.text for r in apis.delivered())


async def test_casework_alerts_the_chat_when_an_application_case_opens_from_the_broker(
    apis: ChatServers, casework_settings: CaseworkSettings, amqp_url: str
) -> None:
    settings = casework_settings.model_copy(
        update={"chat_wecom_urls": [SecretStr(apis.wecom_url("live"))], "chat_time_scale": SCALE}
    )
    event = agreement_recorded_event()
    reference = reference_of(case_id_for(event.data.application_id), CaseKind.APPLICATION)
    async with running_casework(settings) as casework:
        assert casework.app.state.adapters.chat.enabled
        await publish_events(amqp_url, [event])
        delivered = await until(lambda: apis.delivered("wecom"), timeout=30)
    assert [r.text.split("\n")[0] for r in delivered] == [f"New application {reference}"]
    assert event.data.applicant_email not in delivered[0].body.decode()


async def test_a_replica_taking_a_robot_over_keeps_to_the_window_its_predecessor_used(
    apis: ChatServers, mongo_url: str, mongo_db: str
) -> None:
    settings = chat_settings(mongo_url, mongo_db, chat_wecom_urls=[apis.wecom_url("handover")])
    first_twenty = [an_alert() for _ in range(20)]
    async with replica(settings) as first:
        for alert in first_twenty:
            await first.raise_alert(alert)
        await until(lambda: len(apis.delivered()) == 20)
    async with replica(settings) as second:  # a restart: the robot's minute is not over
        for alert in (more := [an_alert() for _ in range(5)]):
            await second.raise_alert(alert)
        await until(lambda: all(about(apis, alert) for alert in more))
    assert apis.over_limit() == []
    assert apis.most_in_any_window("wecom:handover", 20, 60) == 20
    arrivals = sorted(r.at for r in apis.delivered())
    assert arrivals[20] - arrivals[0] >= 60 * SCALE


async def test_a_message_left_in_flight_by_a_dead_replica_is_counted_once_at_its_deadline_not_forever(
    apis: ChatServers, mongo: AsyncMongoClient[dict[str, Any]], mongo_url: str, mongo_db: str
) -> None:
    settings = chat_settings(
        mongo_url, mongo_db, chat_slack_urls=[apis.slack_url("T/B/orphan")], chat_timeout_seconds=1
    )
    robot = configured_robots(settings)[0].id
    # A replica began a message and died (or was cancelled, or lost its lease) before recording its end.
    started = time.time() - 0.2
    await mongo[mongo_db][SENDERS].insert_one(
        {
            "_id": robot,
            "holder": "dead-replica",
            "expires_at": started,
            "sent": [],
            "in_flight": started,
            "paused_until": 0.0,
        }
    )
    async with replica(settings) as chat:
        await chat.raise_alert(first := an_alert())
        await until(lambda: about(apis, first), timeout=15)
        await chat.raise_alert(second := an_alert())  # and the robot goes on sending, not napping for ever
        await until(lambda: about(apis, second), timeout=15)
        # The orphan moved into the sent ones; the second's end recorded (it may be on its way yet when it arrives).
        lease = await until(lambda: mongo[mongo_db][SENDERS].find_one({"_id": robot, "in_flight": None}))
    assert lease["holder"] == chat.holder
    # The orphan could have reached Slack until its deadline: the next message waited for Slack's second after it.
    assert about(apis, first)[0].at >= started + 1 + 1.0 * SCALE
    assert [r.answer for r in apis.received] == ["ok", "ok"]


async def test_a_sender_whose_record_of_a_message_failed_goes_on_sending(
    apis: ChatServers, mongo_url: str, mongo_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = chat_settings(
        mongo_url, mongo_db, chat_slack_urls=[apis.slack_url("T/B/dbfail")], chat_timeout_seconds=1
    )
    async with replica(settings) as chat:
        store = chat._store
        assert store is not None
        recorded = store.ended
        failures = [OperationFailure("the database went away")]

        async def ended_once_failing(*args: Any) -> None:
            if failures:
                raise failures.pop()
            await recorded(*args)

        monkeypatch.setattr(store, "ended", ended_once_failing)
        await chat.raise_alert(first := an_alert())
        await until(lambda: about(apis, first) and not failures, timeout=15)
        await chat.raise_alert(second := an_alert())
        await until(lambda: about(apis, second), timeout=15)
    assert len(about(apis, second)) == 1


async def test_a_robot_trickling_its_answer_is_cut_off_at_the_deadline_well_within_the_lease(
    mongo_url: str, mongo_db: str
) -> None:
    app = FastAPI()

    @app.post("/slow")
    async def slow() -> StreamingResponse:
        async def trickle() -> AsyncIterator[bytes]:
            for _ in range(30):  # a byte every 0.1 s: no phase of httpx's timeout is ever exceeded
                yield b" "
                await asyncio.sleep(0.1)
            yield b"ok"

        return StreamingResponse(trickle())

    async with http_server(app) as url:
        settings = chat_settings(
            mongo_url, mongo_db, chat_slack_urls=[f"{url}/slow"], chat_timeout_seconds=0.5, chat_max_attempts=1
        )
        async with replica(settings) as chat:
            await chat.raise_alert(alert := an_alert())
            store = chat._store
            assert store is not None
            state = await until(lambda: _settled(store.state_of(chat.robots[0].id, alert.key)), timeout=15)
    assert (state["state"], state["detail"]) == ("failed", "no answer within 0.5 s")
