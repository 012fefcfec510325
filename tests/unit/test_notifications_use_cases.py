"""The notifications use cases' decisions, with hand-written fakes of the ledger and the mailer."""

import uuid
from email.message import EmailMessage

from agency_chassis.outcomes import Attempt, Done, GiveUp, RetryLater
from agency_shared.events import ApplicantErased, ApplicantErasedData, NotificationSettled, utc_now
from notifications.delivery import OutgoingEmail
from notifications.erasure import forget_applicant
from notifications.handlers import CLIENT_TEMPLATES, Notice, Subject, send_notice
from tests.support.events import agreement_recorded_event, enquiry_received
from tests.support.fakes import FakeHeldSubmissions, FakeMailer, FakeNotificationLedger

CLIENT = "li.wei@mapletea.example"
STAFF = "ops@agency.example"
FIRST, LAST = Attempt(1, last=False), Attempt(8, last=True)


def email(template: str, to: str) -> OutgoingEmail:
    message = EmailMessage()
    message["To"] = to
    message["Subject"] = template
    message["Message-ID"] = f"<{uuid.uuid4()}@test>"
    return OutgoingEmail(template, to, message)


def confirmation() -> Notice:
    event = agreement_recorded_event()
    return Notice(event, Subject("application_id", event.data.application_id), (email("client_confirmation", CLIENT),))


def alert_for(notice: Notice, failed: OutgoingEmail, reason: str) -> list[OutgoingEmail]:
    return [email("staff_client_unreachable", STAFF)]


def announced(outcome: Done | RetryLater | GiveUp) -> list[NotificationSettled]:
    published = [event for event in outcome.publish if isinstance(event, NotificationSettled)]
    assert len(published) == len(outcome.publish)
    return published


def states(outcome: Done | RetryLater | GiveUp) -> list[tuple[str, str]]:
    return [(event.data.template, event.data.state) for event in announced(outcome)]


async def test_all_emails_sent_is_done_and_announces_each_one() -> None:
    event = enquiry_received()
    notice = Notice(
        event,
        Subject("enquiry_id", event.data.enquiry_id),
        (email("staff_new_enquiry", STAFF), email("enquiry_autoresponse", "wang.fang@example.cn")),
    )
    ledger, mailer = FakeNotificationLedger(), FakeMailer()
    outcome = await send_notice(notice, FIRST, ledger, mailer, alert_for)
    assert isinstance(outcome, Done)
    assert states(outcome) == [("staff_new_enquiry", "sent"), ("enquiry_autoresponse", "sent")]
    assert all(e.data.enquiry_id == event.data.enquiry_id and e.data.application_id is None for e in announced(outcome))
    assert mailer.recipients() == [STAFF, "wang.fang@example.cn"]


async def test_a_duplicate_sends_nothing_again_and_announces_the_same_events() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    first = await send_notice(notice, FIRST, ledger, mailer, alert_for)
    again = await send_notice(notice, Attempt(2), ledger, mailer, alert_for)
    assert isinstance(again, Done)
    assert len(mailer.sent) == 1
    assert [e.event_id for e in again.publish] == [e.event_id for e in first.publish]


async def test_a_temporary_smtp_failure_means_retry_later_and_nothing_is_announced() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    mailer.refusing[CLIENT] = "451"
    outcome = await send_notice(notice, FIRST, ledger, mailer, alert_for)
    assert isinstance(outcome, RetryLater)
    assert outcome.publish == ()
    assert ledger.state("client_confirmation") == ["pending"]
    assert ledger.state("staff_client_unreachable") == []  # not failed yet: no alert


async def test_a_database_outage_means_retry_later() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    ledger.down = True
    outcome = await send_notice(notice, FIRST, ledger, mailer, alert_for)
    assert isinstance(outcome, RetryLater)
    assert mailer.tries == 0


async def test_on_the_last_attempt_unfinished_emails_fail_the_staff_are_alerted_and_it_gives_up() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    mailer.refusing[CLIENT] = "451"
    outcome = await send_notice(notice, LAST, ledger, mailer, alert_for)
    assert isinstance(outcome, GiveUp)
    assert states(outcome) == [("staff_client_unreachable", "sent"), ("client_confirmation", "failed")]
    [failed] = [e for e in announced(outcome) if e.data.state == "failed"]
    assert (failed.data.detail or "").startswith("retries exhausted")
    assert ledger.state("client_confirmation") == ["failed"]
    assert mailer.recipients() == [STAFF]


async def test_a_permanent_rejection_gives_up_at_once_after_alerting_the_staff() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    mailer.refusing[CLIENT] = "550"
    outcome = await send_notice(notice, FIRST, ledger, mailer, alert_for)
    assert isinstance(outcome, GiveUp)
    assert states(outcome) == [("staff_client_unreachable", "sent"), ("client_confirmation", "failed")]
    assert mailer.tries == 2  # the client once, the staff once: no retry


async def test_an_alert_that_must_wait_retries_and_the_event_still_gives_up_once_it_is_sent() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    mailer.refusing[CLIENT], mailer.refusing[STAFF] = "550", "451"
    assert isinstance(await send_notice(notice, FIRST, ledger, mailer, alert_for), RetryLater)
    del mailer.refusing[STAFF]
    outcome = await send_notice(notice, Attempt(2), ledger, mailer, alert_for)
    assert isinstance(outcome, GiveUp)  # the client's email failed for good in the first delivery
    assert mailer.recipients() == [STAFF]
    assert mailer.tries == 3  # the client's address was not tried again


async def test_an_operator_replay_tries_a_failed_email_again() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    mailer.refusing[CLIENT] = "550"
    await send_notice(notice, FIRST, ledger, mailer, alert_for)
    del mailer.refusing[CLIENT]
    outcome = await send_notice(notice, Attempt(1, replayed=True), ledger, mailer, alert_for)
    assert isinstance(outcome, Done)
    assert CLIENT in mailer.recipients()
    assert ("client_confirmation", "sent") in states(outcome)


async def test_nothing_goes_out_about_an_erased_applicant() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    ledger.erased_applications[str(notice.subject.id)] = utc_now()
    mailer.refusing[CLIENT] = "550"  # would alert the staff, naming the applicant
    assert await send_notice(notice, LAST, ledger, mailer, alert_for) == Done()
    assert mailer.tries == 0


def erased() -> ApplicantErased:
    event = agreement_recorded_event()
    return ApplicantErased(
        event_id=uuid.uuid4(),
        correlation_id=event.correlation_id,
        data=ApplicantErasedData(
            application_id=event.data.application_id, event_ids=(event.event_id,), erased_at=utc_now()
        ),
    )


async def test_forgetting_an_applicant_leaves_a_tombstone_and_forgets_their_addresses() -> None:
    ledger, event = FakeNotificationLedger(), erased()
    assert await forget_applicant(event, ledger, FakeHeldSubmissions()) == Done()
    assert list(ledger.erased_applications) == [str(event.data.application_id)]
    assert ledger.forgotten == [([str(event.data.event_ids[0])], sorted(CLIENT_TEMPLATES))]


async def test_forgetting_during_a_database_outage_means_retry_later() -> None:
    ledger = FakeNotificationLedger()
    ledger.down = True
    assert isinstance(await forget_applicant(erased(), ledger, FakeHeldSubmissions()), RetryLater)


class LedgerFallingOver(FakeMailer):
    """The SMTP server accepts, and right after it the ledger becomes unreachable (the window a crash-safe
    send must cover: sent, but not yet recorded as sent)."""

    def __init__(self, ledger: FakeNotificationLedger) -> None:
        super().__init__()
        self.ledger = ledger

    async def send(self, message: EmailMessage) -> str:
        reply = await super().send(message)
        self.ledger.down = True
        return reply


async def test_an_email_sent_as_the_ledger_went_away_is_recorded_by_the_retry_and_not_sent_again() -> None:
    event = enquiry_received()
    notice = Notice(
        event,
        Subject("enquiry_id", event.data.enquiry_id),
        (email("staff_new_enquiry", STAFF), email("enquiry_autoresponse", "wang.fang@example.cn")),
    )
    ledger = FakeNotificationLedger()
    mailer = LedgerFallingOver(ledger)
    first = await send_notice(notice, FIRST, ledger, mailer, alert_for)
    assert isinstance(first, RetryLater)
    assert first.publish == ()
    [(key, reply)] = first.memo.items()
    assert key == notice.emails[0].key(event)
    assert reply == "250 2.0.0 queued"
    assert mailer.recipients() == [STAFF]
    assert ledger.state("staff_new_enquiry") == ["sending"]  # the ledger never heard of the send

    still_down = await send_notice(notice, Attempt(2, memo=first.memo), ledger, mailer, alert_for)
    assert isinstance(still_down, RetryLater)
    assert mailer.recipients() == [STAFF]  # nothing sent while the ledger is away

    ledger.down = False
    back = FakeMailer()
    done = await send_notice(notice, Attempt(3, memo=first.memo), ledger, back, alert_for)
    assert isinstance(done, Done)
    assert back.recipients() == ["wang.fang@example.cn"]  # the staff email went once, in the first attempt
    assert ledger.state("staff_new_enquiry") == ["sent"]
    assert states(done) == [("staff_new_enquiry", "sent"), ("enquiry_autoresponse", "sent")]


async def test_a_ledger_outage_before_any_send_carries_no_memo() -> None:
    notice, ledger, mailer = confirmation(), FakeNotificationLedger(), FakeMailer()
    ledger.down = True
    outcome = await send_notice(notice, FIRST, ledger, mailer, alert_for)
    assert isinstance(outcome, RetryLater)
    assert outcome.memo == {}
    assert mailer.tries == 0
