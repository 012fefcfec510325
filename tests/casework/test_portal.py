"""The client portal on real servers (RabbitMQ, SecantusDB): a personal link opens the client's status page in their
language; expired, tampered and revoked links and sessions are refused with a page offering a new link; a lost link
is asked for again with the same answer for every address (an event only for a known one); a new agreement version
is re-accepted with the form's CSRF token and announced."""

import json
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import agreements.main
from agency_chassis.portal_links import PortalLinks
from agency_shared.events import AgreementReaccepted, Event, PortalLinkRequested, utc_now
from agency_shared.topology import AGREEMENTS_AGREEMENT_REACCEPTED, NOTIFICATIONS_PORTAL_LINK_REQUESTED
from agreements.settings import AgreementsSettings
from casework.access import Role
from casework.cases import Case, HistoryEntry
from casework.portal.reacceptance import NotRecorded, publish_unannounced_reacceptances, reaccept
from casework.settings import CaseworkSettings
from casework.storage import CaseErased
from tests.support.broker import depth, take
from tests.support.casework import Casework, running_casework
from tests.support.portal import (
    NEW_CLAUSE,
    NEW_VERSION,
    PortalBrowser,
    catalog_with_new_version,
    csrf_token_in,
    form_token_in,
    portal_browser,
    served_without_lifespan,
)
from tests.support.settings import settings_with

CONSULTANT = "王小明"
INTERNAL_NOTE = "INTERNAL: the client's seal looked forged, check with the notary"
LINK_QUEUE = NOTIFICATIONS_PORTAL_LINK_REQUESTED.name


@pytest.fixture
async def casework_app(casework_settings: CaseworkSettings) -> AsyncIterator[Casework]:
    async with running_casework(casework_settings) as cw:
        yield cw


@pytest.fixture
async def with_agreements(
    casework_settings: CaseworkSettings, agreements_settings: AgreementsSettings, tmp_path: Path
) -> AsyncIterator[Casework]:
    """casework reading a real agreements' public API, whose catalog has a version 2 in effect."""
    folder = catalog_with_new_version(tmp_path / "agreements")
    agreements_app = agreements.main.create_app(settings_with(agreements_settings, agreements_dir=folder))
    async with served_without_lifespan(agreements_app) as agreements_url:
        settings = settings_with(casework_settings, agreements_url=agreements_url)
        async with running_casework(settings) as cw:
            yield cw


def links(cw: Casework) -> PortalLinks:
    found: PortalLinks = cw.app.state.portal_links
    return found


def link_to(cw: Casework, case: Case, days_ago: float = 0, generation: int = 0) -> str:
    token = links(cw).issue(case.id, generation, case.locale, utc_now() - timedelta(days=days_ago))
    return f"/portal/open?t={token}"


async def client_case(cw: Casework, status: str = "triage", **fields: Any) -> Case:
    """A zh-CN application's case (in triage), owned by a consultant, with a staff note the client must never see."""
    case = await cw.open_application(
        status, locale="zh-CN", owner="staff-1", owner_name=CONSULTANT, client_name="李伟", **fields
    )
    entry = HistoryEntry(key="note:0", kind="note", at=utc_now(), staff="op@agency.example", text=INTERNAL_NOTE)
    await cw.cases.change(case, {}, entry)
    return await cw.case(case.id)


async def opened(cw: Casework, browser: PortalBrowser, case: Case) -> None:
    answer = await browser.open(link_to(cw, case))
    assert answer.status_code == 303, answer.text
    assert browser.session is not None


async def test_a_link_opens_a_session_and_the_status_page_in_the_clients_language(casework_app: Casework) -> None:
    case = await client_case(casework_app)
    async with portal_browser(casework_app.app) as browser:
        answer = await browser.open(link_to(casework_app, case))
        assert answer.status_code == 303
        assert answer.headers["location"] == "/portal"
        assert answer.headers["referrer-policy"] == "no-referrer"
        cookie = next(c for c in answer.headers.get_list("set-cookie") if c.startswith("portal="))
        attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
        assert {"httponly", "secure", "path", "samesite"} <= attributes
        assert "Path=/portal" in cookie
        assert "SameSite=lax" in cookie

        page = await browser.get("/portal")
    assert page.status_code == 200, page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"
    assert '<html lang="zh-CN">' in page.text
    assert f"您的顾问 {CONSULTANT} 将负责跟进。" in page.text
    assert case.reference in page.text
    assert 'href="/portal/documents"' in page.text
    assert INTERNAL_NOTE not in page.text
    assert "op@agency.example" not in page.text


async def test_the_client_switches_language_and_it_sticks(casework_app: Casework) -> None:
    case = await client_case(casework_app)
    async with portal_browser(casework_app.app) as browser:
        await opened(casework_app, browser, case)
        assert '<html lang="zh-CN">' in (await browser.get("/portal")).text
        english = await browser.get("/portal?lang=en")
        assert "A consultant, 王小明, is handling your application." in english.text
        assert browser.cookies["portal_lang"] == "en"
        again = await browser.get("/portal")
    assert '<html lang="en">' in again.text


async def test_a_link_to_a_case_not_opened_yet_says_it_is_being_recorded(casework_app: Casework) -> None:
    not_yet = uuid.uuid4()
    token = links(casework_app).issue(not_yet, 0, "zh-CN", utc_now())
    async with portal_browser(casework_app.app) as browser:
        assert (await browser.open(f"/portal/open?t={token}")).status_code == 303
        page = await browser.get("/portal")
    assert page.status_code == 200
    assert 'data-reason="recording"' in page.text
    assert "正在记录您的申请" in page.text


async def test_an_expired_link_is_refused_with_the_new_link_form(casework_app: Casework) -> None:
    case = await client_case(casework_app)
    days = casework_app.settings.portal_link_days
    async with portal_browser(casework_app.app) as browser:
        answer = await browser.open(link_to(casework_app, case, days_ago=days + 0.01))
    assert answer.status_code == 410
    assert 'data-reason="expired"' in answer.text
    assert 'action="/portal/link"' in answer.text
    assert 'name="form_token"' in answer.text
    assert browser.session is None
    assert "此链接已过期" in answer.text  # the link's language


@pytest.mark.parametrize(
    "tamper",
    [
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),  # the signature
        lambda token: "x" + token[1:],  # the payload
        lambda token: PortalLinks("another secret of 32 characters!!", timedelta(days=1)).issue(
            uuid.uuid4(), 0, "en", utc_now()
        ),
        lambda token: "",
        lambda token: token + "\r\nSet-Cookie: portal=evil",
        lambda token: "中文" * 3000,
    ],
    ids=["signature", "payload", "other-secret", "empty", "crlf", "huge"],
)
async def test_a_tampered_link_is_refused(casework_app: Casework, tamper: object) -> None:
    case = await client_case(casework_app)
    token = link_to(casework_app, case).removeprefix("/portal/open?t=")
    async with portal_browser(casework_app.app) as browser:
        answer = await browser.http.get("/portal/open", params={"t": tamper(token)})  # type: ignore[operator]
    assert answer.status_code == 401
    assert 'data-reason="invalid"' in answer.text
    assert "portal=evil" not in answer.headers.get("set-cookie", "")
    assert "此链接无效" in answer.text or "This link does not work" in answer.text


async def test_no_session_is_refused_in_the_browsers_language(casework_app: Casework) -> None:
    async with portal_browser(casework_app.app) as browser:
        answer = await browser.http.get("/portal", headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    assert answer.status_code == 401
    assert 'data-reason="missing"' in answer.text
    assert "请打开您的个人链接" in answer.text


async def test_staff_revoke_the_links_and_the_live_session_ends_at_once(casework_app: Casework) -> None:
    case = await client_case(casework_app)
    old_link = link_to(casework_app, case)
    async with portal_browser(casework_app.app) as browser:
        await opened(casework_app, browser, case)
        assert (await browser.get("/portal")).status_code == 200
        async with casework_app.signed_in(Role.OPERATOR) as staff:
            page = await staff.http.get(f"/console/cases/{case.id}")
            assert f'action="/console/cases/{case.id}/portal/revoke"' in page.text
            current = await casework_app.case(case.id)
            revoked = await staff.post(f"/console/cases/{case.id}/portal/revoke", {"version": str(current.version)})
            assert revoked.status_code == 303, revoked.text
            stale = await staff.post(f"/console/cases/{case.id}/portal/revoke", {"version": str(current.version)})
            assert stale.status_code == 409
        after = await browser.get("/portal")
        assert after.status_code == 410
        assert 'data-reason="revoked"' in after.text
        assert "此链接已失效" in after.text
        assert browser.session is None  # the refused session's cookie is removed
        reopened = await browser.http.get(old_link)
        assert reopened.status_code == 410
        fresh = await browser.open(link_to(casework_app, case, generation=1))
        assert fresh.status_code == 303
        assert (await browser.get("/portal")).status_code == 200
    stored = await casework_app.case(case.id)
    assert stored.portal_generation == 1
    assert [line.kind for line in stored.history].count("portal_revoked") == 1
    audited = [entry async for entry in casework_app.access.audit.all() if entry.action == "portal_revoke"]
    assert [(entry.subject, entry.detail) for entry in audited] == [(str(case.id), {"generation": "1"})]


async def test_a_viewer_cannot_revoke(casework_app: Casework) -> None:
    case = await client_case(casework_app)
    async with casework_app.signed_in(Role.VIEWER) as viewer:
        refused = await viewer.post(f"/console/cases/{case.id}/portal/revoke", {"version": str(case.version)})
    assert refused.status_code == 403
    assert (await casework_app.case(case.id)).portal_generation == 0


async def test_a_form_without_the_right_csrf_token_is_refused(with_agreements: Casework, amqp_url: str) -> None:
    case = await client_case(with_agreements)
    async with portal_browser(with_agreements.app) as browser:
        await opened(with_agreements, browser, case)
        page = await browser.get("/portal")
        form = {"version": NEW_VERSION, "sha256": "0" * 64, "accept": "yes"}
        for token in ("", "0" * 64, csrf_token_in(page.text) + "x"):
            refused = await browser.post("/portal/agreement", {**form, "csrf_token": token})
            assert refused.status_code == 403
            assert 'data-reason="csrf"' in refused.text
    assert await depth(amqp_url, AGREEMENTS_AGREEMENT_REACCEPTED.name) == 0


async def test_the_client_reaccepts_a_new_agreement_version(with_agreements: Casework, amqp_url: str) -> None:
    case = await client_case(with_agreements)
    async with portal_browser(with_agreements.app) as browser:
        await opened(with_agreements, browser, case)
        page = await browser.get("/portal")
        assert 'id="reacceptance"' in page.text
        assert NEW_CLAUSE.strip().split(" 通过")[0] in page.text  # the new version's text is shown
        assert "通过客户门户上传的材料仅用于本次认证。" in page.text
        sha256 = _hidden(page.text, "sha256")
        csrf = csrf_token_in(page.text)

        unticked = await browser.post("/portal/agreement", {"csrf_token": csrf, "version": NEW_VERSION,
                                                            "sha256": sha256})  # fmt: skip
        assert unticked.status_code == 422
        assert 'data-field="accept"' in unticked.text
        moved = await browser.post("/portal/agreement", {"csrf_token": csrf, "version": "1", "sha256": sha256,
                                                         "accept": "yes"})  # fmt: skip
        assert moved.status_code == 409
        assert 'data-field="version"' in moved.text
        assert await depth(amqp_url, AGREEMENTS_AGREEMENT_REACCEPTED.name) == 0

        form = {"csrf_token": csrf, "version": NEW_VERSION, "sha256": sha256, "accept": "yes"}
        accepted = await browser.post("/portal/agreement", form)
        assert accepted.status_code == 303, accepted.text
        again = await browser.post("/portal/agreement", form)  # a double submit: the same event
        assert again.status_code == 303
        after = await browser.get("/portal")
    assert 'id="reacceptance-recorded"' in after.text
    assert 'action="/portal/agreement"' not in after.text
    [first, second] = await take(amqp_url, AGREEMENTS_AGREEMENT_REACCEPTED.name, count=2)
    event = AgreementReaccepted.model_validate_json(first.body)
    assert AgreementReaccepted.model_validate_json(second.body).event_id == event.event_id
    assert event.data.application_id == case.application_id
    assert event.data.agreement_version == NEW_VERSION
    assert event.data.agreement_sha256 == sha256
    assert event.data.client_ip == "198.51.100.23"
    assert event.data.user_agent == 'Mozilla/5.0 (portal test; "quoted" <b>ua</b>)'
    assert event.data.locale == "zh-CN"
    stored = await with_agreements.case(case.id)
    assert [line.kind for line in stored.history].count("reaccepted") == 1


async def test_a_reacceptance_the_broker_did_not_confirm_is_announced_by_the_sweep_once(
    with_agreements: Casework,
) -> None:
    case = await client_case(with_agreements)
    agreements_client = with_agreements.app.state.agreements
    current = await agreements_client.current_agreement()
    published: list[AgreementReaccepted] = []

    async def refused(event: Event) -> None:
        raise ConnectionError("the broker did not confirm")

    async def confirmed(event: Event) -> None:
        assert isinstance(event, AgreementReaccepted)
        published.append(event)

    cases = with_agreements.cases
    accepted_at = utc_now() - timedelta(minutes=5)
    with pytest.raises(NotRecorded):
        await reaccept(case, current["version"], current["sha256"], "198.51.100.7", "UA", accepted_at,
                       agreements_client, cases, refused)  # fmt: skip
    assert await publish_unannounced_reacceptances(cases, confirmed, utc_now()) == 1
    assert await publish_unannounced_reacceptances(cases, confirmed, utc_now()) == 0  # announced: not again
    [event] = published
    assert event.data.application_id == case.application_id
    assert event.data.agreement_version == current["version"]
    assert event.data.client_ip == "198.51.100.7"


async def test_a_reacceptance_under_way_during_an_erasure_keeps_nothing(with_agreements: Casework) -> None:
    """The client's POST passed its session check, then staff erased the case: whichever finishes first, neither
    the client's address nor their browser stays, and nothing is announced."""
    agreements_client = with_agreements.app.state.agreements
    current = await agreements_client.current_agreement()
    cases = with_agreements.cases
    kept = cases._reacceptances  # what the erasure must leave empty
    published: list[Event] = []

    async def publish(event: Event) -> None:
        published.append(event)

    # The erasure first, the re-acceptance (read before it) after.
    early = await client_case(with_agreements)
    assert early.application_id is not None
    await cases.erase(early.application_id, utc_now())
    with pytest.raises(CaseErased):
        await reaccept(early, current["version"], current["sha256"], "198.51.100.7", "UA", utc_now(),
                       agreements_client, cases, publish)  # fmt: skip
    # The re-acceptance first, the erasure after.
    late = await client_case(with_agreements)
    assert late.application_id is not None
    await reaccept(late, current["version"], current["sha256"], "198.51.100.8", "UA", utc_now(),
                   agreements_client, cases, publish)  # fmt: skip
    assert await kept.count_documents({"case_id": str(late.id)}) == 1
    await cases.erase(late.application_id, utc_now())
    assert await kept.count_documents({}) == 0
    assert [event.data.application_id for event in published] == [late.application_id]  # type: ignore[attr-defined]


async def test_a_known_and_an_unknown_address_get_the_same_answer(casework_app: Casework, amqp_url: str) -> None:
    case = await client_case(casework_app, client_email="Li.Wei@MapleTea.example")
    requests = casework_app.app.state.adapters.link_requests
    async with portal_browser(casework_app.app) as browser:
        form = await browser.http.get("/portal/link")
        assert form.status_code == 200
        unknown = await browser.post(
            "/portal/link", {"email": "nobody@mapletea.example", "form_token": form_token_in(form.text)}
        )
        await requests.settled()
        assert await depth(amqp_url, LINK_QUEUE) == 0
        known = await browser.post(
            "/portal/link", {"email": " li.wei@mapletea.EXAMPLE ", "form_token": form_token_in(form.text)}
        )
        await requests.settled()
    assert unknown.status_code == known.status_code == 202
    assert unknown.text == known.text
    [message] = await take(amqp_url, LINK_QUEUE)
    assert await depth(amqp_url, LINK_QUEUE) == 0
    event = PortalLinkRequested.model_validate_json(message.body)
    assert event.data.case_id == case.id
    assert event.data.email == "Li.Wei@MapleTea.example"
    assert event.data.name == "李伟"
    assert event.data.locale == "zh-CN"
    assert event.data.reference == case.reference
    # The case's current link generation, not a working link: notifications signs one as it writes the email
    # (tests/notifications/test_portal_emails.py), so none waits in the broker's queues or dead letters.
    assert (event.data.portal_generation, event.data.link, event.data.expires_at) == (0, None, None)
    assert b"/portal/open" not in message.body


async def test_an_erased_or_closed_case_gets_no_link(casework_app: Casework, amqp_url: str) -> None:
    await client_case(casework_app, client_email="gone@mapletea.example", status="withdrawn")
    requests = casework_app.app.state.adapters.link_requests
    assert await requests.send_links("gone@mapletea.example", "test") == 0
    assert await depth(amqp_url, LINK_QUEUE) == 0


@pytest.mark.parametrize(
    ("email", "reason"),
    [
        ("li.wei@mapletea.example\r\nBcc: victim@evil.example", "control"),
        ("a" * 10_240 + "@mapletea.example", "too_long"),
        ("", "required"),
        ("李伟 <li.wei@mapletea.example>", "not_an_address"),
        ("not an address", "not_an_address"),
    ],
    ids=["crlf", "10kb", "empty", "display-name", "no-at"],
)
async def test_a_bad_address_is_a_clear_error_and_nothing_is_sent(
    casework_app: Casework, amqp_url: str, email: str, reason: str
) -> None:
    await client_case(casework_app, client_email="li.wei@mapletea.example")
    async with portal_browser(casework_app.app) as browser:
        form = await browser.http.get("/portal/link")
        answer = await browser.post("/portal/link", {"email": email, "form_token": form_token_in(form.text)})
        await casework_app.app.state.adapters.link_requests.settled()
    assert answer.status_code == 422
    assert 'data-field="email"' in answer.text
    assert 'aria-invalid="true"' in answer.text
    expected = {"control": "control characters", "too_long": "254", "required": "please enter",
                "not_an_address": "not an email address"}[reason]  # fmt: skip
    assert expected in answer.text
    assert await depth(amqp_url, LINK_QUEUE) == 0


async def test_the_form_needs_its_signed_token(casework_app: Casework, amqp_url: str) -> None:
    await client_case(casework_app, client_email="li.wei@mapletea.example")
    async with portal_browser(casework_app.app) as browser:
        for token in ("", "forged", json.dumps({"a": 1})):
            answer = await browser.post("/portal/link", {"email": "li.wei@mapletea.example", "form_token": token})
            assert answer.status_code == 403
            assert 'data-field="form_token"' in answer.text
        await casework_app.app.state.adapters.link_requests.settled()
    assert await depth(amqp_url, LINK_QUEUE) == 0


async def test_requests_for_one_address_are_limited(casework_app: Casework, amqp_url: str) -> None:
    limit = casework_app.settings.portal_link_requests_per_email_hour
    answers = []
    async with portal_browser(casework_app.app) as browser:
        form = await browser.http.get("/portal/link")
        for _ in range(limit + 1):
            data = {"email": "someone@elsewhere.example", "form_token": form_token_in(form.text)}
            answers.append((await browser.post("/portal/link", data)).status_code)
    assert answers == [202] * limit + [429]


def _hidden(page: str, name: str) -> str:
    marker = f'name="{name}" value="'
    start = page.index(marker) + len(marker)
    return page[start : page.index('"', start)]
