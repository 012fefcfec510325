"""Reminders that fire once, on the real servers: casework's scheduler (two at once, then a restarted one) against
SecantusDB and RabbitMQ, notifications sending to aiosmtpd. A clock the test moves stands in for the days."""

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from pymongo import AsyncMongoClient

import casework.main
import notifications.main
from agency_shared.events import utc_now
from casework.cases import Case, HistoryEntry
from casework.main import Adapters
from casework.reminders import ReminderKind, anchor_of, owed_reminders
from casework.reminding import ReminderScheduler, TickReport
from casework.roles import Role
from casework.settings import CaseworkSettings
from casework.storage import REMINDERS
from casework.workflow import ApplicationStatus
from notifications.settings import NotificationsSettings
from tests.support.apps import serving
from tests.support.broker import wait_settled
from tests.support.casework import Casework, eventually
from tests.support.documents import portal_links_of
from tests.support.portal import portal_browser, portal_links_in, token_of
from tests.support.servers import Inbox
from tests.support.settings import settings_with

A = ApplicationStatus
OWNER = "wang.fang@agency.example"


class Clock:
    """Now, as the test says it is."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@dataclass
class Replicas:
    """Schedulers ticking at once, as replicas would, each keeping what its ticks did."""

    schedulers: list[ReminderScheduler]
    reports: list[list[TickReport]] = field(default_factory=list)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator["Replicas"]:
        self.reports = [[] for _ in self.schedulers]
        tasks = [asyncio.create_task(self._loop(s, reports)) for s, reports in zip(self.schedulers, self.reports,
                                                                                    strict=True)]  # fmt: skip
        try:
            yield self
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    @staticmethod
    async def _loop(scheduler: ReminderScheduler, reports: list[TickReport]) -> None:
        while True:
            reports.append(await scheduler.tick())
            await asyncio.sleep(0.01)  # the pace of the loop, not a wait for anything

    async def ticked(self, more: int = 2) -> None:
        """Every replica finished ``more`` ticks after now (so each looked at the clock as it is now)."""
        marks = [len(reports) for reports in self.reports]
        await eventually(lambda: _all(len(r) >= m + more for r, m in zip(self.reports, marks, strict=True)))

    @property
    def claimed(self) -> list[str]:
        return [key for reports in self.reports for report in reports for key in report.claimed]

    @property
    def moved(self) -> list[Any]:
        return [case for reports in self.reports for report in reports for case in report.moved]


async def _all(values: Iterator[bool]) -> bool:
    return all(values)


def reminders_to(inbox: Inbox, address: str, template: str = "case_reminder") -> list[tuple[EmailMessage, str]]:
    """The reminders ``address`` got, as a reader parses them, with their plain text."""
    found = []
    for message in inbox.to(address):
        if _template(message) == template:
            body = message.get_body(("plain",))
            assert body is not None
            found.append((message, body.get_content()))
    return found


def _template(message: EmailMessage) -> str:
    subject = str(message["Subject"])
    if "提醒" in subject or "Reminder" in subject:
        return "case_reminder"
    if subject.startswith(("Case ", "案件 ")):
        return "staff_case_reminder"
    if "进度更新" in subject or "Update on" in subject:
        return "case_status"
    return "other"


@dataclass
class System:
    casework: Casework
    adapters: Adapters
    inbox: Inbox
    amqp_url: str
    mongo: AsyncMongoClient[dict[str, Any]]
    notifications: NotificationsSettings

    def scheduler(self, clock: Clock, **options: Any) -> ReminderScheduler:
        scheduler = self.adapters.reminder_scheduler(now=clock, interval=0.05)
        for name, value in options.items():
            setattr(scheduler, name, value)
        return scheduler

    async def claims(self, case: Case) -> list[dict[str, Any]]:
        collection = self.mongo[self.casework.settings.mongodb_db][REMINDERS]
        return [doc async for doc in collection.find({"case_id": str(case.id)})]


@contextlib.asynccontextmanager
async def running_system(
    casework_settings: CaseworkSettings,
    notifications_settings: NotificationsSettings,
    inbox: Inbox,
    mongo: AsyncMongoClient[dict[str, Any]],
    **casework_options: Any,
) -> AsyncIterator[System]:
    settings = settings_with(casework_settings, **{"reminder_scan_seconds": 0, **casework_options})
    casework_app = casework.main.create_app(settings)
    async with serving(notifications.main.create_app(notifications_settings), casework_app):
        adapters: Adapters = casework_app.state.adapters
        yield System(
            Casework(casework_app, settings), adapters, inbox, str(settings.amqp_url), mongo, notifications_settings
        )


@pytest.fixture
async def system(
    casework_settings: CaseworkSettings,
    notifications_settings: NotificationsSettings,
    inbox: Inbox,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> AsyncIterator[System]:
    async with running_system(casework_settings, notifications_settings, inbox, mongo) as running:
        yield running


async def test_a_case_waiting_8_days_for_documents_gets_the_day_3_and_day_7_chasers_once_each_from_two_replicas(
    system: System,
) -> None:
    since = utc_now() - timedelta(days=8)
    case = await system.casework.open_application(A.AWAITING_DOCUMENTS, now=since, locale="zh-CN",
                                                   status_since=since)  # fmt: skip
    client = case.client_email
    assert client
    clock = Clock(since + timedelta(days=3, hours=12))
    replicas = Replicas([system.scheduler(clock), system.scheduler(clock)])
    async with replicas.running():
        await system.inbox.wait_for(lambda _: len(reminders_to(system.inbox, client)) >= 1)
        # Staff revoke the client's links between the two chasers: the day-7 one carries a link that works.
        revoked = HistoryEntry(key="portal_revoked:1", kind="portal_revoked", at=utc_now(), staff=OWNER)
        assert await system.casework.cases.revoke_portal_links(await system.casework.case(case.id), revoked)
        clock.at = since + timedelta(days=8)
        await system.inbox.wait_for(lambda _: len(reminders_to(system.inbox, client)) >= 2)
        await replicas.ticked(3)
    await wait_settled(system.amqp_url, "notifications.")

    chasers = reminders_to(system.inbox, client)
    assert len(chasers) == 2, [text for _, text in chasers]
    for message, text in chasers:
        assert "我们仍在等待您的材料" in text
        assert case.reference in text
        assert message["Content-Language"] == "zh-CN"
        assert "提醒" in str(message["Subject"])
    assert chasers[0][0]["Message-ID"] != chasers[1][0]["Message-ID"]
    await _each_chaser_links_the_case_of_its_generation(system, case, [message for message, _ in chasers])
    expected = {f"{case.id}:documents_chaser:{anchor_of(since)}:{day}" for day in (3, 7)}
    assert sorted(replicas.claimed) == sorted(expected)  # each claimed by exactly one of the two
    claims = await system.claims(case)
    assert {claim["_id"] for claim in claims} == expected
    assert all("pending" not in claim and "event" not in claim for claim in claims)  # confirmed; no client data kept
    # notifications announced each email; casework put them on the case's timeline.
    await eventually(lambda: _emails_on_timeline(system, case, 2))


async def _each_chaser_links_the_case_of_its_generation(
    system: System, case: Case, chasers: list[EmailMessage]
) -> None:
    """The client's link in each chaser (plain text and HTML alike) names the case and the link generation of when it
    was sent: the day-3 one the revoked generation, which the portal refuses; the day-7 one the new, which it opens."""
    settings, portal_url = system.casework.settings, system.notifications.portal_url  # notifications writes them
    links = []
    for generation, message in enumerate(chasers):
        [link], [href] = portal_links_in(message, portal_url)
        assert href == link
        claim = portal_links_of(settings).check(token_of(link), utc_now())
        assert (claim.case_id, claim.generation, claim.locale) == (case.id, generation, "zh-CN")
        links.append(link.removeprefix(portal_url.rstrip("/")))
    async with portal_browser(system.casework.app) as browser:
        assert (await browser.open(links[0])).status_code == 410
        assert (await browser.open(links[1])).status_code == 303


async def _emails_on_timeline(system: System, case: Case, count: int) -> bool:
    current = await system.casework.case(case.id)
    return sum(1 for line in current.history if line.kind == "email" and line.template == "case_reminder") >= count


async def test_a_restarted_scheduler_sends_nothing_again(
    casework_settings: CaseworkSettings,
    notifications_settings: NotificationsSettings,
    inbox: Inbox,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    since = utc_now() - timedelta(days=4)
    clock = Clock(utc_now())
    async with running_system(casework_settings, notifications_settings, inbox, mongo) as system:
        case = await system.casework.open_application(A.AWAITING_FEE, now=since, status_since=since)
        client = case.client_email
        assert client
        first = Replicas([system.scheduler(clock)])
        async with first.running():
            await inbox.wait_for(lambda _: len(reminders_to(inbox, client)) == 1)
        [(_, text)] = reminders_to(inbox, client)
        assert "The verification fee of USD 99 is still due" in text
    # casework stopped and started again (the same database): a new process, a new scheduler, a new broker link.
    async with running_system(casework_settings, notifications_settings, inbox, mongo) as system:
        again = Replicas([system.scheduler(clock), system.scheduler(clock)])
        async with again.running():
            await again.ticked(5)
        assert again.claimed == []
        assert all(report.published == 0 for reports in again.reports for report in reports)
        await wait_settled(system.amqp_url, "notifications.")
    assert len(reminders_to(inbox, client)) == 1


async def test_a_claim_whose_publish_was_never_confirmed_is_sent_by_the_sweep_and_a_second_publish_is_one_email(
    system: System,
) -> None:
    since = utc_now() - timedelta(days=3, hours=2)
    case = await system.casework.open_application(A.DOCUMENTS_NEED_REVISION, now=since, status_since=since)
    client = case.client_email
    assert client
    clock = Clock(utc_now())
    scheduler = system.scheduler(clock)
    # A replica claimed the reminder and died before publishing it.
    [reminder] = owed_reminders(case, clock(), scheduler.schedule)
    event = await scheduler.announcement(reminder, case)
    assert event is not None
    assert await scheduler.ledger.claim(reminder, event, clock() - timedelta(minutes=1))
    assert not await scheduler.ledger.claim(reminder, event, clock())  # the key is taken for good

    report = await scheduler.tick()
    assert report.claimed == []
    assert report.published == 1
    await system.inbox.wait_for(lambda _: len(reminders_to(system.inbox, client)) == 1)
    [(_, text)] = reminders_to(system.inbox, client)
    assert "Some of your documents still need to be completed or corrected" in text

    # The broker confirmed but the mark was lost: the sweep publishes it again; notifications sends no second email.
    collection = system.mongo[system.casework.settings.mongodb_db][REMINDERS]
    await collection.update_one({"_id": reminder.key}, {"$set": {"pending": True, "event": event.model_dump_json()}})
    assert await scheduler.sweep(clock() + timedelta(seconds=1)) == 1
    await wait_settled(system.amqp_url, "notifications.")
    assert len(reminders_to(system.inbox, client)) == 1


async def test_the_renewal_due_move_and_the_renewal_reminders_happen_once_and_a_lapse_alerts_the_owner_once(
    system: System,
) -> None:
    owner = await system.casework.account(Role.OPERATOR, OWNER, "Wang Fang 王芳")
    expires = utc_now() + timedelta(days=89)
    case = await system.casework.open_application(
        A.LIVE, locale="zh-CN", expires_at=expires, verified_at=expires - timedelta(days=365), owner=owner.id,
        owner_name=owner.name, account_name="枫叶茶 Maple Tea",
    )  # fmt: skip
    client = case.client_email
    assert client
    alerts: list[tuple[ReminderKind, str]] = []

    async def on_owner_alert(kind: ReminderKind, alerted: Case, key: str) -> None:
        alerts.append((kind, alerted.reference))

    clock = Clock(utc_now())
    replicas = Replicas([system.scheduler(clock, on_owner_alert=on_owner_alert) for _ in range(2)])
    async with replicas.running():
        await eventually(lambda: _status_is(system, case, A.RENEWAL_DUE))
        await system.inbox.wait_for(lambda _: len(reminders_to(system.inbox, client, "case_status")) == 1)
        await replicas.ticked(3)
        assert replicas.moved == [case.id]
        clock.at = expires - timedelta(days=30, hours=-1)
        await system.inbox.wait_for(lambda _: len(reminders_to(system.inbox, client)) == 1)
        clock.at = expires + timedelta(hours=1)
        await system.inbox.wait_for(lambda _: len(reminders_to(system.inbox, OWNER, "staff_case_reminder")) == 1)
        await replicas.ticked(3)
    await wait_settled(system.amqp_url, "notifications.")

    [(_, news)] = reminders_to(system.inbox, client, "case_status")
    assert "年审将于" in news  # the move's news: the 90-day reminder is not sent as well
    [(_, renewal)] = reminders_to(system.inbox, client)
    assert "您的公众号年审将于" in renewal
    assert "还有 30 天" in renewal
    [(lapse, alert)] = reminders_to(system.inbox, OWNER, "staff_case_reminder")
    assert case.reference in alert
    assert f"/console/cases/{case.id}" in alert
    assert client not in lapse.as_string()  # no client's data in the owner's alert
    assert alerts == [(ReminderKind.LAPSE, case.reference)]  # the chat hook: once, from one replica
    moved = await system.casework.case(case.id)
    assert [line.current for line in moved.history if line.kind == "status_changed"] == [A.RENEWAL_DUE]
    assert sorted(key.split(":")[1] for key in replicas.claimed) == ["lapse", "renewal"]


async def _status_is(system: System, case: Case, status: str) -> bool:
    return (await system.casework.case(case.id)).status == status


async def test_the_service_runs_the_scheduler_and_tells_the_owner_of_an_overdue_case_and_tencents_deadline(
    casework_settings: CaseworkSettings,
    notifications_settings: NotificationsSettings,
    inbox: Inbox,
    mongo: AsyncMongoClient[dict[str, Any]],
) -> None:
    async with running_system(casework_settings, notifications_settings, inbox, mongo,
                              reminder_scan_seconds=0.2) as system:  # fmt: skip
        owner = await system.casework.account(Role.OPERATOR, OWNER, "Wang Fang 王芳")
        now = utc_now()
        overdue = await system.casework.open_application(
            A.DOCUMENTS_IN_REVIEW, now=now - timedelta(days=3), due_at=now - timedelta(hours=1), owner=owner.id,
            owner_name=owner.name,
        )  # fmt: skip
        deadline = (now + timedelta(days=2)).date()
        warned = await system.casework.open_application(
            A.TENCENT_REQUESTED_INFO, now=now - timedelta(days=1), tencent_deadline=deadline, owner=None,
            due_at=now + timedelta(days=3),
        )  # fmt: skip
        await inbox.wait_for(lambda _: len(reminders_to(inbox, OWNER, "staff_case_reminder")) == 1)
        # A case nobody owns: its warning goes to every staff address.
        staff = notifications_settings.staff_emails
        await inbox.wait_for(lambda _: all(reminders_to(inbox, address, "staff_case_reminder") for address in staff))
    [(_, text)] = reminders_to(inbox, OWNER, "staff_case_reminder")
    assert f"Case {overdue.reference} is overdue" in text
    for address in staff:
        [(_, warning)] = reminders_to(inbox, address, "staff_case_reminder")
        assert f"Tencent's deadline for more information on case {warned.reference}" in warning


async def test_an_erasure_forgets_a_claim_not_yet_confirmed_and_the_sweep_sends_nothing(system: System) -> None:
    since = utc_now() - timedelta(days=3, hours=2)
    case = await system.casework.open_application(A.AWAITING_DOCUMENTS, now=since, status_since=since)
    clock = Clock(utc_now())
    scheduler = system.scheduler(clock)
    [reminder] = owed_reminders(case, clock(), scheduler.schedule)
    event = await scheduler.announcement(reminder, case)
    assert event is not None
    assert await scheduler.ledger.claim(reminder, event, clock() - timedelta(minutes=1))  # and died unconfirmed

    await system.casework.cases.erase(case.subject_id, utc_now())

    collection = system.mongo[system.casework.settings.mongodb_db][REMINDERS]
    claim = await collection.find_one({"_id": reminder.key})
    assert claim is not None
    assert "event" not in claim  # the client's name and address
    assert "pending" not in claim
    assert await scheduler.sweep(clock() + timedelta(seconds=1)) == 0
