"""The notifications service against the real RabbitMQ, SecantusDB and an aiosmtpd server."""

import asyncio
import uuid
from typing import Any

from prometheus_client import REGISTRY
from pymongo import AsyncMongoClient

from agency_shared.events import (
    AgreementRecorded,
    ApplicantErased,
    ApplicantErasedData,
    EnquiryReleased,
    Event,
    derived_id,
    utc_now,
)
from agency_shared.topology import (
    CASEWORK_ENQUIRY_RELEASED,
    CONSUMER_QUEUES,
    NOTIFICATIONS_AGREEMENT_RECORDED,
    NOTIFICATIONS_ENQUIRY_RECEIVED,
)
from notifications.main import create_app
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.data import STAFF
from tests.support.events import (
    ENQUIRY,
    acceptance_confirmed_event,
    application_submitted,
    enquiry_confirmed_event,
    enquiry_received,
)
from tests.support.events import agreement_recorded_event as recorded
from tests.support.servers import Inbox, free_port, smtp_server
from tests.support.verification import link_in

Mongo = AsyncMongoClient[dict[str, Any]]
CLIENT = "li.wei@mapletea.example"


async def publish(amqp_url: str, event: Event) -> None:
    await broker.publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))


async def ledger_entries(mongo: Mongo, db: str, event: Event) -> list[dict[str, Any]]:
    return await mongo[db]["notifications"].find({"event_id": str(event.event_id)}).to_list()


def applicant_only(locale: str = "en") -> AgreementRecorded:
    """agreement.recorded of an application that passed no human check: its staff emails are held until the
    address is verified, so the applicant's verification link is the one email it causes."""
    return recorded(locale, submitted=application_submitted(locale, human_check="none"))


async def test_staff_are_emailed_about_a_submitted_application(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    # agreement.recorded carries the application: the staff hear of it once it is recorded.
    event = recorded()
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF) + 1)
    assert sorted(str(m["To"]) for m in inbox.messages if str(m["To"]) in STAFF) == sorted(STAFF)
    for staff in STAFF:
        [email] = inbox.to(staff)
        assert event.data.application is not None
        assert event.data.application.account.name in email["Subject"]
        assert str(event.data.application_id) in email.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    entries = await ledger_entries(mongo, notifications_settings.mongodb_db, event)
    assert sorted(e["recipient"] for e in entries if e["template"] == "staff_new_application") == sorted(STAFF)
    assert all(e["state"] == "sent" and e["attempts"] == 1 and e["smtp_reply"] for e in entries)


async def test_the_applicant_gets_only_the_verification_link_when_the_agreement_is_recorded(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    event = recorded("zh-CN")
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF) + 1)
    [message] = inbox.to(CLIENT)
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("", CLIENT)
    assert message["Subject"] == "请确认您的邮箱地址"
    assert not [part for part in message.walk() if part.get_filename()]  # no receipt yet
    link = link_in(message)
    assert link.startswith("http://localhost:8000/verify/")
    for typed in (event.data.applicant_name, event.data.account_name, event.data.company_name):
        assert typed not in message.as_string()
    # "If anything above is wrong, reply to this email": the reply reaches the staff, not no-reply.
    assert sorted(a.addr_spec for a in message["Reply-To"].addresses) == sorted(STAFF)
    assert message["X-Correlation-ID"] == event.correlation_id


async def test_the_client_gets_the_receipt_once_the_acceptance_is_confirmed(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    event = acceptance_confirmed_event("zh-CN")
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        [message] = await inbox.wait_for(lambda messages: len(messages) == 1)
    assert message["To"].addresses[0].addr_spec == CLIENT
    assert message["Subject"].startswith("感谢您")
    assert sorted(a.addr_spec for a in message["Reply-To"].addresses) == sorted(STAFF)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert event.data.verified_at.strftime("%Y-%m-%d %H:%M:%S") in text
    [receipt] = [part for part in message.walk() if part.get_filename()]
    assert receipt.get_filename() == f"receipt-{event.data.application_id}.json"


async def test_a_redelivered_event_sends_nothing_twice_even_to_concurrent_replicas(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    event = recorded()
    replicas = [create_app(notifications_settings) for _ in range(2)]
    async with serving(*replicas):
        await asyncio.gather(*(publish(amqp_url, event) for _ in range(4)))
        await inbox.wait_for(lambda messages: len(messages) >= len(STAFF) + 1)
        await broker.wait_settled(amqp_url, "notifications.")  # every copy acked before we count
    assert sorted(str(m["To"]) for m in inbox.messages) == sorted([*STAFF, CLIENT])
    entries = await ledger_entries(mongo, notifications_settings.mongodb_db, event)
    assert [e["state"] for e in entries] == ["sent"] * (len(STAFF) + 1)


async def test_temporary_smtp_refusals_are_retried_later_and_the_email_arrives_once(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    inbox.refuse(2, "451 4.3.0 Mailbox temporarily unavailable")
    event = applicant_only()
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        [message] = await inbox.wait_for(lambda messages: len(messages) == 1)
        await broker.wait_settled(amqp_url, "notifications.")  # nothing left that could send it again
    assert len(inbox.messages) == 1
    assert len(inbox.refusals) == 2
    assert message["To"].addresses[0].addr_spec == CLIENT
    [entry] = await ledger_entries(mongo, notifications_settings.mongodb_db, event)
    assert (entry["state"], entry["attempts"]) == ("sent", 3)
    assert "451" in entry["last_error"]


async def test_an_unreachable_smtp_server_is_retried_until_it_is_back(
    notifications_settings: NotificationsSettings, amqp_url: str, mongo: Mongo
) -> None:
    port = free_port()
    later = Inbox()
    event = applicant_only()
    async with serving(create_app(notifications_settings.model_copy(update={"smtp_port": port}))):
        await publish(amqp_url, event)
        async with asyncio.timeout(15):  # the first attempt has failed and is recorded as pending a retry
            while not any(  # noqa: ASYNC110
                entry["state"] == "pending" and entry.get("last_error")
                for entry in await ledger_entries(mongo, notifications_settings.mongodb_db, event)
            ):
                await asyncio.sleep(0.05)
        async with smtp_server(later, port=port):
            await later.wait_for(lambda messages: len(messages) == 1)
    [entry] = await ledger_entries(mongo, notifications_settings.mongodb_db, event)
    assert entry["state"] == "sent"
    assert entry["attempts"] >= 2


async def test_retries_end_in_the_dead_letter_queue_with_the_ledger_saying_failed(
    notifications_settings: NotificationsSettings, amqp_url: str, mongo: Mongo
) -> None:
    unreachable = notifications_settings.model_copy(update={"smtp_port": free_port()})
    event = applicant_only()
    async with serving(create_app(unreachable)):
        await publish(amqp_url, event)
        [dead] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.dead_letter_queue.name)
    assert dead.message_id == str(event.event_id)
    assert broker.death_cause(dead) == "gave-up"  # the emails failed for good on the last attempt
    assert dead.headers["x-attempt"] == notifications_settings.max_attempts
    entries = {e["template"]: e for e in await ledger_entries(mongo, notifications_settings.mongodb_db, event)}
    entry = entries["email_verification"]
    assert entry["state"] == "failed"
    assert entry["attempts"] == notifications_settings.max_attempts
    assert entry["last_error"].startswith("retries exhausted")
    # The staff alert could not go out either (the same server is down): it failed too, and says so.
    assert entries["staff_client_unreachable"]["state"] == "failed"


async def test_a_permanent_smtp_rejection_is_not_retried_and_the_staff_are_alerted(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    inbox.reject_mailbox(CLIENT, "550 5.1.1 <li.wei@mapletea.example>: no such user")
    event = applicant_only()
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        [dead] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.dead_letter_queue.name)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF))
    assert dead.message_id == str(event.event_id)
    assert len(inbox.refusals) == 1  # no retry
    entries = {e["template"]: e for e in await ledger_entries(mongo, notifications_settings.mongodb_db, event)}
    client_entry = entries["email_verification"]
    assert (client_entry["state"], client_entry["attempts"]) == ("failed", 1)
    assert "550" in client_entry["last_error"]
    for staff in STAFF:
        [alert] = inbox.to(staff)
        assert (
            # The verification email was addressed to the bare address: the alert names the client by it.
            alert["Subject"] == f"Client not reachable: {CLIENT} (Application {str(event.data.application_id)[:8]})"
        )
        text = alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert str(event.data.application_id) in text
        assert "no such user" in text
        assert CLIENT in text


async def test_a_permanent_rejection_still_dead_letters_when_the_staff_alert_needed_a_retry(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    # The client's mailbox refuses for good; the staff alerts meet "try later" once. The retry
    # that sends the alerts must not ack the event: its client email failed, so it goes to the DLQ.
    inbox.reject_mailbox(CLIENT, "550 5.1.1 <li.wei@mapletea.example>: no such user")
    inbox.refuse(len(STAFF), "451 4.3.0 Try again later")
    event = applicant_only()
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        [dead] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.dead_letter_queue.name, timeout=30)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF))
    assert dead.message_id == str(event.event_id)
    assert dead.headers["x-attempt"] == 2  # the first delivery parked a retry for the alerts
    assert len(inbox.refusals) == 1 + len(STAFF)  # the client's address was tried once, not again
    entries = {
        (e["template"], e["recipient"]): e
        for e in await ledger_entries(mongo, notifications_settings.mongodb_db, event)
    }
    assert entries["email_verification", CLIENT]["state"] == "failed"
    assert all(entries["staff_client_unreachable", staff]["state"] == "sent" for staff in STAFF)


def erased(event: AgreementRecorded) -> ApplicantErased:
    return ApplicantErased(
        event_id=uuid.uuid4(),
        correlation_id=event.correlation_id,
        data=ApplicantErasedData(
            application_id=event.data.application_id, event_ids=(event.event_id,), erased_at=utc_now()
        ),
    )


def handled(event_type: str) -> float:
    """Deliveries of ``event_type`` notifications finished handling, whatever the outcome (FastStream metric).

    A copy back from a delay queue comes through the default exchange, and is labelled by its queue.
    """
    queue = {q.event.routing_key: q.name for q in CONSUMER_QUEUES if q.name.startswith("notifications.")}[event_type]
    handlers = {f"wechat_agency.events.{event_type}", f"default.{queue}"}
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "faststream_received_processed_messages"
        for sample in metric.samples
        if sample.name.endswith("_total")
        and sample.labels.get("app_name") == "notifications"
        and sample.labels.get("handler") in handlers
    )


async def until_handled(event_type: str, count: float, timeout: float = 20) -> None:
    async with asyncio.timeout(timeout):
        while handled(event_type) < count:  # noqa: ASYNC110 - the metric has no waiter to await
            await asyncio.sleep(0.05)


async def test_nothing_goes_out_about_an_erased_applicant_even_when_the_confirmation_comes_later(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    # notifications was behind: the erasure reaches it before the confirmation it was about to send.
    event = applicant_only()
    erasures, confirmations = handled("applicant.erased"), handled("agreement.recorded")
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, erased(event))
        await until_handled("applicant.erased", erasures + 1)
        await publish(amqp_url, event)
        await until_handled("agreement.recorded", confirmations + 1)
        dlq = await broker.depth(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.dead_letter_queue.name)
    assert inbox.messages == []
    assert dlq == 0  # settled (acked), not failed
    assert await ledger_entries(mongo, notifications_settings.mongodb_db, event) == []


async def test_an_erasure_stops_a_parked_retry_without_alerting_the_staff(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    # The confirmation met "try later" and waits in a delay queue when the applicant is erased.
    inbox.refuse(1, "451 4.3.0 Mailbox temporarily unavailable")
    event = applicant_only()
    erasures, confirmations = handled("applicant.erased"), handled("agreement.recorded")
    slow = notifications_settings.model_copy(update={"retry_base_seconds": 2.0, "retry_max_seconds": 2.0})
    async with serving(create_app(slow)):
        await publish(amqp_url, event)
        await until_handled("agreement.recorded", confirmations + 1)  # parked for about 2 s
        await publish(amqp_url, erased(event))
        await until_handled("applicant.erased", erasures + 1)
        await until_handled("agreement.recorded", confirmations + 2)  # the parked copy came back and was handled
        dlq = await broker.depth(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.dead_letter_queue.name)
    assert len(inbox.refusals) == 1
    assert inbox.messages == []  # neither the confirmation nor a staff alert naming the applicant
    assert dlq == 0
    [entry] = await ledger_entries(mongo, notifications_settings.mongodb_db, event)
    assert entry["recipient"] == "[erased]"


async def test_after_exhausted_retries_the_staff_hear_about_an_enquirer_they_cannot_reach(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    # The enquirer's mailbox keeps answering "try later" until the attempts run out.
    inbox.reject_mailbox("wang.fang@example.cn", "450 4.2.1 Mailbox busy, try later")
    settings = notifications_settings.model_copy(
        update={"staff_emails": ["ops@agency.example"], "staff_language": "zh-CN"}
    )
    event = enquiry_received(locale="zh-CN")
    async with serving(create_app(settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda _: any("无法联系客户" in m["Subject"] for m in inbox.messages), timeout=30)
    [alert] = [m for m in inbox.messages if "无法联系客户" in m["Subject"]]
    assert str(event.data.enquiry_id) in alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "retries exhausted" in alert.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_an_enquiry_reaches_staff_and_the_enquirer_gets_an_autoresponse_in_their_language(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    event = enquiry_received(locale="zh-CN")
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF) + 1)
        # It reached the staff: announced as enquiry.released, on casework's queue, as casework reads it.
        [message] = await broker.take(amqp_url, CASEWORK_ENQUIRY_RELEASED.name)
    released = EnquiryReleased.model_validate_json(message.body)
    assert message.message_id == str(released.event_id)
    assert released.event_id == derived_id("enquiry.released", str(event.data.enquiry_id))
    assert released.correlation_id == event.correlation_id
    assert (released.data.enquiry, released.data.locale) == (event.data.enquiry, "zh-CN")
    assert released.data.verified_at is None
    [reply] = inbox.to("wang.fang@example.cn")
    assert reply["Subject"] == "感谢您！我们已收到您的咨询"
    assert sorted(a.addr_spec for a in reply["Reply-To"].addresses) == sorted(STAFF)
    text = reply.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "感谢您联系" in text
    assert str(event.data.enquiry_id) in text
    # Nobody verified the address: nothing the enquirer typed goes back to it, not even their name.
    assert reply["To"].addresses[0].display_name == ""
    for typed in (ENQUIRY["name"], ENQUIRY["company"], *str(ENQUIRY["message"]).splitlines(), "微信支付与电商"):
        assert str(typed) not in inbox.raw[inbox.messages.index(reply)].decode()
        assert str(typed) not in reply.as_string()
    for staff in STAFF:
        [email] = inbox.to(staff)
        assert email["Reply-To"].addresses[0].addr_spec == "wang.fang@example.cn"
        assert "我们想在微信上开店" in email.get_body(("plain",)).get_content()  # type: ignore[union-attr]


async def test_a_held_enquiry_is_released_to_casework_only_once_its_address_is_verified(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    event = enquiry_received(human_check="none")
    # Whole milliseconds: the held document keeps the time as MongoDB does.
    confirmed = enquiry_confirmed_event(event.data.enquiry_id, verified_at=utc_now().replace(microsecond=0))
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == 1)  # the enquirer's verification link
        await broker.wait_settled(amqp_url, "notifications.")
        assert await broker.depth(amqp_url, CASEWORK_ENQUIRY_RELEASED.name) == 0  # held: not the staff's yet
        await publish(amqp_url, confirmed)
        [message] = await broker.take(amqp_url, CASEWORK_ENQUIRY_RELEASED.name)
        await inbox.wait_for(lambda messages: len(messages) == 1 + len(STAFF))
    released = EnquiryReleased.model_validate_json(message.body)
    assert released.event_id == derived_id("enquiry.released", str(event.data.enquiry_id))
    assert released.correlation_id == confirmed.correlation_id
    assert released.data.verified_at == confirmed.data.verified_at
    assert released.data.enquiry == event.data.enquiry


async def test_unreadable_message_is_dead_lettered(
    notifications_settings: NotificationsSettings, amqp_url: str
) -> None:
    async with serving(create_app(notifications_settings)):
        await broker.publish_raw(
            amqp_url, b'{"event_type": "agreement.recorded", "data": {}}', "agreement.recorded", "bad-1"
        )
        await broker.publish_raw(amqp_url, b"\xff\xfe", "enquiry.received", "bad-2")
        [dead] = await broker.take(amqp_url, NOTIFICATIONS_AGREEMENT_RECORDED.dead_letter_queue.name)
        [dead_enquiry] = await broker.take(amqp_url, NOTIFICATIONS_ENQUIRY_RECEIVED.dead_letter_queue.name)
    assert (dead.message_id, dead_enquiry.message_id) == ("bad-1", "bad-2")


async def test_one_smtp_connection_carries_many_messages_and_a_dropped_one_is_replaced(
    notifications_settings: NotificationsSettings, amqp_url: str
) -> None:
    port = free_port()
    first, second = Inbox(), Inbox()
    events = [recorded() for _ in range(4)]
    settings = notifications_settings.model_copy(update={"smtp_port": port, "smtp_pool_size": 2})
    async with serving(create_app(settings)):
        async with smtp_server(first, port=port):
            await broker.publish_events(amqp_url, events)
            await first.wait_for(lambda messages: len(messages) == (len(STAFF) + 1) * len(events))
        # The server went away with our idle connection; the next message opens a new one.
        async with smtp_server(second, port=port):
            await publish(amqp_url, applicant_only())
            await second.wait_for(lambda messages: len(messages) == 1)
    assert first.connections <= 2  # twelve messages, not twelve connections
    assert second.connections == 1


async def test_sending_respects_smtp_max_per_second(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    settings = notifications_settings.model_copy(update={"smtp_max_per_second": 4.0})
    events = [recorded() for _ in range(4)]  # twelve emails: two staff addresses and the applicant each
    async with serving(create_app(settings)):
        await broker.publish_events(amqp_url, events)
        await inbox.wait_for(lambda messages: len(messages) == 12)
    # A bucket of 4 lets the first four through at once, then four a second: the other
    # eight need 2 s (less the first connection's set-up, which delays the first arrival).
    assert inbox.arrivals[-1] - inbox.arrivals[0] >= 1.7
