"""The page a verification link opens, in English and Simplified Chinese: GET shows a button, only its POST confirms.

Mail scanners and link previews fetch every link in an email, so opening the link verifies
nothing; the form post of the button does. Same templates, headers and Content-Security-Policy
as the form pages (no inline script), and the same origin check and rate limit as a form post.
"""

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from agency_chassis.email_verification import ExpiredToken, InvalidToken, VerificationClaim
from agency_chassis.publishing import PublishFailed
from agency_shared.events import utc_now
from agency_shared.forms import Locale
from intake.deps import Context, Guard, Settings
from intake.guards import FORM, BodyTooLarge, MalformedBody, OriginRefused, RateLimited, UnsupportedMediaType
from intake.i18n import LOCALES, TEXT, pick_locale
from intake.pages import FORM_POST, PAGE_SECURITY, html_responses
from intake.verification import AddressVerifier

logger = logging.getLogger(__name__)
router = APIRouter(tags=["email verification"])
_templates = Environment(loader=PackageLoader("intake", "templates"), autoescape=select_autoescape(default=True))

VERIFY_TEXT: dict[Locale, dict[str, str]] = {
    "en": {
        "verify_title": "Confirm your email address",
        "verify_intro": (
            "Press the button to confirm that this is your email address. We will then send you the confirmation "
            "of your application with the receipt of the Service Agreement you accepted."
        ),
        "verify_button": "Confirm my email address",
        "verify_why_button": "Opening the link alone confirms nothing: only the button does.",
        "verified": "Thank you! Your email address is confirmed.",
        "verified_next": "The confirmation of your application, with your receipt, is on its way to your inbox.",
        "verify_expired": "This link has expired.",
        "verify_expired_next": (
            "Links work for a limited time. Reply to the email that brought you here and we will help you."
        ),
        "verify_invalid": "This link is not valid.",
        "verify_invalid_next": (
            "It may have been cut short or changed. Open it again from the email, or copy the whole link."
        ),
        "verify_unavailable": "We could not confirm your address just now.",
        "verify_unavailable_next": "Nothing was lost: please press the button again in a moment.",
        "verify_refused": "Too many attempts, or a request from another site.",
        "verify_refused_next": "Please wait a minute, then open the link from the email again.",
        "verify_intro_enquiry": (
            "Press the button to confirm that this is your email address. Your enquiry then goes to our team, "
            "who will reply to this address."
        ),
        "verified_next_enquiry": "Your enquiry is now with our team; we will reply within two working days.",
    },
    "zh-CN": {
        "verify_title": "确认您的邮箱地址",
        "verify_intro": (
            "请点击下方按钮，确认这是您的邮箱地址。确认后，我们会把申请确认邮件和您所接受的服务协议的凭证发送给您。"
        ),
        "verify_button": "确认我的邮箱地址",
        "verify_why_button": "仅打开链接不会确认任何内容，只有点击按钮才会确认。",
        "verified": "谢谢！您的邮箱地址已确认。",
        "verified_next": "申请确认邮件及您的凭证正在发送到您的邮箱。",
        "verify_expired": "此链接已过期。",
        "verify_expired_next": "链接仅在有限时间内有效。请直接回复带您来到这里的邮件，我们会协助您。",
        "verify_invalid": "此链接无效。",
        "verify_invalid_next": "链接可能不完整或已被改动。请从邮件中重新打开，或复制完整的链接。",
        "verify_unavailable": "我们暂时无法确认您的邮箱地址。",
        "verify_unavailable_next": "没有任何信息丢失，请稍后再次点击按钮。",
        "verify_refused": "尝试次数过多，或请求来自其他网站。",
        "verify_refused_next": "请稍等一分钟，然后从邮件中重新打开链接。",
        "verify_intro_enquiry": (
            "请点击下方按钮，确认这是您的邮箱地址。确认后，您的咨询将转交我们的团队，我们会回复到此邮箱。"
        ),
        "verified_next_enquiry": "您的咨询已转交我们的团队，我们会在两个工作日内回复。",
    },
}
# The status of each outcome: an expired link is gone for good (410), a mangled one a bad request (400).
STATUS = {"confirm": 200, "verified": 200, "expired": 410, "invalid": 400, "unavailable": 503}


def _verifier(request: Request) -> AddressVerifier:
    verifier: AddressVerifier = request.app.state.verifier
    return verifier


def _texts(locale: Locale, claim: VerificationClaim | None) -> dict[str, str]:
    """The page's texts; an enquiry's link says what happens to the enquiry instead of an application's receipt."""
    texts = {**TEXT[locale], **VERIFY_TEXT[locale]}
    if claim is not None and claim.kind == "enquiry":
        texts["verify_intro"] = texts["verify_intro_enquiry"]
        texts["verified_next"] = texts["verified_next_enquiry"]
    return texts


def _page(
    state: str,
    locale: Locale,
    token: str = "",
    status: int | None = None,
    headers: dict[str, str] | None = None,
    claim: VerificationClaim | None = None,
) -> HTMLResponse:
    html = _templates.get_template("verify.html").render(
        locale=locale,
        t=_texts(locale, claim),
        languages=[(code, TEXT[code]["language_name"]) for code in LOCALES],
        error_texts={},
        state=state,
        token=token,
    )
    return HTMLResponse(html, status_code=status or STATUS[state], headers={**PAGE_SECURITY, **(headers or {})})


def _locale(request: Request, lang: str | None, claim: VerificationClaim | None) -> Locale:
    """``?lang=`` (the page's language switch) first, then the language the link was sent in, then the browser's."""
    if lang is None and claim is not None:
        return claim.locale
    return pick_locale(lang, request.headers.get("accept-language"))


def _claim_or_state(verifier: AddressVerifier, token: str) -> tuple[VerificationClaim | None, str]:
    try:
        return verifier.read(token, utc_now()), "confirm"
    except ExpiredToken as exc:
        return exc.claim, "expired"
    except InvalidToken:
        return None, "invalid"


VERIFY_PAGES: dict[int | str, dict[str, Any]] = html_responses(200, 400, 410)


@router.get(
    "/verify/{token}", response_class=HTMLResponse, summary="The page of a verification link", responses=VERIFY_PAGES
)
async def verification_page(request: Request, token: str, lang: str | None = None) -> HTMLResponse:
    """Shows the confirm button (nothing is verified by opening the link); 410 if it expired, 400 if not valid."""
    claim, state = _claim_or_state(_verifier(request), token)
    return _page(state, _locale(request, lang, claim), token, claim=claim)


@router.post(
    "/verify/{token}",
    response_class=HTMLResponse,
    summary="Confirm the email address (the button of the verification page)",
    openapi_extra=FORM_POST,
    responses=html_responses(200, 400, 403, 410, 413, 415, 422, 429, 503),
)
async def confirm_address(
    request: Request, token: str, context: Context, guard: Guard, settings: Settings, lang: str | None = None
) -> HTMLResponse:
    """Checks the link and publishes email.verified (confirmed by the broker), then thanks the applicant.

    A second press is the same event (its id is derived from the application) and the same page.
    """
    verifier = _verifier(request)
    claim, state = _claim_or_state(verifier, token)
    locale = _locale(request, lang, claim)
    if state != "confirm":
        return _page(state, locale, token)
    try:
        await guard.admit(request, context.client_ip, accepted=(FORM,))
        event = await verifier.confirm(token, context, utc_now())
    except (ExpiredToken, InvalidToken):  # it expired in between: read it again for the right page
        claim, state = _claim_or_state(verifier, token)
        return _page(state, locale, token)
    except PublishFailed:
        return _page("unavailable", locale, token, headers={"Retry-After": str(settings.retry_after_seconds)})
    except RateLimited as exc:
        return _page("refused", locale, token, status=429, headers={"Retry-After": str(exc.retry_after)})
    except OriginRefused:
        return _page("refused", locale, token, status=403)
    except (BodyTooLarge, UnsupportedMediaType, MalformedBody) as exc:
        status = {BodyTooLarge: 413, UnsupportedMediaType: 415}.get(type(exc), 422)
        return _page("invalid", locale, token, status=status)
    if event.data.application_id is not None:
        logger.info(
            "application %s: address verified",
            event.data.application_id,
            extra={"application_id": str(event.data.application_id)},
        )
    else:
        logger.info("enquiry %s: address verified", event.data.enquiry_id)
    return _page("verified", locale, claim=claim)
