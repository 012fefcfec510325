"""The composed emails, read back with Python's email parser."""

import json
from email import message_from_bytes, policy
from email.headerregistry import HeaderRegistry
from email.message import EmailMessage
from email.policy import EmailPolicy

import pytest

from agency_shared.forms import Locale
from agency_shared.receipt_verifier import verify_receipt
from notifications import emails
from notifications.emails import client_confirmation, staff_new_application, staff_new_enquiry
from tests.support.data import CURRENT
from tests.support.events import acceptance_confirmed_event, application_submitted, enquiry_received

SENDER = "WeChat Agency <no-reply@agency.example>"


def reparse(message: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None
    assert html is not None
    return text.get_content(), html.get_content()


def test_staff_email_has_the_whole_application_and_replies_go_to_the_applicant() -> None:
    event = application_submitted()
    message = reparse(staff_new_application(event, "ops@agency.example", SENDER, "en"))
    text, html = bodies(message)
    assert message["To"] == "ops@agency.example"
    assert message["Reply-To"].addresses[0].addr_spec == "li.wei@mapletea.example"
    assert (
        message["Subject"]
        == "New Official Account application: Maple Tea Trading Ltd. 枫叶茶贸易有限公司 (Maple Tea 枫叶茶)"
    )
    for expected in ("BC1234567", "+16045550199", "Vancouver, BC", "希望尽快开通", CURRENT.sha256, "198.51.100.20"):
        assert expected in text
        assert expected in html
    assert str(event.data.application_id) in text


@pytest.mark.parametrize(
    ("locale", "subject_start", "greeting"),
    [
        ("en", "Thank you! Your submission has been received!", "Dear Li Wei 李伟"),
        ("zh-CN", "感谢您！我们已收到您的申请", "李伟，您好"),
    ],
)
def test_client_confirmation_in_the_applicants_language(locale: str, subject_start: str, greeting: str) -> None:
    event = acceptance_confirmed_event(locale)
    raw = client_confirmation(event, SENDER).as_bytes()
    message = reparse(client_confirmation(event, SENDER))
    text, html = bodies(message)
    assert message["Subject"].startswith(subject_start)
    assert message["Content-Language"] == locale
    assert greeting in text
    for expected in (
        str(event.data.application_id),
        CURRENT.sha256,
        f"version {CURRENT.version}" if locale == "en" else "版本 1",
    ):
        assert expected in text
    assert event.data.accepted_at.strftime("%Y-%m-%d %H:%M:%S") in html
    # Non-ASCII headers travel as RFC 2047 encoded words, bodies as UTF-8.
    header_block = raw.split(b"\n\n", 1)[0]
    assert header_block.isascii()
    assert b"=?utf-8?" in header_block


def test_message_ids_are_stable_per_event_template_and_recipient() -> None:
    event = acceptance_confirmed_event()
    assert client_confirmation(event, SENDER)["Message-ID"] == client_confirmation(event, SENDER)["Message-ID"]
    submitted = application_submitted()
    a = staff_new_application(submitted, "a@agency.example", SENDER, "en")["Message-ID"]
    b = staff_new_application(submitted, "b@agency.example", SENDER, "en")["Message-ID"]
    assert a != b


def test_html_part_escapes_user_input() -> None:
    event = application_submitted()
    hostile = event.model_copy(
        update={
            "data": event.data.model_copy(
                update={"application": event.data.application.model_copy(update={"notes": "<script>alert(1)</script>"})}
            )
        }
    )
    _, html = bodies(reparse(staff_new_application(hostile, "ops@agency.example", SENDER, "en")))
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


@pytest.mark.parametrize(
    "name",
    [
        "Eve\r\nBcc: victim@example.com",
        "Eve\nSubject: you won",
        "=?utf-8?b?U3VwcG9ydCBUZWFt?=",  # decodes to "Support Team" if a reader decodes it
        "=?utf-8?q?Admin?= <admin@evil.example>",
        'Eve "x" <a@b.c>, other@evil.example',
    ],
)
def test_names_from_user_input_can_never_inject_headers_or_recipients(name: str) -> None:
    event = acceptance_confirmed_event()
    hostile = event.model_copy(update={"data": event.data.model_copy(update={"applicant_name": name})})
    raw = client_confirmation(hostile, SENDER).as_bytes()
    message = reparse(client_confirmation(hostile, SENDER))
    [recipient] = message["To"].addresses
    assert recipient.addr_spec == "li.wei@mapletea.example"
    assert "Bcc" not in message
    assert message["Subject"].startswith("Thank you!")
    assert "Support Team" not in str(message["To"])
    assert "Admin <admin" not in recipient.display_name  # the encoded word was not decoded into an address
    header_block = raw.split(b"\n\n", 1)[0]
    assert header_block.count(b"\nTo:") == 1
    assert b"victim@example.com" not in header_block.split(b"\nTo:")[0]


HOSTILE_TEXT = [
    "Acme\r\nBcc: victim@example.com",
    "Acme\nReply-To: thief@evil.example",
    "=?utf-8?b?U3VwcG9ydCBUZWFt?=",  # "Support Team" once decoded
]


@pytest.mark.parametrize("text", HOSTILE_TEXT)
def test_subjects_and_reply_to_built_from_user_input_can_never_inject_headers(text: str) -> None:
    event = application_submitted()
    form = event.data.application
    hostile_form = form.model_copy(
        update={
            "company": form.company.model_copy(update={"legal_name": text}),
            "account": form.account.model_copy(update={"name": text}),
            "operator": form.operator.model_copy(update={"name": text}),
        }
    )
    hostile = event.model_copy(update={"data": event.data.model_copy(update={"application": hostile_form})})
    enquiry = enquiry_received()
    hostile_enquiry = enquiry.model_copy(
        update={
            "data": enquiry.data.model_copy(
                update={"enquiry": enquiry.data.enquiry.model_copy(update={"name": text, "company": text})}
            )
        }
    )
    replies_to = {str(form.operator.email), str(enquiry.data.enquiry.email)}
    for message in (
        reparse(staff_new_application(hostile, "ops@agency.example", SENDER, "en")),
        reparse(staff_new_enquiry(hostile_enquiry, "ops@agency.example", SENDER, "en")),
    ):
        assert "Bcc" not in message
        [reply_to] = message.get_all("Reply-To") or []
        [address] = reply_to.addresses
        assert address.addr_spec in replies_to
        assert "\n" not in message["Subject"]
        assert "Support Team" not in message["Subject"]
        assert message["To"] == "ops@agency.example"


def test_staff_emails_follow_the_staff_language() -> None:
    event = application_submitted(locale="en")
    message = reparse(staff_new_application(event, "ops@agency.example", SENDER, "zh-CN"))
    text, html = bodies(message)
    assert message["Subject"].startswith("新的公众号申请：")
    assert message["Content-Language"] == "zh-CN"
    for label in ("法定名称", "注册号", "运营者", "协议接受记录", "客户端 IP"):
        assert label in text
        assert label in html


def test_client_confirmation_carries_a_verifiable_receipt() -> None:
    event = acceptance_confirmed_event("zh-CN")
    message = reparse(client_confirmation(event, SENDER))
    [attachment] = list(message.iter_attachments())
    assert attachment.get_filename() == f"receipt-{event.data.application_id}.json"
    receipt = json.loads(attachment.get_content())
    assert verify_receipt(receipt, CURRENT.text) == []
    # The record holds only a salted hash of the name; the receipt carries the name and salt to check it.
    assert "applicant_name" not in receipt["record"]
    assert receipt["personal_data"]["applicant_name"] == "Li Wei 李伟"
    assert verify_receipt({**receipt, "personal_data": {**receipt["personal_data"], "applicant_name": "Li Wei"}}) == [
        "applicant_name is not the value whose salted hash the record holds"
    ]
    text, _ = bodies(message)
    assert f"#{event.data.sequence}" in text
    assert event.data.record_hash in text


def without_boundaries(message: EmailMessage) -> bytes:
    """The message as sent, its random MIME boundaries replaced by placeholders."""
    sent = message.as_bytes()
    boundaries = [part.get_boundary() for part in message.walk() if part.is_multipart()]
    for number, boundary in enumerate(boundaries):
        assert boundary is not None
        sent = sent.replace(boundary.encode(), f"boundary-{number}".encode())
    return sent


@pytest.mark.parametrize("locale", ["en", "zh-CN"])
def test_header_classes_made_once_give_the_same_emails_as_the_standard_registry(
    monkeypatch: pytest.MonkeyPatch, locale: str
) -> None:
    event = acceptance_confirmed_event(locale)
    ours = client_confirmation(event, "WeChat Agency <no-reply@agency.example>", ["staff@agency.example"])
    standard_policy = emails.EMAIL_POLICY.clone(header_factory=HeaderRegistry())
    monkeypatch.setattr(emails, "EMAIL_POLICY", standard_policy)
    standard = client_confirmation(event, "WeChat Agency <no-reply@agency.example>", ["staff@agency.example"])
    assert ours.policy is not standard.policy
    assert without_boundaries(ours) == without_boundaries(standard)
    # One class per header name, reused: what the standard registry builds anew on every header.
    assert isinstance(ours.policy, EmailPolicy)
    registry = ours.policy.header_factory
    assert isinstance(registry, emails.HeaderClasses)
    assert registry["Subject"] is registry["subject"]
    assert HeaderRegistry()["Subject"] is not HeaderRegistry()["Subject"]


@pytest.mark.parametrize(
    ("check", "english", "chinese"),
    [
        ("altcha", "passed (ALTCHA proof of work)", "已通过（ALTCHA 工作量证明）"),
        ("none", "none passed (no valid ALTCHA solution", "未通过（没有有效的 ALTCHA 解答"),
        ("off", "not asked (the CAPTCHA is switched off)", "未要求（人机验证已关闭）"),
    ],
)
def test_staff_emails_say_which_human_check_the_submission_passed(check: str, english: str, chinese: str) -> None:
    submitted, enquired = application_submitted(), enquiry_received()
    submitted = submitted.model_copy(update={"data": submitted.data.model_copy(update={"human_check": check})})
    enquired = enquired.model_copy(update={"data": enquired.data.model_copy(update={"human_check": check})})
    locales: tuple[tuple[Locale, str, str], ...] = (("en", "Human check", english), ("zh-CN", "人机验证", chinese))
    for locale, label, expected in locales:
        for message in (
            reparse(staff_new_application(submitted, "ops@agency.example", SENDER, locale)),
            reparse(staff_new_enquiry(enquired, "ops@agency.example", SENDER, locale)),
        ):
            text, html = bodies(message)
            for body in (text, html):
                assert label in body, (locale, body)
                assert expected in body, (locale, body)
