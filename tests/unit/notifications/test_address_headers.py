"""Address headers as a reader parses them after SMTP serialisation: exactly the addresses we set."""

from email import message_from_bytes, message_from_string, policy
from email.headerregistry import Address
from email.message import EmailMessage

import pytest

from notifications.emails import (
    AddressNeedsSmtpUtf8,
    client_confirmation,
    email_verification,
    enquiry_autoresponse,
    mailbox,
    person,
    staff_new_application,
    staff_new_enquiry,
)
from tests.support.events import (
    acceptance_confirmed_event,
    agreement_recorded_event,
    application_submitted,
    enquiry_received,
)

SENDER = "WeChat Agency <no-reply@agency.example>"
STAFF = ("ops@agency.example", "Sales Team <sales@agency.example>")

# Hostile display names (no package with the Big List of Naughty Strings is installed).
HOSTILE_NAMES = [
    "<attacker@evil.example> \\ please reply here about the Official Account application",
    '"Eve" <eve@evil.example>, victim@example.com',
    'Eve \\" <eve@evil.example>',
    "\\\\\\\\",
    'a"b"c"d',
    "<>",
    "Eve <eve@evil.example>",
    "a, b, c",
    "=?utf-8?q?Admin?= <admin@evil.example>",
    "=?utf-8?b?U3VwcG9ydCBUZWFt?=",
    "Eve (comment) <eve@evil.example>",
    "Eve;Bob:x@y.z;",
    "Dr. No",
    "O'Brien",
    "   spaced    out   ",
    "Eve\r\nBcc: victim@example.com",
    "Eve\u2028Reply-To: thief@evil.example",
    "用" * 100,
    "李伟 " * 33,
    "Li Wei 李伟 <li@evil.example>",
    "\u202eevil.example@attacker",
    "x" * 100,
    "x " * 50,
    "@" * 100,
    "Ω≈ç√∫˜µ≤≥÷ 田中さんにあげて下さい",
    "👾 🙇 💁 🙅 🙆 🙋 🙎 🙍",
]


def wire(message: EmailMessage, utf8: bool = False) -> bytes:
    """The message as aiosmtplib writes it for the SMTP server (``email.policy.SMTP`` or ``SMTPUTF8``)."""
    return message.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)


def read_back(raw: bytes, utf8: bool = False) -> EmailMessage:
    # An SMTPUTF8 message is UTF-8 text (RFC 6532); the bytes parser reads only ASCII headers.
    parsed = (
        message_from_string(raw.decode(), policy=policy.default)
        if utf8
        else message_from_bytes(raw, policy=policy.default)
    )
    assert isinstance(parsed, EmailMessage)
    return parsed


def addresses(message: EmailMessage, header: str) -> tuple[Address, ...]:
    return tuple(message[header].addresses)


def hostile_messages(name: str, email: str = "li.wei@mapletea.example") -> list[EmailMessage]:
    submitted = application_submitted()
    form = submitted.data.application
    operator = form.operator.model_copy(update={"name": name, "email": email})
    submitted = submitted.model_copy(
        update={
            "data": submitted.data.model_copy(update={"application": form.model_copy(update={"operator": operator})})
        }
    )
    recorded = agreement_recorded_event()
    recorded = recorded.model_copy(
        update={"data": recorded.data.model_copy(update={"applicant_name": name, "applicant_email": email})}
    )
    confirmed = acceptance_confirmed_event()
    confirmed = confirmed.model_copy(
        update={"data": confirmed.data.model_copy(update={"applicant_name": name, "applicant_email": email})}
    )
    enquiry = enquiry_received()
    enquiry = enquiry.model_copy(
        update={
            "data": enquiry.data.model_copy(
                update={"enquiry": enquiry.data.enquiry.model_copy(update={"name": name, "email": email})}
            )
        }
    )
    return [
        staff_new_application(submitted, STAFF[0], SENDER, "en"),
        email_verification(recorded, "https://apply.agency.example/verify/t", 7, SENDER, STAFF),
        client_confirmation(confirmed, SENDER, STAFF),
        staff_new_enquiry(enquiry, STAFF[1], SENDER, "zh-CN"),
        enquiry_autoresponse(enquiry, SENDER, STAFF),
    ]


@pytest.mark.parametrize("utf8", [False, True], ids=["SMTP", "SMTPUTF8"])
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_every_address_header_reads_back_as_exactly_the_addresses_set(name: str, utf8: bool) -> None:
    for message in hostile_messages(name):
        raw = wire(message, utf8)
        received = read_back(raw, utf8)
        for header in ("From", "To", "Reply-To"):
            if header in message:
                assert addresses(received, header) == addresses(message, header), raw.decode()
        assert "Bcc" not in received
        assert all(len(line) <= 998 for line in raw.split(b"\r\n"))


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_the_hostile_name_is_the_display_name_and_only_that(name: str) -> None:
    [message, *_] = hostile_messages(name)
    [reply_to] = addresses(read_back(wire(message)), "Reply-To")
    assert reply_to == person(name, "li.wei@mapletea.example")
    assert reply_to.addr_spec == "li.wei@mapletea.example"


def test_the_reported_hijack_replies_to_the_operator() -> None:
    [message, *_] = hostile_messages(HOSTILE_NAMES[0])
    [reply_to] = addresses(read_back(wire(message)), "Reply-To")
    assert reply_to.addr_spec == "li.wei@mapletea.example"
    assert reply_to.display_name == HOSTILE_NAMES[0]


def test_an_idn_domain_goes_out_in_idna_form() -> None:
    client = "li.wei@xn--qpr917bo8t.example"  # "枫叶茶".encode("idna")
    for message in hostile_messages("Li Wei 李伟", "li.wei@枫叶茶.example"):
        raw = wire(message)
        assert raw.split(b"\r\n\r\n", 1)[0].isascii()
        received = read_back(raw)
        client_header = "To" if message["To"].addresses[0].domain != "agency.example" else "Reply-To"
        assert [a.addr_spec for a in addresses(received, client_header)] == [client]
    assert mailbox("", "u@Bücher.example").domain == "xn--bcher-kva.example"


def test_a_non_ascii_local_part_is_written_only_for_smtputf8() -> None:
    for message in hostile_messages("用户", "用户@example.com"):
        with pytest.raises(AddressNeedsSmtpUtf8):
            wire(message, utf8=False)
        received = read_back(wire(message, utf8=True), utf8=True)
        headers = [h for h in ("To", "Reply-To") if h in message]
        assert any(a.addr_spec == "用户@example.com" for h in headers for a in addresses(received, h))
        for header in headers:
            assert addresses(received, header) == addresses(message, header)
