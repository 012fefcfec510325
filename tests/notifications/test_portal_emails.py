"""The client portal's two emails through real RabbitMQ and an aiosmtpd server, read back from the bytes received:
the confirmation carries the personal link, which opens the portal casework serves; a new link a client asked for
goes once per request, in their language, within the address's daily cap."""

import re
import uuid
from datetime import timedelta

from agency_chassis.portal_links import PortalLinks
from agency_shared.cases import case_id_of
from agency_shared.events import PortalLinkRequested, PortalLinkRequestedData, derived_id, utc_now
from casework.settings import CaseworkSettings
from notifications.main import create_app
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import serving
from tests.support.broker import publish_event as publish
from tests.support.casework import eventually, running_casework
from tests.support.events import acceptance_confirmed_event
from tests.support.portal import portal_browser
from tests.support.servers import Inbox, email_parts
from tests.support.settings import settings_with

PORTAL = "https://portal.agency.example"
LINK = re.compile(re.escape(PORTAL) + r"/portal/open\?t=[A-Za-z0-9._\-]+")
CLIENT = "li.wei@mapletea.example"


def link_requested(
    name: str, locale: str = "zh-CN", email: str = CLIENT, generation: int = 2, signed_link: bool = False
) -> PortalLinkRequested:
    """A client's request for a new link, as casework announces it: naming the case's link generation (or, as an
    earlier casework did, carrying the signed link)."""
    case_id = uuid.uuid4()
    now = utc_now()
    link: dict[str, object] = (
        {"link": f"{PORTAL}/portal/open?t=token-{case_id.hex}", "expires_at": now + timedelta(days=30)}
        if signed_link
        else {"portal_generation": generation}
    )
    data = {"case_id": case_id, "application_id": uuid.uuid4(), "reference": "A-7KQ2M4XD", "email": email,
            "name": name, "locale": locale, "requested_at": now, **link}  # fmt: skip
    return PortalLinkRequested(
        event_id=uuid.uuid4(),
        correlation_id=f"portal-link-{uuid.uuid4().hex[:8]}",
        data=PortalLinkRequestedData.model_validate(data),
    )


async def test_the_confirmation_carries_the_personal_link_and_it_opens_the_portal(
    notifications_settings: NotificationsSettings, casework_settings: CaseworkSettings, amqp_url: str, inbox: Inbox
) -> None:
    confirmed = acceptance_confirmed_event(locale="zh-CN")
    application_id = confirmed.data.application_id
    notifications_app = create_app(settings_with(notifications_settings, portal_url=PORTAL))
    async with running_casework(casework_settings) as casework, serving(notifications_app):
        await publish(amqp_url, confirmed)
        await inbox.wait_for(lambda messages: len(messages) == 1)
        case = await eventually(lambda: casework.cases.get(case_id_of(application_id)))
        message, text, html = email_parts(inbox.raw[0])
        assert message["To"].addresses[0].addr_spec == confirmed.data.applicant_email
        [link] = LINK.findall(text)
        assert link in html
        assert "专属页面" in text
        async with portal_browser(casework.app) as browser:
            opened = await browser.open(link.removeprefix(PORTAL))
            assert opened.status_code == 303
            page = await browser.get("/portal")
    assert page.status_code == 200
    assert case.reference in page.text
    assert '<html lang="zh-CN">' in page.text


async def test_a_new_link_is_emailed_once_in_the_clients_language(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    # A hostile name: quotes, an address of its own and a line break must not make another recipient.
    chinese = link_requested('李伟 "<attacker@evil.example>"\r\nBcc: x@evil.example', generation=2)
    english = link_requested("Li Wei", locale="en", email="li.wei+en@mapletea.example", generation=0)
    settings = settings_with(notifications_settings, portal_url=PORTAL)
    async with serving(create_app(settings)):
        await publish(amqp_url, chinese)
        await publish(amqp_url, english)
        await inbox.wait_for(lambda messages: len(messages) == 2)
        await publish(amqp_url, chinese)  # a redelivery: no second email
        await broker.wait_settled(amqp_url, "notifications.")
    assert len(inbox.messages) == 2
    by_subject = {email_parts(raw)[0]["Subject"]: raw for raw in inbox.raw}
    links = PortalLinks(settings.portal_link_secret.get_secret_value(), timedelta(days=settings.portal_link_days))
    message, text, html = email_parts(by_subject["您的申请专属链接（编号 A-7KQ2M4XD）"])
    assert [address.addr_spec for address in message["To"].addresses] == [CLIENT]
    assert message["Bcc"] is None
    # The link is signed as the email is written, for the generation casework named: it opens that case.
    [link] = LINK.findall(text)
    assert f'href="{link}"' in html
    claim = links.check(link.split("?t=", 1)[1], utc_now())
    assert (claim.case_id, claim.generation, claim.locale) == (chinese.data.case_id, 2, "zh-CN")
    assert "有效期至" in text
    message, text, _ = email_parts(by_subject["Your personal link to your application (A-7KQ2M4XD)"])
    assert [address.addr_spec for address in message["To"].addresses] == ["li.wei+en@mapletea.example"]
    [link] = LINK.findall(text)
    claim = links.check(link.split("?t=", 1)[1], utc_now())
    assert (claim.case_id, claim.generation, claim.locale) == (english.data.case_id, 0, "en")
    assert message["Content-Language"] == "en"


async def test_an_earlier_caseworks_request_with_its_signed_link_is_emailed_as_it_is(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    """A rolling deploy: a request announced by casework before this version carries the signed link itself."""
    earlier = link_requested("Li Wei", locale="en", signed_link=True)
    async with serving(create_app(notifications_settings)):
        await publish(amqp_url, earlier)
        await inbox.wait_for(lambda messages: len(messages) == 1)
    _, text, html = email_parts(inbox.raw[0])
    assert earlier.data.link is not None
    assert earlier.data.link in text
    assert earlier.data.link in html


async def test_new_links_to_one_address_stop_at_the_daily_cap(
    notifications_settings: NotificationsSettings, amqp_url: str, inbox: Inbox
) -> None:
    cap = notifications_settings.client_emails_per_day
    requests = [link_requested("李伟") for _ in range(cap + 2)]
    async with serving(create_app(notifications_settings)):
        for event in requests:
            await publish(amqp_url, event)
        await inbox.wait_for(lambda messages: len(messages) == cap)
        await broker.wait_settled(amqp_url, "notifications.")
    assert len(inbox.messages) == cap


def test_notifications_names_the_case_casework_opens() -> None:
    """The confirmation's link names the case id casework derives for the application (not a copy of the rule)."""
    from casework.cases import case_id_for

    application_id = uuid.uuid4()
    assert case_id_of(application_id) == case_id_for(application_id)
    assert case_id_of(application_id) == derived_id("case", "application", str(application_id))
