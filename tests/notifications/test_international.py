"""Hostile names and international addresses through the real service, read back from the bytes aiosmtpd received."""

from email import message_from_string, policy
from email.message import EmailMessage

from agency_shared.events import Event
from notifications.main import create_app
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.data import STAFF
from tests.support.events import application_submitted, enquiry_received
from tests.support.servers import Inbox

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
    event = application_submitted()
    form = event.data.application
    operator = form.operator.model_copy(update={"name": ATTACKER})
    event = event.model_copy(
        update={"data": event.data.model_copy(update={"application": form.model_copy(update={"operator": operator})})}
    )
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == len(STAFF))
    for raw in inbox.raw:
        message = received(raw)
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
