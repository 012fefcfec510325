"""Intake's idempotency decisions with fakes: which keys are accepted, what the same key with the same or other data
gets, and that a submission without a key never reaches the key store."""

import json
import uuid
from typing import Any
from urllib.parse import urlencode

import pytest

from agency_chassis.publishing import PublishFailed
from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import ApplicationSubmitted
from agency_shared.forms import ApplicationForm, EnquiryForm
from intake.accepting import IDEMPOTENCY_KEY, Intake, InvalidSubmission
from intake.captcha import CaptchaOff
from intake.guards import FORM, JSON, parse_submission
from intake.idempotency import KeyReused, KeysUnavailable, fingerprint
from intake.submission import RequestContext, application_id_for, enquiry_id_for
from tests.support.data import application, flat_form
from tests.support.events import ENQUIRY
from tests.support.fakes import FakeIdempotencyKeys, FakeSender

KEY = "5f0c2a9e-7d41-4c8b-9a3e-2b1d0c9e8f7a"


def intake(keys: FakeIdempotencyKeys, sender: FakeSender) -> Intake:
    return Intake(AgreementCatalog.bundled(), sender, keys, CaptchaOff())


def context(key: str | None = KEY) -> RequestContext:
    return RequestContext("203.0.113.7", "UA", uuid.uuid4().hex, idempotency_key=key)


@pytest.mark.parametrize(
    ("key", "accepted"),
    [
        ("a" * 15, False),
        ("a" * 16, True),
        ("~" * 128, True),
        ("!" * 129, False),
        (KEY, True),
        ("0123456789 abcdef", False),  # a space
        ("0123456789\tabcdef", False),
        ("0123456789abcdéf", False),  # not ASCII
        ("0123456789abcde\x7f", False),
    ],
)
def test_the_keys_accepted_are_exactly_the_readmes_pattern(key: str, accepted: bool) -> None:
    assert IDEMPOTENCY_KEY.pattern == r"^[\x21-\x7e]{16,128}$"  # quoted in README.md, "HTTP API (intake)"
    screen = intake(FakeIdempotencyKeys(), FakeSender()).screen
    if accepted:
        assert screen("application", {"idempotency_key": key}, context(None)).context.idempotency_key == key
    else:
        with pytest.raises(InvalidSubmission) as refused:
            screen("application", {}, context(key))
        assert [(p.field, p.type) for p in refused.value.errors] == [("idempotency_key", "idempotency_key_invalid")]


def test_the_header_key_wins_over_the_form_field() -> None:
    screened = intake(FakeIdempotencyKeys(), FakeSender()).screen(
        "application", {"idempotency_key": "f" * 20}, context()
    )
    assert screened.context.idempotency_key == KEY
    assert "idempotency_key" not in screened.fields


async def test_the_same_key_with_the_same_data_is_the_same_application_published_again() -> None:
    keys, sender = FakeIdempotencyKeys(), FakeSender()
    form = ApplicationForm.model_validate(application())
    first = await intake(keys, sender).accept_application(form, context())
    again = await intake(keys, sender).accept_application(form, context())
    assert first.id == again.id == application_id_for(form, KEY)
    assert [e.event_id for e in sender.events] == [sender.events[0].event_id] * 2  # consumers drop the repeat


async def test_the_same_key_with_other_data_is_refused_and_nothing_is_published() -> None:
    keys, sender = FakeIdempotencyKeys(), FakeSender()
    await intake(keys, sender).accept_application(ApplicationForm.model_validate(application()), context())
    edited = ApplicationForm.model_validate(application({"notes": "changed after going back"}))
    with pytest.raises(KeyReused):
        await intake(keys, sender).accept_application(edited, context())
    assert len(sender.events) == 1


async def test_after_the_key_expired_other_data_with_it_is_a_new_submission_and_the_same_data_the_same() -> None:
    """README: a key is new again after IDEMPOTENCY_KEY_TTL_SECONDS; other data must then not be dropped downstream
    as a repeat of the first submission (issue 13, point 5): it gets its own id and event id."""
    keys, sender = FakeIdempotencyKeys(), FakeSender()
    form = ApplicationForm.model_validate(application())
    first = await intake(keys, sender).accept_application(form, context())
    keys.fingerprints.clear()  # MongoDB's TTL monitor deleted the claim
    other = ApplicationForm.model_validate(application({"notes": "a new application, a day later"}))
    reused = await intake(keys, sender).accept_application(other, context())
    assert reused.published
    assert reused.id != first.id
    assert reused.id == application_id_for(other, KEY)
    assert len({e.event_id for e in sender.events}) == 2  # consumers record it: not a repeat
    keys.fingerprints.clear()
    again = await intake(keys, sender).accept_application(form, context())
    assert again.id == first.id  # the first data again is the first submission again: dropped as a repeat
    assert sender.events[-1].event_id == sender.events[0].event_id


async def test_an_expired_enquiry_key_reused_for_other_data_is_a_new_enquiry() -> None:
    keys, sender = FakeIdempotencyKeys(), FakeSender()
    first = await intake(keys, sender).accept_enquiry(EnquiryForm.model_validate(ENQUIRY), context())
    keys.fingerprints.clear()
    other = EnquiryForm.model_validate({**ENQUIRY, "message": "Another question, a day later."})
    reused = await intake(keys, sender).accept_enquiry(other, context())
    assert first.id == enquiry_id_for(EnquiryForm.model_validate(ENQUIRY), KEY)
    assert reused.id == enquiry_id_for(other, KEY) != first.id
    assert sender.events[0].event_id != sender.events[1].event_id


async def test_json_and_form_data_of_the_same_application_with_one_key_are_one_application() -> None:
    keys, sender = FakeIdempotencyKeys(), FakeSender()
    body = application()
    posts = [
        parse_submission(json.dumps(reordered(body)).encode(), JSON),
        parse_submission(urlencode([*flat_form(body), ("idempotency_key", KEY)]).encode(), FORM),
    ]
    taken = [
        await intake(keys, sender).apply(posts[0], context()),
        await intake(keys, sender).apply(posts[1], context(None)),
    ]
    assert taken[0].id == taken[1].id == application_id_for(ApplicationForm.model_validate(body), KEY)
    assert taken[0].id != (await intake(keys, sender).apply(posts[0], context(None))).id  # unkeyed JSON: a new one


async def test_a_honeypot_decoy_keeps_its_id_for_the_same_key_and_fields_and_publishes_nothing() -> None:
    keys, sender = FakeIdempotencyKeys(), FakeSender()
    trapped = {**application(), "fax": "+1 555 0100"}
    first = await intake(keys, sender).apply(trapped, context())
    again = await intake(keys, sender).apply(trapped, context())
    other = await intake(keys, sender).apply({**trapped, "notes": "other"}, context())
    assert first == again
    assert not first.published
    assert other.id != first.id
    assert (sender.events, keys.claims) == ([], 0)


async def test_keys_are_per_form() -> None:
    keys, sender = FakeIdempotencyKeys(), FakeSender()
    applied = await intake(keys, sender).accept_application(ApplicationForm.model_validate(application()), context())
    enquired = await intake(keys, sender).accept_enquiry(EnquiryForm.model_validate(ENQUIRY), context())
    assert applied.id != enquired.id
    assert len(sender.events) == 2


async def test_a_submission_without_a_key_never_reaches_the_key_store() -> None:
    keys, sender = FakeIdempotencyKeys(down=True), FakeSender()
    taken = await intake(keys, sender).accept_application(ApplicationForm.model_validate(application()), context(None))
    await intake(keys, sender).accept_enquiry(EnquiryForm.model_validate(ENQUIRY), context(None))
    assert keys.claims == 0
    assert taken.published
    assert len(sender.events) == 2


async def test_the_key_store_down_refuses_a_keyed_submission_and_publishes_nothing() -> None:
    keys, sender = FakeIdempotencyKeys(down=True), FakeSender()
    with pytest.raises(KeysUnavailable):
        await intake(keys, sender).accept_application(ApplicationForm.model_validate(application()), context())
    assert sender.events == []


async def test_after_the_broker_refused_the_retry_with_the_same_data_is_accepted_and_other_data_is_not() -> None:
    keys, sender = FakeIdempotencyKeys(), FakeSender(refuse_events=True)
    form = ApplicationForm.model_validate(application())
    with pytest.raises(PublishFailed):
        await intake(keys, sender).accept_application(form, context())
    sender.refuse_events = False
    retried = await intake(keys, sender).accept_application(form, context())
    assert retried.id == application_id_for(form, KEY)
    assert isinstance(sender.events[0], ApplicationSubmitted)
    with pytest.raises(KeyReused):
        await intake(keys, sender).accept_application(
            ApplicationForm.model_validate(application({"notes": "other"})), context()
        )


def reordered(value: Any) -> Any:
    return {k: reordered(value[k]) for k in reversed(list(value))} if isinstance(value, dict) else value


def test_json_and_form_data_of_the_same_application_have_one_fingerprint() -> None:
    body = application()
    as_json = parse_submission(json.dumps(reordered(body)).encode(), JSON)
    as_form = parse_submission(urlencode(flat_form(body)).encode(), FORM)
    spelled_out = parse_submission(json.dumps({**body, "locale": "en"}).encode(), JSON)
    prints = {fingerprint(ApplicationForm.model_validate(raw)) for raw in (as_json, as_form, spelled_out)}
    assert len(prints) == 1
    other = fingerprint(ApplicationForm.model_validate(application({"notes": "x"})))
    assert other not in prints
