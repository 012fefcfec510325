"""Intake's confirmation of a verification link: checked, then one event per application, whoever clicks how often."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from agency_chassis.email_verification import ExpiredToken, InvalidToken, VerificationTokens
from agency_chassis.publishing import PublishFailed
from agency_shared.events import EmailVerifiedData
from intake.submission import RequestContext
from intake.verification import AddressVerifier
from tests.support.fakes import FakeSender

TOKENS = VerificationTokens("intake-unit-test-secret-of-32-characters-or-more", timedelta(days=7))
SENT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
APPLICATION = uuid.uuid4()


def context(ip: str = "198.51.100.7") -> RequestContext:
    return RequestContext(client_ip=ip, user_agent="Mozilla/5.0 (mail app)", correlation_id="c-9", idempotency_key=None)


async def test_a_confirmed_link_publishes_email_verified_with_the_evidence_and_a_double_click_is_the_same_event() -> (
    None
):
    sender = FakeSender()
    verifier = AddressVerifier(TOKENS, sender)
    token = TOKENS.issue(APPLICATION, "li.wei@mapletea.example", "en", SENT)
    first = await verifier.confirm(token, context(), SENT + timedelta(hours=2))
    second = await verifier.confirm(token, context("203.0.113.5"), SENT + timedelta(hours=2, seconds=1))
    assert first.event_id == second.event_id  # derived from the application
    data = first.data
    assert (data.application_id, data.email) == (APPLICATION, "li.wei@mapletea.example")
    assert (data.client_ip, data.user_agent) == ("198.51.100.7", "Mozilla/5.0 (mail app)")
    assert data.verified_at == SENT + timedelta(hours=2)
    assert first.correlation_id == "c-9"
    assert sender.events == [first, second]


async def test_reading_a_link_verifies_nothing_and_a_bad_or_late_one_publishes_nothing() -> None:
    sender = FakeSender()
    verifier = AddressVerifier(TOKENS, sender)
    token = TOKENS.issue(APPLICATION, "li.wei@mapletea.example", "zh-CN", SENT)
    assert verifier.read(token, SENT).locale == "zh-CN"
    with pytest.raises(InvalidToken):
        await verifier.confirm(token + "x", context(), SENT)
    with pytest.raises(ExpiredToken):
        await verifier.confirm(token, context(), SENT + timedelta(days=7, seconds=1))
    assert sender.events == []


async def test_a_publish_the_broker_did_not_confirm_is_an_error_the_page_reports() -> None:
    verifier = AddressVerifier(TOKENS, FakeSender(refuse_events=True))
    with pytest.raises(PublishFailed):
        await verifier.confirm(TOKENS.issue(APPLICATION, "a@b.example", "en", SENT), context(), SENT)


async def test_an_enquiry_link_publishes_email_verified_naming_the_enquiry_not_an_application() -> None:
    sender = FakeSender()
    verifier = AddressVerifier(TOKENS, sender)
    enquiry = uuid.uuid4()
    token = TOKENS.issue(enquiry, "wang.fang@example.cn", "zh-CN", SENT, kind="enquiry")
    event = await verifier.confirm(token, context(), SENT + timedelta(minutes=5))
    assert (event.data.enquiry_id, event.data.application_id, event.data.email) == (
        enquiry,
        None,
        "wang.fang@example.cn",
    )
    application_link = TOKENS.issue(enquiry, "wang.fang@example.cn", "zh-CN", SENT)  # the same id as an application
    assert (await verifier.confirm(application_link, context(), SENT)).event_id != event.event_id


def test_email_verified_names_exactly_one_of_an_application_and_an_enquiry() -> None:
    common = {"email": "a@b.example", "verified_at": SENT, "client_ip": "198.51.100.7", "user_agent": "x"}
    with pytest.raises(ValidationError):
        EmailVerifiedData.model_validate(common)
    with pytest.raises(ValidationError):
        EmailVerifiedData.model_validate({**common, "application_id": uuid.uuid4(), "enquiry_id": uuid.uuid4()})
    assert EmailVerifiedData.model_validate({**common, "enquiry_id": APPLICATION}).application_id is None
