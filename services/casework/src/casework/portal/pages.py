"""The client portal's pages: opening a link, the case's status in plain words, re-accepting a new agreement
version, and "send me a new link". Client-facing (their own base template, never the console's), in English and
Simplified Chinese: the link's language, or the one the client switches to."""

from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from agency_chassis.portal_links import ExpiredPortalLink, InvalidPortalLink, PortalLinks
from agency_shared.events import utc_now
from casework.access import client_address
from casework.agreements_client import AgreementsClient, AgreementsRefused, AgreementsUnavailable
from casework.app_state import adapters_of
from casework.cases import Case
from casework.i18n import LANGUAGE_NAMES, LOCALES, ConsoleLocale, chosen_locale, translate
from casework.portal.link_requests import FormTokens, InvalidEmail, checked_email
from casework.portal.reacceptance import AgreementMoved, NotRecorded, reaccept, reacceptance_of
from casework.portal.session import COOKIE, PATH, PortalClient, PortalPoster, PortalRefusal, portal_links
from casework.settings import CaseworkSettings
from casework.storage import CaseErased
from casework.web import templates

router = APIRouter(tags=["portal"], include_in_schema=False)
LANGUAGE_COOKIE = "portal_lang"
# Every portal page: no Referer leaves it (a link's token must never travel), nothing cached, never framed.
HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
}
# Statuses whose client text needs a value the case may lack: the text without it then.
NEEDS = {"awaiting_fee": "fee", "tencent_requested_info": "deadline", "renewal_due": "expires"}
# What a refusal is called on its page, and whether the page offers to send a new link.
OFFERS_NEW_LINK = frozenset({"missing", "invalid", "expired", "revoked", "csrf"})
FormText = Annotated[str, Form()]


def _settings(request: Request) -> CaseworkSettings:
    settings: CaseworkSettings = request.app.state.settings
    return settings


def _agreements(request: Request) -> AgreementsClient:
    agreements: AgreementsClient = request.app.state.agreements
    return agreements


def _form_tokens(request: Request) -> FormTokens:
    tokens: FormTokens = request.app.state.portal_form_tokens
    return tokens


def portal_locale(request: Request, link_locale: str | None = None) -> ConsoleLocale:
    """The language asked for now (``?lang=``), else the one the client chose before, else the link's, else the
    browser's."""
    asked = request.query_params.get("lang")
    if asked in LOCALES:
        return asked
    chosen = request.cookies.get(LANGUAGE_COOKIE)
    if chosen in LOCALES:
        return chosen
    if link_locale in LOCALES:
        return link_locale
    return chosen_locale(None, request.headers.get("accept-language"))


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    status_code: int = 200,
    link_locale: str | None = None,
) -> HTMLResponse:
    locale = portal_locale(request, link_locale)

    def t(key: str, **values: object) -> str:
        return translate(key, locale, **values)

    page = {"locale": locale, "languages": LANGUAGE_NAMES, "t": t, **(context or {})}
    response = templates.TemplateResponse(request, template, page, status_code=status_code)
    _portal_response(request, response)
    return response


def _portal_response(request: Request, response: Response) -> Response:
    response.headers.update(HEADERS)
    asked = request.query_params.get("lang")
    if asked in LOCALES:
        response.set_cookie(
            LANGUAGE_COOKIE, asked, max_age=365 * 86_400, path=PATH, httponly=True, samesite="lax",
            secure=_settings(request).session_cookie_secure,
        )  # fmt: skip
    return response


def _day(value: date, locale: str) -> str:
    return f"{value.year}年{value.month}月{value.day}日" if locale == "zh-CN" else value.isoformat()


def status_words(case: Case, locale: ConsoleLocale, fee: str) -> tuple[str, str]:
    """What the client is told of the case's status, and what is needed next: fixed text per status (never a staff
    reason or note), with the consultant's name, the fee, Tencent's deadline and the renewal date."""
    values = {
        "consultant": case.owner_name or "",
        "fee": fee,
        "deadline": _day(case.tencent_deadline, locale) if case.tencent_deadline else "",
        "expires": _day(case.expires_at.date(), locale) if case.expires_at else "",
        "rejection": translate(f"portal.rejection.{case.rejection_reason or 'other'}", locale),
    }
    status = case.status
    if (status in NEEDS and not values[NEEDS[status]]) or (status == "triage" and not case.owner_name):
        status = f"{status}_unknown"
    return (
        translate(f"portal.status.{status}", locale, **values),
        translate(f"portal.next.{case.status}", locale, **values),
    )


@router.get("/portal/open")
async def open_link(request: Request, t: str = "") -> Response:
    """Check the link's token and keep it in the session cookie (out of the address bar), then show the status."""
    links: PortalLinks = portal_links(request)
    try:
        claim = links.check(t[:4096], utc_now())
    except ExpiredPortalLink as exc:
        raise PortalRefusal("expired", 410, exc.claim.locale) from exc
    except InvalidPortalLink as exc:
        raise PortalRefusal("invalid", 401) from exc
    case = await adapters_of(request).cases.get(claim.case_id)
    if case is not None and case.erased_at is not None:
        raise PortalRefusal("gone", 410, claim.locale)
    if case is not None and claim.generation != case.portal_generation:
        raise PortalRefusal("revoked", 410, claim.locale)
    response = RedirectResponse(PATH, status_code=303)
    remaining = int((claim.expires_at - utc_now()).total_seconds())
    response.set_cookie(
        COOKIE, t, max_age=max(remaining, 1), path=PATH, httponly=True, samesite="lax",
        secure=_settings(request).session_cookie_secure,
    )  # fmt: skip
    # The link's language, unless the client chose one here before.
    if request.cookies.get(LANGUAGE_COOKIE) not in LOCALES:
        response.set_cookie(
            LANGUAGE_COOKIE, claim.locale, max_age=365 * 86_400, path=PATH, httponly=True, samesite="lax",
            secure=_settings(request).session_cookie_secure,
        )  # fmt: skip
    return _portal_response(request, response)


@router.get("/portal")
async def status_page(request: Request, visitor: PortalClient) -> Response:
    case = visitor.case
    locale = portal_locale(request, visitor.claim.locale)
    status, needed = status_words(case, locale, _settings(request).verification_fee)
    agreement = await reacceptance_of(case, _agreements(request), adapters_of(request).cases)
    context = {
        # The documents page's checklist, summarised (each item's label, state and the revision's reason).
        "checklist": await adapters_of(request).documents.items_of(case.id),
        "case": case,
        "status_text": status,
        "next_text": needed,
        "consultant": case.owner_name,
        "agreement": agreement,
        "csrf_token": visitor.csrf_token,
    }
    return render(request, "portal_status.html", context, link_locale=visitor.claim.locale)


@router.post("/portal/agreement")
async def accept_agreement(
    request: Request,
    visitor: PortalPoster,
    version: FormText = "",
    sha256: FormText = "",
    accept: FormText = "",
) -> Response:
    """The client accepts the current agreement version (the checkbox ticked, the version and text the page showed)."""
    case = visitor.case
    if case.application_id is None:
        return _problem(request, visitor.claim.locale, 404, "portal.problem.no_agreement")
    if accept != "yes":
        return _problem(request, visitor.claim.locale, 422, "portal.problem.accept_required", field="accept")
    user_agent = request.headers.get("user-agent", "")
    try:
        await reaccept(
            case,
            version.strip()[:100],
            sha256.strip()[:100],
            client_address(request) or "",
            user_agent,
            utc_now(),
            _agreements(request),
            adapters_of(request).cases,
            request.app.state.publish,
        )
    except AgreementMoved:
        return _problem(request, visitor.claim.locale, 409, "portal.problem.agreement_moved", field="version")
    except (AgreementsUnavailable, AgreementsRefused, NotRecorded):
        return _problem(request, visitor.claim.locale, 503, "portal.problem.try_again")
    except CaseErased:  # erased while this request was under way: as any later request of the session sees it
        raise PortalRefusal("gone", 410, visitor.claim.locale) from None
    return _portal_response(request, RedirectResponse(f"{PATH}?accepted=1", status_code=303))


@router.get("/portal/link")
async def link_form(request: Request) -> Response:
    return render(request, "portal_link.html", {"form_token": _form_tokens(request).issue()})


@router.post("/portal/link")
async def request_link(request: Request, email: FormText = "", form_token: FormText = "") -> Response:
    """Send a new link to ``email`` if it has open cases; the same answer whether it has or not."""
    tokens = _form_tokens(request)
    if not tokens.valid(form_token[:1000]):
        context = {"form_token": tokens.issue(), "error": "form_expired", "field": "form_token"}
        return render(request, "portal_link.html", context, status_code=403)
    try:
        address = checked_email(email)
    except InvalidEmail as error:
        context = {"form_token": tokens.issue(), "error": error.reason, "field": "email", "email": email[:254]}
        return render(request, "portal_link.html", context, status_code=422)
    requests = adapters_of(request).link_requests
    if not await requests.within_limits(client_address(request), address):
        context = {"form_token": tokens.issue(), "error": "too_many", "field": "email"}
        return render(request, "portal_link.html", context, status_code=429)
    requests.request(address, f"portal-link-{utc_now().strftime('%Y%m%dT%H%M%S')}-{tokens.issue()[-12:]}")
    return render(request, "portal_link_sent.html", status_code=202)


def _problem(request: Request, link_locale: str, status: int, key: str, field: str | None = None) -> Response:
    context = {"message_key": key, "field": field, "back": PATH}
    return render(request, "portal_problem.html", context, status_code=status, link_locale=link_locale)


async def refused(request: Request, refusal: Exception) -> Response:
    """A request without a valid portal session: a clear page in the client's language (the one chosen, else
    the browser's) offering to send a new link; a link that cannot work any more leaves no cookie behind."""
    assert isinstance(refusal, PortalRefusal)
    context = {
        "reason": refusal.reason,
        "offers_new_link": refusal.reason in OFFERS_NEW_LINK,
        "form_token": _form_tokens(request).issue(),
    }
    response = render(request, "portal_refused.html", context, status_code=refusal.status, link_locale=refusal.locale)
    if refusal.reason in ("invalid", "expired", "revoked", "gone"):
        response.delete_cookie(COOKIE, path=PATH, httponly=True, samesite="lax",
                               secure=_settings(request).session_cookie_secure)  # fmt: skip
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = 'PortalLink realm="client portal"'
    return response


def install(app: FastAPI) -> None:
    app.include_router(router)
    # The portal's own stylesheet, under /portal like everything the public ingress routes to it.
    app.mount(f"{PATH}/static", StaticFiles(directory=Path(__file__).parents[1] / "static" / "portal"), name="portal")
    app.add_exception_handler(PortalRefusal, refused)
