"""The client's email about their case's new status, through real RabbitMQ and an aiosmtpd server, read back
from the bytes the server received."""

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pymongo import AsyncMongoClient

from agency_chassis.portal_links import PortalLinks
from agency_shared.events import ApplicantErased, ApplicantErasedData, CaseClient, NotificationSettled
from agency_shared.topology import CASEWORK_NOTIFICATION_SETTLED
from notifications.main import create_app
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.broker import publish_event as publish
from tests.support.data import STAFF
from tests.support.events import HOSTILE_REASON, case_status_changed
from tests.support.portal import portal_links_in, token_of
from tests.support.servers import Inbox, email_parts

Mongo = AsyncMongoClient[dict[str, Any]]
CLIENT = "li.wei@mapletea.example"


async def test_the_client_is_told_in_their_language_with_the_deadline_and_never_the_reason(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    chinese = case_status_changed(
        "tencent_requested_info",
        "zh-CN",
        tencent_deadline=date(2026, 12, 31),
        client=CaseClient(name="李伟", email=CLIENT),
        portal_generation=2,
    )
    # From a casework before the links: no generation, so no link.
    english = case_status_changed("rejected", "en", rejection_reason="naming_rules", account_name="Maple Tea")
    quiet = case_status_changed("qualified", application_id=None, enquiry_id=uuid.uuid4())  # an enquiry's status
    async with serving(create_app(notifications_settings)):
        for event in (chinese, english, quiet):
            await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == 2)
        settled = await broker.take(amqp_url, CASEWORK_NOTIFICATION_SETTLED.name, 2)
        await publish(amqp_url, chinese)  # redelivered: not sent again
        await broker.wait_settled(amqp_url, "notifications.")
    assert len(inbox.messages) == 2  # the enquiry's status, and the repeat, sent nothing

    [zh_raw] = [raw for raw, m in zip(inbox.raw, inbox.messages, strict=True) if "进度更新" in m["Subject"]]
    message, text, html = email_parts(zh_raw)
    assert message["To"].addresses[0].addr_spec == CLIENT
    assert message["To"].addresses[0].display_name == "李伟"
    assert message["Subject"] == f"您的微信公众号申请进度更新（编号 {str(chinese.data.application_id)[:8]}）"
    assert sorted(a.addr_spec for a in message["Reply-To"].addresses) == sorted(STAFF)
    for body in (text, html):
        assert "腾讯要求补充材料" in body
        assert "截止日期为 2026年12月31日" in body
        assert "Maple Tea 枫叶茶" in body
        assert str(chinese.data.application_id) in body
    # The client's link, in both parts: it opens their case, of the generation casework named, in their language.
    [link], [href] = portal_links_in(message, notifications_settings.portal_url)
    assert href == link
    links = PortalLinks(
        notifications_settings.portal_link_secret.get_secret_value(),
        timedelta(days=notifications_settings.portal_link_days),
    )
    claim = links.check(token_of(link), datetime.now(UTC))
    assert (claim.case_id, claim.generation, claim.locale) == (chinese.data.case_id, 2, "zh-CN")
    assert "上传材料并查看申请进度" in text

    [en_raw] = [raw for raw, m in zip(inbox.raw, inbox.messages, strict=True) if m["Subject"].startswith("Update")]
    message, text, html = email_parts(en_raw)
    assert message["Content-Language"] == "en"
    assert "Tencent did not approve the application: the account name breaks Tencent's naming rules." in text
    assert "Tencent&#39;s naming rules" in html or "Tencent's naming rules" in html
    assert "Maple Tea" in text
    assert portal_links_in(message, notifications_settings.portal_url) == ([], [])
    assert "/portal/open" not in text + html

    for raw in inbox.raw:
        wire = raw.decode("utf-8", "replace")
        for secret in ("INTERNAL", "rude", "victim@evil.example", "alert(1)", HOSTILE_REASON):
            assert secret not in wire
        _, text, html = email_parts(raw)
        assert "INTERNAL" not in text + html

    # Announced with the case's application (casework's timeline), one per email.
    data = [NotificationSettled.model_validate(json.loads(m.body)).data for m in settled]
    assert {(d.application_id, d.template, d.state) for d in data} == {
        (chinese.data.application_id, "case_status", "sent"),
        (english.data.application_id, "case_status", "sent"),
    }
    entries = (
        await mongo[notifications_settings.mongodb_db]["notifications"].find({"template": "case_status"}).to_list()
    )
    assert sorted(e["state"] for e in entries) == ["sent", "sent"]


async def test_an_erasure_forgets_the_address_of_a_cases_news_though_no_event_id_names_it(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox, mongo: Mongo
) -> None:
    news = case_status_changed("verified", "en", client=CaseClient(name="Li Wei", email=CLIENT))
    application_id = news.data.application_id
    assert application_id is not None
    erased = ApplicantErased(
        event_id=uuid.uuid4(),
        correlation_id="erase-1",
        # agreements lists the events it knows of: the case's news is casework's, not among them.
        data=ApplicantErasedData(application_id=application_id, event_ids=(), erased_at=datetime.now(UTC)),
    )
    emails = mongo[notifications_settings.mongodb_db]["notifications"]
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, news)
        await inbox.wait_for(lambda messages: len(messages) == 1)
        await broker.wait_settled(amqp_url, "notifications.")
        await publish(amqp_url, erased)
        await broker.wait_settled(amqp_url, "notifications.")
    [entry] = await emails.find({"template": "case_status"}).to_list()
    assert entry["subject_id"] == str(application_id)
    assert entry["recipient"] == "[erased]"
    assert CLIENT not in json.dumps(entry, default=str)
