"""Holding a submission that passed no human check until its address is verified: the use cases' decisions."""

import re
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage

from agency_chassis.email_verification import VerificationTokens
from agency_chassis.outcomes import Attempt, Done, RetryLater
from agency_shared.events import AgreementRecorded, ApplicantErased, ApplicantErasedData, NotificationSettled
from notifications.delivery import OutgoingEmail
from notifications.erasure import forget_applicant
from notifications.handlers import (
    CLIENT_TEMPLATES,
    Emails,
    Notice,
    Sender,
    confirm_acceptance,
    notify_enquiry,
    notify_recording,
    notify_submission,
    release_enquiry,
)
from notifications.holding import Held
from notifications.settings import NotificationsSettings
from tests.support.events import (
    ENQUIRY,
    acceptance_confirmed_event,
    application_submitted,
    enquiry_confirmed_event,
    enquiry_received,
    recorded,
)
from tests.support.fakes import FakeDailyCap, FakeHeldSubmissions, FakeMailer, FakeNotificationLedger
from tests.support.settings import UNIT_SECRET, notifications_unit_settings

SECRET = UNIT_SECRET
STAFF = ("ops@agency.example", "sales@agency.example")
CLIENT = "li.wei@mapletea.example"
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FIRST = Attempt(1)


def settings() -> NotificationsSettings:
    return notifications_unit_settings(STAFF)


def no_alerts(notice: Notice, failed: OutgoingEmail, reason: str) -> list[OutgoingEmail]:
    return []


class World:
    """The notifications service's ports as fakes, and what they saw."""

    def __init__(self) -> None:
        self.emails = Emails(settings(), now=lambda: NOW)
        self.ledger, self.mailer, self.held = FakeNotificationLedger(), FakeMailer(), FakeHeldSubmissions()
        self.cap = FakeDailyCap(templates=CLIENT_TEMPLATES)
        self.send = Sender(self.ledger, self.mailer, no_alerts, self.cap)

    def to(self, address: str) -> list[EmailMessage]:
        return [message for message in self.mailer.sent if message["To"].addresses[0].addr_spec == address]

    def staff_emails(self) -> list[EmailMessage]:
        return [message for message in self.mailer.sent if str(message["To"]) in STAFF]


def text_of(message: EmailMessage) -> str:
    received = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(received, EmailMessage)
    return "\n".join(part.get_content() for part in received.walk() if part.get_content_maintype() == "text")


def settled_keys(outcome: Done | RetryLater | object) -> list[str]:
    publish = getattr(outcome, "publish", ())
    return [event.data.notification_key for event in publish if isinstance(event, NotificationSettled)]


async def test_an_application_that_passed_a_human_check_goes_to_the_staff_at_once_and_is_not_held() -> None:
    for check in ("altcha", "off"):
        world = World()
        submitted = application_submitted(human_check=check)
        outcome = await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held)
        assert isinstance(outcome, Done)
        assert sorted(str(m["To"]) for m in world.staff_emails()) == sorted(STAFF)
        assert world.held.documents == {}


async def test_an_application_without_a_human_check_is_held_and_released_with_the_confirmation() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    assert await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held) == Done()
    assert world.mailer.sent == []
    assert str(submitted.data.application_id) in world.held.documents
    # Redelivered while held: still nothing.
    assert await notify_submission(recorded(submitted), Attempt(2), world.emails, world.send, world.held) == Done()
    assert world.mailer.sent == []

    confirmed = acceptance_confirmed_event(submitted=submitted)
    outcome = await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, Done)
    assert sorted(str(m["To"]) for m in world.staff_emails()) == sorted(STAFF)
    assert len(world.to(CLIENT)) == 1  # the confirmation, alongside
    # Exactly the keys and Message-IDs the staff emails would have had at submission.
    direct = world.emails.of_submission(recorded(submitted))
    assert set(settled_keys(outcome)) >= {email.key(recorded(submitted)) for email in direct.emails}
    assert {m["Message-ID"] for m in world.staff_emails()} == {
        e.message["Message-ID"] for e in direct.emails if e.message
    }
    text = text_of(world.staff_emails()[0])
    assert "none passed; held until the address was verified" in text
    assert f"Email verified: {confirmed.data.verified_at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in text
    assert "released_at" in world.held.documents[str(submitted.data.application_id)]


async def test_a_released_application_is_not_sent_again_by_a_redelivery_of_either_event() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    confirmed = acceptance_confirmed_event(submitted=submitted)
    await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held)
    first = await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held)
    again = await confirm_acceptance(confirmed, Attempt(2), world.emails, world.send, world.held)
    replayed = await notify_submission(recorded(submitted), Attempt(3), world.emails, world.send, world.held)
    assert isinstance(again, Done)
    assert isinstance(replayed, Done)
    assert len(world.mailer.sent) == len(STAFF) + 1
    assert sorted(settled_keys(again)) == sorted(settled_keys(first))  # announced again, sent once


async def test_a_confirmation_without_a_held_application_sends_only_the_confirmation() -> None:
    world = World()
    confirmed = acceptance_confirmed_event()  # never held (or expired)
    outcome = await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, Done)
    assert [str(m["To"].addresses[0].addr_spec) for m in world.mailer.sent] == [CLIENT]


async def test_an_application_held_after_its_verification_was_noted_goes_to_the_staff_at_once() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    confirmed = acceptance_confirmed_event(submitted=submitted)
    await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held)  # the staff consumer lagged
    outcome = await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, Done)
    assert sorted(str(m["To"]) for m in world.staff_emails()) == sorted(STAFF)
    assert "none passed; held until the address was verified" in text_of(world.staff_emails()[0])


async def test_an_outage_of_the_held_submissions_means_retry_later_and_nothing_is_sent() -> None:
    world = World()
    world.held.down = True
    submitted = application_submitted(human_check="none")
    confirmed = acceptance_confirmed_event(submitted=submitted)
    enquiry = enquiry_received(human_check="none")
    assert isinstance(
        await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held), RetryLater
    )
    assert isinstance(await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held), RetryLater)
    assert isinstance(await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held), RetryLater)
    confirmed_enquiry = enquiry_confirmed_event(enquiry.data.enquiry_id)
    assert isinstance(await release_enquiry(confirmed_enquiry, FIRST, world.emails, world.send, world.held), RetryLater)
    assert world.mailer.sent == []


def erased(application_id: object) -> ApplicantErased:
    return ApplicantErased(
        event_id=application_id,  # type: ignore[arg-type]
        correlation_id="c",
        data=ApplicantErasedData(application_id=application_id, event_ids=(), erased_at=NOW),  # type: ignore[arg-type]
    )


async def test_erasing_the_applicant_deletes_the_held_application_and_a_replay_holds_nothing() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held)
    assert await forget_applicant(erased(submitted.data.application_id), world.ledger, world.held) == Done()
    assert world.held.documents == {}
    assert (
        await notify_submission(recorded(submitted), Attempt(1, replayed=True), world.emails, world.send, world.held)
        == Done()
    )
    assert world.held.documents == {}
    confirmed = acceptance_confirmed_event(submitted=submitted)
    assert await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held) == Done()
    assert world.mailer.sent == []


async def test_an_enquiry_that_passed_a_human_check_gets_the_autoresponse_and_the_staff_it_at_once() -> None:
    world = World()
    enquiry = enquiry_received(human_check="altcha")
    assert isinstance(await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held), Done)
    assert sorted(str(m["To"]) for m in world.staff_emails()) == sorted(STAFF)
    [autoresponse] = world.to(str(ENQUIRY["email"]))
    assert "We have received your enquiry" in text_of(autoresponse)
    assert world.held.documents == {}


async def test_an_enquiry_without_a_human_check_gets_a_verification_link_and_the_staff_get_it_once_verified() -> None:
    for locale, subject in (("en", "Please confirm your email address"), ("zh-CN", "请确认您的邮箱地址")):
        world = World()
        enquiry = enquiry_received(locale, human_check="none")
        assert isinstance(await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held), Done)
        [verification] = world.mailer.sent
        assert verification["Subject"] == subject
        assert verification["To"].addresses[0].display_name == ""
        text = text_of(verification)
        for typed in (ENQUIRY["name"], ENQUIRY["company"], *str(ENQUIRY["message"]).splitlines()):
            assert str(typed) not in text
            assert str(typed) not in verification.as_string()
        [link] = set(re.findall(r"https://apply\.agency\.example/verify/[A-Za-z0-9_.\-]+", text))
        claim = VerificationTokens(SECRET, timedelta(days=7)).check(link.rsplit("/", 1)[1], NOW)
        assert (claim.kind, claim.enquiry_id, claim.application_id) == ("enquiry", enquiry.data.enquiry_id, None)
        assert (claim.email, claim.locale) == (ENQUIRY["email"], locale)

        confirmed_enquiry = enquiry_confirmed_event(enquiry.data.enquiry_id, verified_at=NOW)
        outcome = await release_enquiry(confirmed_enquiry, FIRST, world.emails, world.send, world.held)
        assert isinstance(outcome, Done)
        assert sorted(str(m["To"]) for m in world.staff_emails()) == sorted(STAFF)
        direct = world.emails.of_enquiry(enquiry)
        assert set(settled_keys(outcome)) == {
            e.key(enquiry) for e in direct.emails if e.template == "staff_new_enquiry"
        }
        staff_text = text_of(world.staff_emails()[0])
        assert str(ENQUIRY["message"]).splitlines()[0] in staff_text
        assert "2026-12-01 10:00:00 UTC" in staff_text
        # Released twice (a double click on two replicas, a redelivery): nothing more.
        again = await release_enquiry(confirmed_enquiry, Attempt(2), world.emails, world.send, world.held)
        redelivered = await notify_enquiry(enquiry, Attempt(2), world.emails, world.send, world.held)
        assert isinstance(again, Done)
        assert isinstance(redelivered, Done)
        assert len(world.mailer.sent) == 1 + len(STAFF)


async def test_an_enquiry_verified_before_it_was_held_goes_to_the_staff_when_it_arrives() -> None:
    world = World()
    enquiry = enquiry_received(human_check="none")
    confirmed_enquiry = enquiry_confirmed_event(enquiry.data.enquiry_id, verified_at=NOW)
    assert await release_enquiry(confirmed_enquiry, FIRST, world.emails, world.send, world.held) == Done()
    assert world.mailer.sent == []
    assert isinstance(await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held), Done)
    assert sorted(str(m["To"]) for m in world.staff_emails()) == sorted(STAFF)


async def test_the_enquiry_verification_email_counts_against_the_daily_cap() -> None:
    world = World()
    world.cap.limit = 2
    for _ in range(3):
        await notify_enquiry(enquiry_received(human_check="none"), FIRST, world.emails, world.send, world.held)
    assert len(world.to(str(ENQUIRY["email"]))) == 2
    assert world.ledger.state("enquiry_verification").count("refused") == 1


async def test_a_release_another_replica_is_sending_waits_and_sends_nothing_twice() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    confirmed = acceptance_confirmed_event(submitted=submitted)
    await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held)
    # Another replica took the staff emails a moment ago (its claims hold a lease).
    for email in world.emails.of_submission(recorded(submitted)).emails:
        await world.ledger.claim(email.key(recorded(submitted)), {})
    outcome = await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, RetryLater)
    assert world.staff_emails() == []
    assert len(world.to(CLIENT)) == 1  # the confirmation is not held up by it
    assert "released_at" not in world.held.documents[str(submitted.data.application_id)]


def enquirer_erased(enquiry_id: object) -> ApplicantErased:
    return ApplicantErased.model_validate(
        {"event_id": "00000000-0000-4000-8000-000000000001", "correlation_id": "c-1",
         "data": {"enquiry_id": str(enquiry_id), "event_ids": [], "erased_at": NOW.isoformat()}}
    )  # fmt: skip


async def test_an_erased_enquirer_is_held_and_sent_nothing_whatever_comes_later() -> None:
    world, held = World(), enquiry_received(human_check="none")
    enquiry_id = str(held.data.enquiry_id)
    assert isinstance(await notify_enquiry(held, FIRST, world.emails, world.send, world.held, lambda: NOW), Done)
    assert enquiry_id in world.held.documents
    sent = len(world.mailer.sent)  # the enquirer's verification link

    assert await forget_applicant(enquirer_erased(enquiry_id), world.ledger, world.held) == Done()
    assert enquiry_id not in world.held.documents
    assert enquiry_id in world.ledger.erased_applications

    # A replay of the enquiry (held or not), a press on the link's button: nothing held, nothing sent.
    for event in (held, enquiry_received(human_check="off").model_copy(update={"data": held.data})):
        assert await notify_enquiry(event, FIRST, world.emails, world.send, world.held, lambda: NOW) == Done()
    verified = enquiry_confirmed_event(held.data.enquiry_id, verified_at=NOW)
    assert await release_enquiry(verified, FIRST, world.emails, world.send, world.held, lambda: NOW) == Done()
    assert world.held.documents == {}
    assert len(world.mailer.sent) == sent


async def test_an_erasure_landing_while_an_enquiry_is_held_deletes_it() -> None:
    world, held = World(), enquiry_received(human_check="none")
    enquiry_id = str(held.data.enquiry_id)
    hold = world.held.hold

    async def erased_meanwhile(kind: str, subject_id: str, event: str, now: datetime) -> Held:
        state = await hold(kind, subject_id, event, now)
        await world.ledger.forget_application(subject_id, now)  # the erasure's tombstone, between look and hold
        return state

    world.held.hold = erased_meanwhile  # type: ignore[method-assign]
    assert await notify_enquiry(held, FIRST, world.emails, world.send, world.held, lambda: NOW) == Done()
    assert enquiry_id not in world.held.documents
    assert world.mailer.sent == []


async def test_an_agreement_recorded_of_an_earlier_version_sends_only_the_verification_link() -> None:
    # Its agreements did not carry the application: that version's notifications emailed the staff from
    # application.submitted.
    world = World()
    event = recorded(application_submitted())
    data = event.data.model_dump(mode="json", exclude={"application", "acceptance"})
    legacy = AgreementRecorded.model_validate({**event.model_dump(mode="json"), "data": data})
    assert legacy.data.application is None
    assert isinstance(await notify_recording(legacy, FIRST, world.emails, world.send, world.held), Done)
    assert world.staff_emails() == []
    assert len(world.to(CLIENT)) == 1


async def test_a_submission_an_earlier_version_held_and_released_is_not_sent_to_the_staff_again() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    # The earlier version held application.submitted, and released it with the confirmation.
    await world.held.hold("application", str(submitted.data.application_id), submitted.model_dump_json(), NOW)
    confirmed = acceptance_confirmed_event(submitted=submitted)
    assert isinstance(await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held), Done)
    assert len(world.staff_emails()) == len(STAFF)
    # This version then handles its agreement.recorded (a redelivery, a replay): the emails keep their keys.
    again = await notify_submission(recorded(submitted), Attempt(2), world.emails, world.send, world.held)
    assert isinstance(again, Done)
    assert len(world.staff_emails()) == len(STAFF)
