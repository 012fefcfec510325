"""case.status-changed: which statuses email the client, what they are told, and what never reaches them."""

import re
import uuid
from datetime import date
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from agency_chassis.outcomes import Attempt, Done, GiveUp
from agency_shared.events import CaseClient, NotificationSettled, RejectionReason
from notifications.case_status import CLIENT_STATUSES, REJECTIONS, UPDATES, client_update
from notifications.erasure import forget_applicant
from notifications.handlers import CAPPED_TEMPLATES, CLIENT_TEMPLATES, Sender, notify_case_status
from tests.support.events import HOSTILE_REASON, case_status_changed
from tests.support.portal import portal_links_in, token_of
from tests.unit.notifications.test_case_reminders import PORTAL_WORDS, portal_links
from tests.unit.notifications.test_holding import NOW, STAFF, World, erased, settings, settled_keys, text_of

FIRST = Attempt(1)
CLIENT = "li.wei@mapletea.example"
APPLICATION_STATUSES = (
    "triage", "awaiting_documents", "documents_in_review", "documents_need_revision", "awaiting_fee",
    "account_setup", "submitted_to_tencent", "tencent_requested_info", "rejected", "verified", "live",
    "renewal_due", "renewed", "lapsed", "on_hold", "withdrawn",
)  # fmt: skip
ENQUIRY_STATUSES = ("new", "contacted", "qualified", "converted", "closed")


def wire(message: EmailMessage) -> str:
    return message.as_bytes(policy=policy.SMTP).decode("utf-8", "replace")


def parsed(message: EmailMessage) -> EmailMessage:
    received = message_from_bytes(message.as_bytes(policy=policy.SMTP), policy=policy.default)
    assert isinstance(received, EmailMessage)
    return received


def test_every_application_status_tells_the_client_and_no_enquiry_status_does() -> None:
    assert set(APPLICATION_STATUSES) == CLIENT_STATUSES
    for locale in ("en", "zh-CN"):
        for status in APPLICATION_STATUSES:
            assert client_update(case_status_changed(status, locale).data), (status, locale)
        for status in (*ENQUIRY_STATUSES, "something_new"):
            assert client_update(case_status_changed(status, locale).data) is None


@pytest.mark.parametrize(
    ("status", "data", "en", "zh"),
    [
        ("triage", {}, "A consultant, Zhang Min, is handling your application.", "您的顾问 Zhang Min 将负责跟进。"),
        ("documents_in_review", {}, "Documents received; we are checking them.", "材料已收到，正在审核。"),
        ("awaiting_fee", {"fee": "USD 99"}, "The verification fee is USD 99.", "认证费用为 USD 99。"),
        ("awaiting_fee", {"fee": None}, "your consultant will send you the amount", "您的顾问将告知金额"),
        ("account_setup", {}, "Please scan the QR code with the administrator's WeChat.", "请管理员用微信扫码确认。"),
        ("submitted_to_tencent", {}, "review usually takes 5–10 business days", "已提交腾讯审核"),
        ("tencent_requested_info", {"tencent_deadline": date(2026, 12, 31)}, "The deadline is 2026-12-31.",
         "截止日期为 2026年12月31日。"),
        ("tencent_requested_info", {}, "what is needed and by when", "所需内容及截止日期"),
        ("verified", {}, "Your account is verified.", "您的公众号已通过认证。"),
        ("renewal_due", {"expires_at": date(2027, 3, 1)}, "Annual verification due on 2027-03-01.",
         "年审将于 2027年3月1日 到期。"),
        ("renewal_due", {}, "annual verification is due soon", "年审即将到期"),
        # Tencent's deadline is that of its last request for information: never read as the renewal date.
        ("renewal_due", {"tencent_deadline": date(2026, 5, 9)}, "annual verification is due soon", "年审即将到期"),
        ("renewal_due", {"tencent_deadline": date(2026, 5, 9), "expires_at": date(2027, 3, 1)},
         "Annual verification due on 2027-03-01.", "年审将于 2027年3月1日 到期。"),
    ],
)  # fmt: skip
def test_what_the_client_is_told(status: str, data: dict[str, object], en: str, zh: str) -> None:
    assert en in (client_update(case_status_changed(status, "en", **data).data) or "")
    assert zh in (client_update(case_status_changed(status, "zh-CN", **data).data) or "")


def test_the_fee_is_said_to_be_non_refundable_if_rejected() -> None:
    assert "not refunded if Tencent rejects" in (
        client_update(case_status_changed("awaiting_fee", fee="USD 99").data) or ""
    )
    assert "认证费用不予退还" in (client_update(case_status_changed("awaiting_fee", "zh-CN").data) or "")


def test_triage_without_a_consultant_tells_nothing() -> None:
    for consultant in (None, ""):
        assert client_update(case_status_changed("triage", consultant=consultant).data) is None


@pytest.mark.parametrize("code", ["illegible_seal", "missing_pages", "naming_rules", "inconsistent_details",
                                  "missing_statements", "other"])  # fmt: skip
def test_a_rejection_says_its_fixed_sentence_per_reason_code(code: RejectionReason) -> None:
    for locale in ("en", "zh-CN"):
        update = client_update(case_status_changed("rejected", locale, rejection_reason=code).data) or ""
        assert REJECTIONS[locale][code] in update
        others = [sentence for other, sentence in REJECTIONS[locale].items() if other != code]
        assert not any(sentence in update for sentence in others)
    without = client_update(case_status_changed("rejected", rejection_reason=None).data) or ""
    assert REJECTIONS["en"]["other"] in without


async def test_the_client_gets_one_email_in_their_language_and_never_the_staff_reason() -> None:
    for locale, subject, text in (
        ("en", "Update on your WeChat Official Account application", "Documents received; we are checking them."),
        ("zh-CN", "您的微信公众号申请进度更新", "材料已收到，正在审核。"),
    ):
        world = World()
        event = case_status_changed("documents_in_review", locale)
        outcome = await notify_case_status(event, FIRST, world.emails, world.send)
        assert isinstance(outcome, Done)
        [email] = world.mailer.sent
        assert email["To"].addresses[0].addr_spec == CLIENT
        assert email["Subject"].startswith(subject)
        assert email["Content-Language"] == locale
        assert sorted(a.addr_spec for a in email["Reply-To"].addresses) == sorted(STAFF)
        body = text_of(email)
        assert text in body
        assert "Maple Tea 枫叶茶" in body
        assert str(event.data.application_id) in body
        for part in ("INTERNAL", "rude", "victim@evil.example", "alert(1)", HOSTILE_REASON):
            assert part not in body
            assert part not in wire(email)
        # Both parts: plain text and HTML.
        assert {part.get_content_type() for part in parsed(email).walk()} >= {"text/plain", "text/html"}
        # Announced with the case's application, for its timeline.
        [settled] = [e for e in outcome.publish if isinstance(e, NotificationSettled)]
        assert settled.data.application_id == event.data.application_id
        assert settled.data.enquiry_id is None
        assert settled.data.template == "case_status"
        assert settled.data.notification_key == f"{event.event_id}/case_status/{CLIENT}"
        assert settled.data.state == "sent"


async def test_an_enquiry_case_announces_its_enquiry() -> None:
    world = World()
    enquiry_id = uuid.uuid4()
    event = case_status_changed("on_hold", application_id=None, enquiry_id=enquiry_id)
    outcome = await notify_case_status(event, FIRST, world.emails, world.send)
    [settled] = [e for e in outcome.publish if isinstance(e, NotificationSettled)]
    assert (settled.data.enquiry_id, settled.data.application_id) == (enquiry_id, None)


async def test_a_redelivery_sends_nothing_twice_and_a_new_move_is_a_new_email() -> None:
    world = World()
    event = case_status_changed("verified")
    first = await notify_case_status(event, FIRST, world.emails, world.send)
    again = await notify_case_status(event, Attempt(2), world.emails, world.send)
    assert len(world.mailer.sent) == 1
    assert settled_keys(again) == settled_keys(first) == [f"{event.event_id}/case_status/{CLIENT}"]
    await notify_case_status(case_status_changed("verified"), FIRST, world.emails, world.send)
    assert len(world.mailer.sent) == 2


async def test_nothing_is_sent_without_a_client_for_a_status_not_told_or_to_an_erased_client() -> None:
    world = World()
    for event in (
        case_status_changed("verified", client=None),
        case_status_changed("qualified"),
        case_status_changed("triage", consultant=None),
    ):
        assert await notify_case_status(event, FIRST, world.emails, world.send) == Done()
    event = case_status_changed("verified")
    assert await forget_applicant(erased(event.data.application_id), world.ledger, world.held) == Done()
    assert await notify_case_status(event, FIRST, world.emails, world.send) == Done()
    assert world.mailer.sent == []


async def test_hostile_names_stay_inside_their_headers() -> None:
    world = World()
    name = 'Li "Wei" <attacker@evil.example>\r\nBcc: victim@evil.example, =?utf-8?b?SGk=?='
    account = "Maple\r\nBcc: victim@evil.example\nX-Injected: 1 <b>bold</b>"
    event = case_status_changed("verified", client=CaseClient(name=name, email=CLIENT), account_name=account)
    assert isinstance(await notify_case_status(event, FIRST, world.emails, world.send), Done)
    [email] = world.mailer.sent
    received = parsed(email)
    [to] = received["To"].addresses
    assert to.addr_spec == CLIENT
    assert "attacker@evil.example" in to.display_name  # kept as the name, not made an address
    assert received["Bcc"] is None
    assert received["X-Injected"] is None
    assert [a.addr_spec for a in received["To"].addresses] == [CLIENT]
    html = received.get_body(("html",))
    assert html is not None
    assert "<b>bold</b>" not in html.get_content()  # escaped
    assert "&lt;b&gt;bold&lt;/b&gt;" in html.get_content()
    plain = received.get_body(("plain",))
    assert plain is not None
    assert "Maple Bcc: victim@evil.example X-Injected: 1" in plain.get_content()  # the name on one line


async def test_a_client_email_that_fails_for_good_alerts_the_staff_and_is_not_capped() -> None:
    assert "case_status" in CLIENT_TEMPLATES
    assert "case_status" not in CAPPED_TEMPLATES
    alerts: list[str] = []
    world = World()
    world.mailer.refusing[f"Li Wei <{CLIENT}>"] = "550"

    def alert_for(notice: object, failed: object, reason: str) -> list[object]:
        alerts.append(reason)
        return []

    send = Sender(world.ledger, world.mailer, alert_for, world.cap)  # type: ignore[arg-type]
    outcome = await notify_case_status(case_status_changed("live"), FIRST, world.emails, send)
    assert isinstance(outcome, GiveUp)
    assert alerts == ["550 refused"]


def test_the_readme_table_says_what_the_client_is_told() -> None:
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n### What the client is told when a case moves\n", 1)[1].split("\n## ", 1)[0]
    rows = {
        match[0]: (match[1].strip(), match[2].strip())
        for match in re.findall(r"^\| `([a-z_]+)`[^|]*\|([^|]+)\|([^|]+)\|$", section, re.MULTILINE)
    }
    assert set(rows) == CLIENT_STATUSES
    for status, (en, zh) in rows.items():
        if not re.search(r"\b[NFDR]\b", en):  # the rows with no value filled in are the text, word for word
            assert (en, zh) == (UPDATES["en"][status], UPDATES["zh-CN"][status])


async def test_the_news_carries_the_clients_link_to_the_case_of_the_generation_casework_sent() -> None:
    for locale in ("en", "zh-CN"):
        world = World()
        event = case_status_changed("awaiting_documents", locale, portal_generation=1)
        assert isinstance(await notify_case_status(event, FIRST, world.emails, world.send), Done)
        [email] = world.mailer.sent
        [link], [href] = portal_links_in(parsed(email), settings().portal_url)
        assert href == link
        claim = portal_links().check(token_of(link), NOW)
        assert (claim.case_id, claim.generation, claim.locale) == (event.data.case_id, 1, locale)
        assert PORTAL_WORDS[locale] in text_of(email)


async def test_news_without_a_generation_carries_no_link() -> None:
    world = World()
    older = case_status_changed("verified", "zh-CN")  # from a casework before the links
    assert older.data.portal_generation is None
    await notify_case_status(older, FIRST, world.emails, world.send)
    [email] = world.mailer.sent
    assert "/portal/open" not in text_of(email)
    assert PORTAL_WORDS["zh-CN"] not in text_of(email)
