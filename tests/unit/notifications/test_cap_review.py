"""The daily cap cannot be turned against an address's owner; old events are not held; an erasure mid-hold."""

import uuid
from datetime import UTC, datetime

from agency_chassis.outcomes import Attempt, Done
from agency_shared.events import ApplicantErased, ApplicantErasedData, ApplicationSubmitted, NotificationSettled
from notifications.delivery import deliver
from notifications.erasure import forget_applicant
from notifications.handlers import (
    CAPPED_TEMPLATES,
    Emails,
    Sender,
    confirm_acceptance,
    notify_enquiry,
    notify_submission,
    staff_alerts,
)
from notifications.holding import Held
from notifications.settings import NotificationsSettings
from tests.support.events import (
    acceptance_confirmed_event,
    agreement_recorded_event,
    application_submitted,
    enquiry_received,
    recorded,
)
from tests.support.fakes import FakeDailyCap, FakeHeldSubmissions, FakeMailer, FakeNotificationLedger
from tests.support.settings import UNIT_SECRET, notifications_unit_settings

SECRET = UNIT_SECRET
STAFF = ("ops@agency.example", "sales@agency.example")
NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FIRST = Attempt(1)


def settings() -> NotificationsSettings:
    return notifications_unit_settings(STAFF)


class World:
    def __init__(self) -> None:
        self.emails = Emails(settings(), now=lambda: NOW)
        self.ledger, self.mailer, self.held = FakeNotificationLedger(), FakeMailer(), FakeHeldSubmissions()
        self.cap = FakeDailyCap(templates=CAPPED_TEMPLATES)
        self.send = Sender(self.ledger, self.mailer, staff_alerts(settings()), self.cap)

    def to(self, address: str) -> list[str]:
        return [str(m["Subject"]) for m in self.mailer.sent if m["To"].addresses[0].addr_spec == address]

    async def flood(self, victim: str, count: int = 5) -> None:
        """An attacker's enquiries naming the victim's address (passed a human check: autoresponses go)."""
        for _ in range(count):
            event = enquiry_received()
            form = event.data.enquiry.model_copy(update={"email": victim})
            data = event.data.model_copy(update={"enquiry": form, "enquiry_id": uuid.uuid4(), "human_check": "altcha"})
            event = event.model_copy(update={"event_id": uuid.uuid4(), "data": data})
            assert isinstance(await notify_enquiry(event, FIRST, self.emails, self.send, self.held), Done)


async def test_a_flood_at_the_address_does_not_stop_the_receipt_and_a_capped_verification_alerts_the_staff() -> None:
    world = World()
    submitted = application_submitted(human_check="altcha")
    victim = str(submitted.data.application.operator.email)
    await world.flood(victim)
    recorded = agreement_recorded_event(submitted=submitted)
    outcome = await world.send(world.emails.of_recording(recorded), FIRST)
    assert isinstance(outcome, Done)  # refused: not retried, not dead-lettered
    assert [e.data.state for e in outcome.publish if isinstance(e, NotificationSettled) and
            e.data.template == "email_verification"] == ["failed"]  # fmt: skip
    alert_keys = [key for key in world.ledger.entries if "/staff_client_unreachable/" in key]
    assert sorted(key.rsplit("/", 1)[1] for key in alert_keys) == sorted(STAFF)
    assert all(world.ledger.entries[key].state == "sent" for key in alert_keys)
    # A redelivery sends no second alert.
    sent = len(world.mailer.sent)
    assert isinstance(await world.send(world.emails.of_recording(recorded), Attempt(2)), Done)
    assert len(world.mailer.sent) == sent
    # The receipt, once the owner clicked a link, is never capped (and does not count).
    confirmed = acceptance_confirmed_event(submitted=submitted)
    assert isinstance(await confirm_acceptance(confirmed, FIRST, world.emails, world.send, world.held), Done)
    assert len(world.to(victim)) == 6  # five autoresponses and the confirmation
    assert not world.cap.covers("client_confirmation")


async def test_a_capped_verification_of_a_held_application_alerts_no_one() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    await world.flood(str(submitted.data.application.operator.email))
    sent = len(world.mailer.sent)
    assert await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held) == Done()
    outcome = await world.send(world.emails.of_recording(agreement_recorded_event(submitted=submitted)), FIRST)
    assert isinstance(outcome, Done)
    assert not [key for key in world.ledger.entries if "/staff_client_unreachable/" in key]
    assert len(world.mailer.sent) == sent  # the staff hear nothing of a held application


class CountingCap(FakeDailyCap):
    def __init__(self) -> None:
        super().__init__(5, CAPPED_TEMPLATES)
        self.asked: list[datetime] = []

    async def admit(self, recipient: str, key: str, now: datetime) -> bool:
        self.asked.append(now)
        return await super().admit(recipient, key, now)


async def test_a_redelivery_of_a_sent_email_never_asks_the_cap_so_it_cannot_count_in_a_new_day() -> None:
    world = World()
    cap = CountingCap()
    notice = world.emails.of_recording(agreement_recorded_event())
    await deliver(notice.event, list(notice.emails), world.ledger, world.mailer, cap=cap)
    await deliver(notice.event, list(notice.emails), world.ledger, world.mailer, cap=cap)  # after midnight, say
    assert len(cap.asked) == 1
    assert len(world.mailer.sent) == 1


async def test_a_cap_outage_lets_the_claim_go_so_the_retry_can_send() -> None:
    world = World()
    world.cap.down = True
    notice = world.emails.of_recording(agreement_recorded_event())
    outcome = await world.send(notice, FIRST)
    assert not isinstance(outcome, Done)
    world.cap.down = False
    assert isinstance(await world.send(notice, Attempt(2)), Done)
    assert len(world.mailer.sent) == 1


def legacy(event: ApplicationSubmitted) -> ApplicationSubmitted:
    """The event as published before intake recorded the human check (no such field)."""
    document = event.model_dump(mode="json")
    del document["data"]["human_check"]
    return ApplicationSubmitted.model_validate(document)


async def test_an_event_from_before_the_human_check_goes_to_the_staff_at_once_saying_not_recorded() -> None:
    world = World()
    submitted = legacy(application_submitted(human_check="none"))
    assert submitted.data.human_check is None
    assert isinstance(await notify_submission(recorded(submitted), FIRST, world.emails, world.send, world.held), Done)
    assert world.held.documents == {}
    staff = [m for m in world.mailer.sent if str(m["To"]) in STAFF]
    assert len(staff) == len(STAFF)
    body = staff[0].get_body(("plain",))
    assert body is not None
    assert "Human check:    not recorded" in body.get_content()


async def test_intake_always_states_the_human_check() -> None:
    for check in ("altcha", "none", "off"):
        published = application_submitted(human_check=check).model_dump(mode="json")
        assert published["data"]["human_check"] == check
    assert enquiry_received().model_dump(mode="json")["data"]["human_check"] is not None


class ErasedWhileHolding(FakeHeldSubmissions):
    """An erasure lands between the handler's "erased?" look and its hold (its deletion runs first)."""

    def __init__(self, ledger: FakeNotificationLedger, erasure: ApplicantErased) -> None:
        super().__init__()
        self._ledger, self._erasure = ledger, erasure

    async def hold(self, kind: str, subject_id: str, event: str, now: datetime) -> Held:
        assert await forget_applicant(self._erasure, self._ledger, self) == Done()
        return await super().hold(kind, subject_id, event, now)


async def test_an_erasure_between_the_look_and_the_hold_leaves_nothing_held() -> None:
    world = World()
    submitted = application_submitted(human_check="none")
    erasure = ApplicantErased(
        event_id=uuid.uuid4(),
        correlation_id="erase",
        data=ApplicantErasedData(application_id=submitted.data.application_id, event_ids=(), erased_at=NOW),
    )
    held = ErasedWhileHolding(world.ledger, erasure)
    assert await notify_submission(recorded(submitted), FIRST, world.emails, world.send, held) == Done()
    assert held.documents == {}
    assert world.mailer.sent == []
