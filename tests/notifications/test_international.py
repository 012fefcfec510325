"""Hostile names and international addresses through the real service, read back from the bytes aiosmtpd received."""

from email import message_from_bytes, message_from_string, policy
from email.message import EmailMessage

from agency_shared.events import Event
from notifications.main import create_app
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.data import STAFF
from tests.support.events import agreement_recorded_event, application_submitted, enquiry_received
from tests.support.servers import Inbox, smtp_server
from tests.support.settings import settings_with

ATTACKER = "<attacker@evil.example> \\ please reply here about the Official Account application"


async def publish(amqp_url: str, event: Event) -> None:
    await broker.publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))


def received(raw: bytes) -> EmailMessage:
    # RFC 6532: headers may be UTF-8 (SMTPUTF8); for ASCII ones this is message_from_bytes.
    message = message_from_string(raw.decode(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


async def test_a_hostile_operator_name_cannot_take_the_staff_reply_to(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    submitted = application_submitted()
    form = submitted.data.application
    operator = form.operator.model_copy(update={"name": ATTACKER})
    submitted = submitted.model_copy(
        update={
            "data": submitted.data.model_copy(update={"application": form.model_copy(update={"operator": operator})})
        }
    )
    event = agreement_recorded_event(submitted=submitted)  # the staff's email follows agreement.recorded
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF) + 1)
    for raw in inbox.raw:
        message = received(raw)
        if message["To"].addresses[0].addr_spec not in STAFF:
            continue  # the applicant's verification email: its Reply-To is the staff's
        [reply_to] = message["Reply-To"].addresses
        assert (reply_to.display_name, reply_to.addr_spec) == (ATTACKER, str(form.operator.email))
        [to] = message["To"].addresses
        assert to.addr_spec in STAFF


async def test_an_enquirer_with_a_non_ascii_local_part_gets_the_autoresponse_over_smtputf8(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    event = enquiry_received()
    enquiry = event.data.enquiry.model_copy(update={"email": "用户@example.com"})
    event = event.model_copy(update={"data": event.data.model_copy(update={"enquiry": enquiry})})
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF) + 1)
    messages = [received(raw) for raw in inbox.raw]
    [autoresponse] = [m for m in messages if m["To"].addresses[0].addr_spec == "用户@example.com"]
    assert autoresponse["Subject"]
    staff = [m for m in messages if m is not autoresponse]
    assert all(m["Reply-To"].addresses[0].addr_spec == "用户@example.com" for m in staff)


async def test_without_smtputf8_the_enquirer_is_unreachable_and_staff_still_hear_of_the_enquiry(
    notifications_settings: NotificationsSettings, amqp_url: str
) -> None:
    inbox = Inbox()
    event = enquiry_received()
    enquiry = event.data.enquiry.model_copy(update={"email": "用户@example.com"})
    event = event.model_copy(update={"data": event.data.model_copy(update={"enquiry": enquiry})})
    async with smtp_server(inbox, smtputf8=False) as port:
        app = create_app(settings_with(notifications_settings, smtp_port=port))
        async with serving(app):
            await publish(amqp_url, event)
            # Each staff address: the enquiry, then the alert that the enquirer cannot be reached.
            await inbox.wait_for(lambda messages: len(messages) == 2 * len(STAFF))
            await broker.wait_settled(amqp_url, prefix="notifications.")
            entries = await app.state.adapters.ledger.entries(str(event.event_id))
    # No SMTPUTF8: ASCII headers, 8-bit UTF-8 bodies, read as a mail client reads bytes.
    messages = [message_from_bytes(raw, policy=policy.default) for raw in inbox.raw]
    assert sorted(m["To"].addresses[0].addr_spec for m in messages) == sorted(STAFF * 2)
    assert all(m["Reply-To"] is None for m in messages)  # nowhere to reply without SMTPUTF8
    for message in messages:
        text = message.get_body(("plain",))
        assert text is not None
        assert "用户@example.com" in text.get_content()
    [autoresponse] = [entry for entry in entries if entry["template"] == "enquiry_autoresponse"]
    assert autoresponse["state"] == "failed"
    assert "SMTPUTF8" in autoresponse["last_error"]
