"""case.reminder-due: what the client and the owner are told, in whose language, to whom, and once."""

import uuid
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from pydantic import ValidationError

from agency_chassis.outcomes import Attempt, Done
from agency_chassis.portal_links import PortalLinks
from agency_shared.events import CaseClient, CaseReminderDue, CaseReminderDueData, NotificationSettled
from notifications.case_reminders import CLIENT_REMINDERS, OWNER_REMINDERS, client_reminder, owner_reminder
from notifications.erasure import forget_applicant
from notifications.handlers import CAPPED_TEMPLATES, CLIENT_TEMPLATES, Emails, notify_case_reminder
from tests.support.portal import portal_links_in, token_of
from tests.unit.notifications.test_holding import NOW, STAFF, World, erased, settings, settled_keys, text_of

FIRST = Attempt(1)
CLIENT = "li.wei@mapletea.example"
OWNER = "wang.fang@agency.example"
CONSOLE = "https://console.agency.example/console/cases/"
# What the client reads before their link, in each language.
PORTAL_WORDS = {"en": "Upload documents and follow your application", "zh-CN": "上传材料并查看申请进度"}


def reminder(kind: str, recipient: str, locale: str = "en", **data: Any) -> CaseReminderDue:
    case_id = uuid.uuid4()
    key = f"{case_id}:{kind}:2026-12-01T10:00:00.000+00:00:3"
    values: dict[str, Any] = {
        "reminder_key": key,
        "case_id": case_id,
        "application_id": uuid.uuid4(),
        "reference": "A-7KQ2M4XD",
        "kind": kind,
        "recipient": recipient,
        "due_at": datetime(2026, 12, 4, 10, 0, tzinfo=UTC),
        "days": 3,
        "locale": locale,
        "status": "awaiting_documents",
        "status_since": datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        "account_name": "Maple Tea 枫叶茶",
        "consultant": "Zhang Min",
        **data,
    }
    if recipient == "client":
        values.setdefault("client", CaseClient(name="Li Wei 李伟", email=CLIENT))
    else:
        values.setdefault("owner_email", OWNER)
        values.setdefault("console_link", f"{CONSOLE}{case_id}")
    return CaseReminderDue(
        event_id=uuid.uuid5(uuid.NAMESPACE_URL, key),
        correlation_id="case-A-7KQ2M4XD",
        data=CaseReminderDueData.model_validate(values),
    )


def received(message: EmailMessage) -> EmailMessage:
    parsed = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_every_text_exists_in_both_languages() -> None:
    assert set(CLIENT_REMINDERS["en"]) == set(CLIENT_REMINDERS["zh-CN"])
    assert set(OWNER_REMINDERS["en"]) == set(OWNER_REMINDERS["zh-CN"])


@pytest.mark.parametrize(
    ("kind", "data", "en", "zh"),
    [
        ("documents_chaser", {}, "We are still waiting for your documents.", "我们仍在等待您的材料。"),
        ("documents_chaser", {"status": "documents_need_revision"}, "still need to be completed or corrected",
         "仍需补充或更正"),
        ("fee_chaser", {"status": "awaiting_fee", "fee": "USD 99"}, "The verification fee of USD 99 is still due.",
         "认证费用 USD 99 仍待支付。"),
        ("fee_chaser", {"status": "awaiting_fee"}, "your consultant sent you the amount", "金额已由您的顾问告知"),
        ("renewal", {"status": "live", "days": 30, "expires_at": date(2027, 3, 1)},
         "annual verification is due on 2027-03-01, in 30 days", "年审将于 2027年3月1日 到期（还有 30 天）"),
    ],
)  # fmt: skip
def test_what_the_client_is_told(kind: str, data: dict[str, Any], en: str, zh: str) -> None:
    assert en in client_reminder(reminder(kind, "client", "en", **data).data)
    assert zh in client_reminder(reminder(kind, "client", "zh-CN", **data).data)


@pytest.mark.parametrize(
    ("kind", "data", "en"),
    [
        ("tencent_deadline", {"days": 0, "tencent_deadline": date(2026, 12, 9)},
         "Tencent's deadline for more information on case A-7KQ2M4XD is 2026-12-09: today is the last day."),
        ("tencent_deadline", {"days": 1, "tencent_deadline": date(2026, 12, 9)}, "2026-12-09: 1 day left."),
        ("tencent_deadline", {"days": 4, "tencent_deadline": date(2026, 12, 9)}, "2026-12-09: 4 days left."),
        ("overdue", {"status": "documents_in_review", "time_limit": datetime(2026, 12, 3, 10, 0, tzinfo=UTC)},
         "Case A-7KQ2M4XD is overdue: in status documents_in_review since 2026-12-01 10:00:00 UTC, its time "
         "limit passed on 2026-12-03 10:00:00 UTC."),
        ("lapse", {"expires_at": date(2027, 3, 1)}, "expired on 2027-03-01 and no renewal is recorded"),
    ],
)  # fmt: skip
def test_what_the_owner_is_told(kind: str, data: dict[str, Any], en: str) -> None:
    assert en in owner_reminder(reminder(kind, "owner", **data).data, "en")
    assert "A-7KQ2M4XD" in owner_reminder(reminder(kind, "owner", **data).data, "zh-CN")


async def test_the_client_gets_one_email_in_their_language_and_a_redelivery_sends_nothing_twice() -> None:
    for locale, subject, text in (
        ("en", "Reminder about your WeChat Official Account application (A-7KQ2M4XD)", "waiting for your documents"),
        ("zh-CN", "您的微信公众号申请提醒（编号 A-7KQ2M4XD）", "我们仍在等待您的材料"),
    ):
        world = World()
        event = reminder("documents_chaser", "client", locale)
        first = await notify_case_reminder(event, FIRST, world.emails, world.send)
        again = await notify_case_reminder(event, Attempt(2), world.emails, world.send)
        assert isinstance(first, Done)
        [email] = world.mailer.sent
        assert email["To"].addresses[0].addr_spec == CLIENT
        assert str(email["Subject"]) == subject
        assert email["Content-Language"] == locale
        assert sorted(a.addr_spec for a in email["Reply-To"].addresses) == sorted(STAFF)
        body = text_of(email)
        assert text in body
        assert "Maple Tea 枫叶茶" in body
        assert settled_keys(again) == settled_keys(first) == [f"{event.event_id}/case_reminder/{CLIENT}"]
        [settled] = [e for e in first.publish if isinstance(e, NotificationSettled)]
        assert settled.data.application_id == event.data.application_id  # for the case's timeline


async def test_the_owner_gets_the_alert_in_the_staff_language_with_a_console_link_and_no_client() -> None:
    world = World()
    event = reminder("overdue", "owner", "zh-CN", status="documents_in_review",
                     time_limit=datetime(2026, 12, 3, 10, 0, tzinfo=UTC))  # fmt: skip
    assert isinstance(await notify_case_reminder(event, FIRST, world.emails, world.send), Done)
    [email] = world.mailer.sent
    assert email["To"].addresses[0].addr_spec == OWNER
    assert email["Content-Language"] == "en"  # STAFF_LANGUAGE, not the client's
    assert str(email["Subject"]) == "Case A-7KQ2M4XD: overdue"
    body = text_of(email)
    assert f"{CONSOLE}{event.data.case_id}" in body
    assert "Maple Tea" not in body
    assert CLIENT not in email.as_string()


async def test_an_owner_alert_for_a_case_nobody_owns_goes_to_every_staff_address() -> None:
    world = World()
    event = reminder("tencent_deadline", "owner", owner_email=None, tencent_deadline=date(2026, 12, 9))
    await notify_case_reminder(event, FIRST, world.emails, world.send)
    assert sorted(str(m["To"]) for m in world.mailer.sent) == sorted(STAFF)


async def test_nothing_goes_to_an_erased_client_nor_from_a_reminder_without_a_client() -> None:
    world = World()
    event = reminder("renewal", "client", client=None, status="live", expires_at=date(2027, 3, 1))
    assert await notify_case_reminder(event, FIRST, world.emails, world.send) == Done()
    event = reminder("documents_chaser", "client")
    assert await forget_applicant(erased(event.data.application_id), world.ledger, world.held) == Done()
    assert await notify_case_reminder(event, FIRST, world.emails, world.send) == Done()
    assert world.mailer.sent == []


async def test_hostile_names_stay_inside_their_headers() -> None:
    world = World()
    name = 'Li "Wei" <attacker@evil.example>\r\nBcc: victim@evil.example, =?utf-8?b?SGk=?='
    account = "Maple\r\nBcc: victim@evil.example\nX-Injected: 1 <b>bold</b>"
    event = reminder("documents_chaser", "client", client=CaseClient(name=name, email=CLIENT), account_name=account)
    assert isinstance(await notify_case_reminder(event, FIRST, world.emails, world.send), Done)
    [email] = world.mailer.sent
    parsed = received(email)
    assert [a.addr_spec for a in parsed["To"].addresses] == [CLIENT]
    assert parsed["Bcc"] is None
    assert parsed["X-Injected"] is None
    html = parsed.get_body(("html",))
    assert html is not None
    assert "&lt;b&gt;bold&lt;/b&gt;" in html.get_content()


def test_a_client_reminder_alerts_the_staff_when_it_fails_and_is_not_capped() -> None:
    assert "case_reminder" in CLIENT_TEMPLATES
    assert "case_reminder" not in CAPPED_TEMPLATES


def test_an_owner_reminder_carries_no_client_and_a_client_reminder_no_owner_address() -> None:
    with pytest.raises(ValidationError, match="carries no client"):
        reminder("overdue", "owner", client=CaseClient(name="Li Wei", email=CLIENT))
    with pytest.raises(ValidationError, match="carries no owner address"):
        reminder("renewal", "client", owner_email=OWNER)
    with pytest.raises(ValidationError, match="exactly one of"):
        reminder("overdue", "owner", enquiry_id=uuid.uuid4())


def portal_links() -> PortalLinks:
    secret, days = settings().portal_link_secret.get_secret_value(), settings().portal_link_days
    return PortalLinks(secret, timedelta(days=days))


@pytest.mark.parametrize("kind", ["documents_chaser", "renewal"])
async def test_a_client_reminder_carries_their_link_to_the_case_of_the_generation_casework_sent(kind: str) -> None:
    for locale in ("en", "zh-CN"):
        world = World()
        event = reminder(kind, "client", locale, portal_generation=2, status="live", expires_at=date(2027, 3, 1))
        assert isinstance(await notify_case_reminder(event, FIRST, world.emails, world.send), Done)
        [email] = world.mailer.sent
        [link], [href] = portal_links_in(received(email), settings().portal_url)
        assert href == link
        claim = portal_links().check(token_of(link), NOW)
        assert (claim.case_id, claim.generation, claim.locale) == (event.data.case_id, 2, locale)
        assert PORTAL_WORDS[locale] in text_of(email)


async def test_a_reminder_without_a_generation_carries_no_link_and_an_owner_reminder_never_does() -> None:
    world = World()
    older = reminder("documents_chaser", "client", "zh-CN")  # from a casework before the links
    owner = reminder("overdue", "owner", status="documents_in_review",
                     time_limit=datetime(2026, 12, 3, 10, 0, tzinfo=UTC))  # fmt: skip
    for event in (older, owner):
        assert isinstance(await notify_case_reminder(event, FIRST, world.emails, world.send), Done)
    assert len(world.mailer.sent) == 2
    for email in world.mailer.sent:
        assert "/portal/open" not in text_of(email)
        assert not any(words in text_of(email) for words in PORTAL_WORDS.values())
    with pytest.raises(ValidationError, match="carries no portal link"):
        reminder("overdue", "owner", portal_generation=0)
    with pytest.raises(ValidationError):
        reminder("documents_chaser", "client", portal_generation=-1)


async def test_the_link_stays_one_link_in_the_html_whatever_the_portal_address_holds() -> None:
    portal_url = 'https://portal.agency.example/a&b"<i>'
    world = World()
    world.emails = Emails(settings().model_copy(update={"portal_url": portal_url}), now=lambda: NOW)
    event = reminder("documents_chaser", "client", portal_generation=0)
    await notify_case_reminder(event, FIRST, world.emails, world.send)
    [email] = world.mailer.sent
    [link], [href] = portal_links_in(received(email), portal_url)
    assert href == link
    html = received(email).get_body(("html",))
    assert html is not None
    assert '"<i>' not in html.get_content()
    assert portal_links().check(token_of(link), NOW).case_id == event.data.case_id
