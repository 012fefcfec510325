"""What goes to an address nobody verified (fixed text only), the verification link, and the daily cap per address."""

import re
import uuid
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

from agency_chassis.email_verification import VerificationTokens
from agency_chassis.outcomes import Attempt, Done
from agency_shared.events import NotificationSettled
from notifications.delivery import OutgoingEmail
from notifications.handlers import CLIENT_TEMPLATES, Emails, Notice, Subject, send_notice
from notifications.settings import NotificationsSettings
from tests.support.events import ENQUIRY, acceptance_confirmed_event, agreement_recorded_event, enquiry_received
from tests.support.fakes import FakeDailyCap, FakeMailer, FakeNotificationLedger
from tests.support.settings import UNIT_SECRET, notifications_unit_settings

SECRET = UNIT_SECRET
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FIRST = Attempt(1, last=False)


def settings() -> NotificationsSettings:
    return notifications_unit_settings(("ops@agency.example",))


def read_back(message: EmailMessage | None) -> tuple[EmailMessage, str]:
    assert message is not None
    received = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(received, EmailMessage)
    parts = [part.get_content() for part in received.walk() if part.get_content_maintype() == "text"]
    return received, "\n".join(parts)


def test_an_applicant_first_gets_only_fixed_text_and_a_link_that_vouches_for_their_address() -> None:
    event = agreement_recorded_event("zh-CN")
    [email] = Emails(settings(), now=lambda: NOW).of_recording(event).emails
    assert email.template == "email_verification"
    message, text = read_back(email.message)
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == ("", event.data.applicant_email)  # not even the name they typed
    assert message["Subject"] == "请确认您的邮箱地址"
    for typed in (event.data.applicant_name, event.data.account_name, event.data.company_name):
        assert typed not in text
        assert typed not in str(message)
    [link] = set(re.findall(r"https://apply\.agency\.example/verify/[A-Za-z0-9_.\-]+", text))
    claim = VerificationTokens(SECRET, timedelta(days=7)).check(link.rsplit("/", 1)[1], NOW + timedelta(days=6))
    assert (claim.application_id, claim.email, claim.locale) == (
        event.data.application_id,
        event.data.applicant_email,
        "zh-CN",
    )
    assert "7 天" in text


def test_the_confirmation_with_the_receipt_comes_with_acceptance_confirmed_and_says_when_the_address_was_verified() -> (
    None
):
    event = acceptance_confirmed_event()
    [email] = Emails(settings()).of_confirmation(event).emails
    message, text = read_back(email.message)
    assert email.template == "client_confirmation"
    assert event.data.verified_at.strftime("%Y-%m-%d %H:%M:%S") in text
    assert f"#{event.data.verification_sequence}" in text
    assert any(part.get_filename() == f"receipt-{event.data.application_id}.json" for part in message.walk())


def test_the_enquiry_autoresponse_echoes_nothing_the_enquirer_typed_but_staff_still_get_everything() -> None:
    for locale in ("en", "zh-CN"):
        event = enquiry_received(locale)
        emails = Emails(settings()).of_enquiry(event).emails
        [autoresponse] = [email for email in emails if email.template == "enquiry_autoresponse"]
        message, text = read_back(autoresponse.message)
        [to] = message["To"].addresses
        assert (to.display_name, to.addr_spec) == ("", ENQUIRY["email"])
        whole = message.as_string()
        for typed in (ENQUIRY["name"], ENQUIRY["company"], *str(ENQUIRY["message"]).splitlines()):
            assert str(typed) not in text
            assert str(typed) not in whole
        [staff] = [email for email in emails if email.template == "staff_new_enquiry"]
        _, staff_text = read_back(staff.message)
        assert str(ENQUIRY["message"]).splitlines()[0] in staff_text


def client_email(event_number: int) -> tuple[Notice, OutgoingEmail]:
    event = enquiry_received()
    event = event.model_copy(update={"event_id": uuid.UUID(int=event_number)})
    message = EmailMessage()
    message["To"] = "wang.fang@example.cn"
    email = OutgoingEmail("enquiry_autoresponse", "wang.fang@example.cn", message)
    return Notice(event, Subject("enquiry_id", event.data.enquiry_id), (email,)), email


def alert_for(notice: Notice, failed: OutgoingEmail, reason: str) -> list[OutgoingEmail]:
    raise AssertionError("a capped email is no failure to alert the staff about")


async def test_the_sixth_client_email_to_one_address_in_a_day_is_settled_failed_not_sent_and_not_retried() -> None:
    ledger, mailer, cap = FakeNotificationLedger(), FakeMailer(), FakeDailyCap(5, CLIENT_TEMPLATES)
    outcomes = [await send_notice(client_email(n)[0], FIRST, ledger, mailer, alert_for, cap) for n in range(1, 7)]
    assert all(isinstance(outcome, Done) for outcome in outcomes)  # acked: no retry, no dead letter
    assert len(mailer.sent) == 5
    [settled] = outcomes[5].publish
    assert isinstance(settled, NotificationSettled)
    assert (settled.data.state, settled.data.template) == ("failed", "enquiry_autoresponse")
    assert settled.data.detail
    assert "CLIENT_EMAILS_PER_DAY" in settled.data.detail
    assert ledger.state("enquiry_autoresponse").count("refused") == 1
    # Redelivered: the refused one stays refused, announced again, still nothing sent.
    again = await send_notice(client_email(6)[0], FIRST, ledger, mailer, alert_for, cap)
    assert isinstance(again, Done)
    assert len(mailer.sent) == 5
    assert [e.data.state for e in again.publish if isinstance(e, NotificationSettled)] == ["failed"]


async def test_a_retried_email_does_not_count_twice_and_staff_emails_never_count() -> None:
    ledger, mailer, cap = FakeNotificationLedger(), FakeMailer(), FakeDailyCap(2, CLIENT_TEMPLATES)
    notice, _ = client_email(1)
    mailer.refusing["wang.fang@example.cn"] = "451 try later"
    await send_notice(notice, FIRST, ledger, mailer, alert_for, cap)
    del mailer.refusing["wang.fang@example.cn"]
    for _ in range(3):  # the retry, then redeliveries
        assert isinstance(await send_notice(notice, FIRST, ledger, mailer, alert_for, cap), Done)
    assert isinstance(await send_notice(client_email(2)[0], FIRST, ledger, mailer, alert_for, cap), Done)
    assert len(mailer.sent) == 2  # both admitted: the first email counted once
    assert not cap.covers("staff_new_enquiry")
