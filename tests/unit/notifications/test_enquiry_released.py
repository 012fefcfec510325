"""enquiry.released: announced whenever an enquiry reaches the staff, never while it is held or once erased."""

from datetime import UTC, datetime
from email.message import EmailMessage

from agency_chassis.outcomes import Attempt, Done, GiveUp, Outcome, RetryLater
from agency_shared.events import EnquiryReleased, derived_id
from notifications.erasure import forget_applicant
from notifications.handlers import notify_enquiry, release_enquiry
from tests.support.events import enquiry_confirmed_event, enquiry_received
from tests.unit.notifications.test_holding import STAFF, World, enquirer_erased

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
FIRST = Attempt(1)


def released(outcome: Outcome) -> list[EnquiryReleased]:
    return [event for event in outcome.publish if isinstance(event, EnquiryReleased)]


async def test_an_enquiry_that_passed_a_human_check_is_released_at_once() -> None:
    for check in ("altcha", "off", None):
        world = World()
        enquiry = enquiry_received("zh-CN", human_check="off")
        enquiry = enquiry.model_copy(update={"data": enquiry.data.model_copy(update={"human_check": check})})
        outcome = await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
        assert isinstance(outcome, Done)
        [event] = released(outcome)
        assert event.event_id == derived_id("enquiry.released", str(enquiry.data.enquiry_id))
        assert event.correlation_id == enquiry.correlation_id
        data = enquiry.data
        assert (event.data.enquiry_id, event.data.enquiry, event.data.received_at, event.data.locale) == (
            data.enquiry_id, data.enquiry, data.received_at, "zh-CN",
        )  # fmt: skip
        assert event.data.verified_at is None
        # A redelivery is the same event (casework drops it by its id), the emails are not sent again.
        again = await notify_enquiry(enquiry, Attempt(2), world.emails, world.send, world.held)
        assert released(again) == [event]
        assert len(world.mailer.sent) == len(STAFF) + 1


async def test_a_held_enquiry_is_not_released_until_its_address_is_verified_then_once() -> None:
    world = World()
    enquiry = enquiry_received(human_check="none")
    held = await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    assert isinstance(held, Done)
    assert released(held) == []

    confirmed = enquiry_confirmed_event(enquiry.data.enquiry_id, verified_at=NOW)
    outcome = await release_enquiry(confirmed, FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, Done)
    [event] = released(outcome)
    assert event.event_id == derived_id("enquiry.released", str(enquiry.data.enquiry_id))
    assert event.correlation_id == confirmed.correlation_id
    assert event.data.verified_at == NOW
    assert event.data.enquiry == enquiry.data.enquiry
    # Released again (a double click, a redelivery of either event): the same event, no second email.
    sent = len(world.mailer.sent)
    again = await release_enquiry(confirmed, Attempt(2), world.emails, world.send, world.held)
    redelivered = await notify_enquiry(enquiry, Attempt(2), world.emails, world.send, world.held)
    assert released(again) == [event]
    assert [e.event_id for e in released(redelivered)] == [event.event_id]
    assert len(world.mailer.sent) == sent


async def test_an_enquiry_verified_before_it_arrived_is_released_when_it_arrives() -> None:
    world = World()
    enquiry = enquiry_received(human_check="none")
    confirmed = enquiry_confirmed_event(enquiry.data.enquiry_id, verified_at=NOW)
    early = await release_enquiry(confirmed, FIRST, world.emails, world.send, world.held)
    assert released(early) == []  # nothing held yet: nothing reached the staff
    outcome = await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    [event] = released(outcome)
    assert event.data.verified_at == NOW
    assert event.correlation_id == enquiry.correlation_id


async def test_the_release_is_announced_whatever_became_of_the_emails() -> None:
    world = World()
    world.mailer.refusing[STAFF[0]] = "451"  # try later
    enquiry = enquiry_received(human_check="altcha")
    outcome = await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, RetryLater)
    assert len(released(outcome)) == 1

    world = World()
    world.mailer.refusing[STAFF[0]] = "550"  # for good
    outcome = await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, GiveUp)
    assert len(released(outcome)) == 1


async def test_an_erased_enquirer_is_never_released() -> None:
    world = World()
    enquiry = enquiry_received(human_check="altcha")
    assert await forget_applicant(enquirer_erased(enquiry.data.enquiry_id), world.ledger, world.held) == Done()
    assert await notify_enquiry(enquiry, Attempt(1, replayed=True), world.emails, world.send, world.held) == Done()

    held = enquiry_received(human_check="none")
    await notify_enquiry(held, FIRST, world.emails, world.send, world.held)
    assert await forget_applicant(enquirer_erased(held.data.enquiry_id), world.ledger, world.held) == Done()
    confirmed = enquiry_confirmed_event(held.data.enquiry_id, verified_at=NOW)
    assert await release_enquiry(confirmed, FIRST, world.emails, world.send, world.held) == Done()


async def test_an_unreachable_ledger_releases_nothing_and_retries() -> None:
    world = World()
    world.ledger.down = True
    outcome = await notify_enquiry(enquiry_received(human_check="altcha"), FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, RetryLater)
    assert released(outcome) == []
    assert world.mailer.sent == []


async def test_an_erasure_landing_while_the_staff_are_emailed_releases_nothing() -> None:
    world = World()
    enquiry = enquiry_received(human_check="altcha")
    erased_while_sending(world, enquiry.data.enquiry_id)
    outcome = await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    assert released(outcome) == []


def erased_while_sending(world: World, enquiry_id: object) -> None:
    """The enquirer's erasure lands while the staff's emails are being sent."""
    send = world.mailer.send

    async def erased_meanwhile(message: EmailMessage) -> str:
        await world.ledger.forget_application(str(enquiry_id), NOW)
        return await send(message)

    world.mailer.send = erased_meanwhile  # type: ignore[method-assign]


async def test_an_erasure_landing_while_a_held_enquiry_is_released_announces_nothing() -> None:
    world = World()
    enquiry = enquiry_received(human_check="none")
    await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    erased_while_sending(world, enquiry.data.enquiry_id)
    confirmed = enquiry_confirmed_event(enquiry.data.enquiry_id, verified_at=NOW)
    outcome = await release_enquiry(confirmed, FIRST, world.emails, world.send, world.held)
    assert released(outcome) == []


async def test_an_erasure_landing_while_an_enquiry_verified_earlier_is_released_announces_nothing() -> None:
    world = World()
    enquiry = enquiry_received(human_check="none")
    confirmed = enquiry_confirmed_event(enquiry.data.enquiry_id, verified_at=NOW)
    await release_enquiry(confirmed, FIRST, world.emails, world.send, world.held)
    erased_while_sending(world, enquiry.data.enquiry_id)
    outcome = await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    assert released(outcome) == []


async def test_an_unreachable_ledger_after_a_held_enquirys_emails_retries_without_announcing() -> None:
    world = World()
    enquiry = enquiry_received(human_check="none")
    await notify_enquiry(enquiry, FIRST, world.emails, world.send, world.held)
    send = world.mailer.send

    async def ledger_gone_meanwhile(message: EmailMessage) -> str:
        sent = await send(message)
        world.ledger.down = True
        return sent

    world.mailer.send = ledger_gone_meanwhile  # type: ignore[method-assign]
    confirmed = enquiry_confirmed_event(enquiry.data.enquiry_id, verified_at=NOW)
    outcome = await release_enquiry(confirmed, FIRST, world.emails, world.send, world.held)
    assert isinstance(outcome, RetryLater)
    assert released(outcome) == []
