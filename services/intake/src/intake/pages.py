"""The forms as HTML pages, in English and Simplified Chinese, working with and without JavaScript."""

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from agency_chassis.publishing import PublishFailed
from agency_shared.agreement_documents import AgreementDocument
from agency_shared.forms import EnquiryService, Locale
from intake.accepting import FieldProblem, InvalidSubmission, Taken
from intake.deps import Context, Guard, IntakeService, Settings
from intake.guards import (
    FORM,
    BodyTooLarge,
    MalformedBody,
    OriginRefused,
    RateLimited,
    SubmissionGuard,
    UnsupportedMediaType,
)
from intake.i18n import ERRORS_ZH, LOCALES, TEXT, countries, error_message, pick_locale
from intake.idempotency import KeyReused, KeysUnavailable
from intake.settings import IntakeSettings
from intake.submission import AgreementNotCurrent, RequestContext

router = APIRouter(tags=["pages"])
_templates = Environment(loader=PackageLoader("intake", "templates"), autoescape=select_autoescape(default=True))

FORM_POST = {
    "requestBody": {
        "required": True,
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}},
            }
        },
    }
}


# The pages load only their own script and style and post only to intake; no other site may
# frame them (clickjacking). They embed an idempotency key, so no cache may keep them.
PAGE_SECURITY = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def html_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {s: {"description": "The page, showing the outcome", "content": {"text/html": {}}} for s in statuses}


def _render(
    template: str, locale: Locale, status: int = 200, headers: dict[str, str] | None = None, **context: Any
) -> HTMLResponse:
    context.setdefault("values", {})
    context.setdefault("errors", {})
    context.setdefault("outcome", None)
    context.setdefault("idempotency_key", str(uuid.uuid4()))
    context.setdefault("captcha", False)
    html = _templates.get_template(template).render(
        locale=locale,
        t=TEXT[locale],
        languages=[(code, TEXT[code]["language_name"]) for code in LOCALES],
        error_texts=ERRORS_ZH if locale == "zh-CN" else {},
        **context,
    )
    return HTMLResponse(html, status_code=status, headers={**PAGE_SECURITY, **(headers or {})})


def _application_page(locale: Locale, agreement: AgreementDocument, status: int = 200, **context: Any) -> HTMLResponse:
    return _render("application.html", locale, status, agreement=agreement, countries=countries(locale), **context)


def _contact_page(locale: Locale, status: int = 200, **context: Any) -> HTMLResponse:
    return _render("contact.html", locale, status, services=[s.value for s in EnquiryService], **context)


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _errors_by_field(problems: list[FieldProblem], locale: Locale, known: set[str]) -> dict[str, str]:
    """Each problem under the input it belongs to ("services.0" under "services")."""
    errors: dict[str, str] = {}
    for problem in problems:
        name = problem.field
        while name and name not in known:
            name = name.rpartition(".")[0]
        errors.setdefault(name or "form", error_message(locale, problem.type, problem.message))
    return errors


APPLICATION_FIELDS = {
    "account.type", "account.name", "account.description", "account.category",
    "operator.name", "operator.email", "operator.phone",
    "company.legal_name", "company.registration_number", "company.country", "company.address",
    "company.website", "company.industry", "notes", "agreement.accepted",
}  # fmt: skip
CONTACT_FIELDS = {"name", "email", "company", "services", "message"}


def _captcha(settings: IntakeSettings) -> bool:
    """Whether the pages show the ALTCHA widget (its script needs JavaScript; without, the forms post without it)."""
    return settings.captcha == "altcha"


@router.get("/", response_class=HTMLResponse, summary="The application form")
async def application_form(
    request: Request, intake: IntakeService, settings: Settings, lang: str | None = None
) -> HTMLResponse:
    locale = pick_locale(lang, request.headers.get("accept-language"))
    return _application_page(locale, intake.catalog.current(), captcha=_captcha(settings))


@router.get("/contact", response_class=HTMLResponse, summary="The enquiry form")
async def contact_form(request: Request, settings: Settings, lang: str | None = None) -> HTMLResponse:
    return _contact_page(pick_locale(lang, request.headers.get("accept-language")), captcha=_captcha(settings))


Render = Callable[..., HTMLResponse]
Take = Callable[[dict[str, Any], RequestContext], Awaitable[Taken]]


async def _post_form(
    request: Request, context: RequestContext, guard: SubmissionGuard, retry_after: int, lang: str | None,
    take: Take, render: Render, fields: set[str],
) -> HTMLResponse:  # fmt: skip
    """A plain form post: the same acceptance as the API, answered with the page showing the outcome."""
    locale = pick_locale(lang, request.headers.get("accept-language"))
    raw: dict[str, Any] = {}
    # Keeping the key when the page comes back with errors makes the corrected resubmission the same one.
    page = {"idempotency_key": context.idempotency_key or str(uuid.uuid4())}
    try:
        # The pages' own forms post form data; their JavaScript posts JSON to the API instead.
        raw = await guard.admit(request, context.client_ip, accepted=(FORM,))
        page["idempotency_key"] = str(raw.get("idempotency_key") or page["idempotency_key"])
        taken = await take(raw, context)
    except InvalidSubmission as exc:
        errors = _errors_by_field(exc.errors, locale, fields)
        return render(
            locale, 422, values=_flatten(raw), errors=errors, outcome="failure", detail=errors.get("form"), **page
        )
    except KeyReused:
        # Back, edit, send again: the key names the first submission. A fresh key makes this one new.
        reused, fresh = TEXT[locale]["key_reused"], str(uuid.uuid4())
        return render(locale, 422, values=_flatten(raw), outcome="failure", detail=reused, idempotency_key=fresh)
    except AgreementNotCurrent as exc:
        values = {k: v for k, v in _flatten(raw).items() if k != "agreement.accepted"}  # must be ticked again
        changed = TEXT[locale]["agreement_changed"]
        return render(locale, 409, agreement=exc.current, values=values, outcome="failure", detail=changed, **page)
    except (
        PublishFailed, KeysUnavailable, RateLimited, BodyTooLarge, UnsupportedMediaType, MalformedBody, OriginRefused
    ) as exc:  # fmt: skip
        status, detail, headers = _failure(exc, TEXT[locale], retry_after)
        return render(locale, status, headers=headers, values=_flatten(raw), outcome="failure", detail=detail, **page)
    return render(locale, 202, outcome="success", reference=str(taken.id))


@router.post(
    "/",
    response_class=HTMLResponse,
    summary="Submit the application form without JavaScript",
    openapi_extra=FORM_POST,
    responses=html_responses(202, 403, 409, 413, 415, 422, 429, 503),
)
async def post_application_form(
    request: Request, context: Context, guard: Guard, intake: IntakeService, settings: Settings, lang: str | None = None
) -> HTMLResponse:
    def render(locale: Locale, status: int, agreement: AgreementDocument | None = None, **page: Any) -> HTMLResponse:
        return _application_page(
            locale, agreement or intake.catalog.current(), status, captcha=_captcha(settings), **page
        )

    return await _post_form(
        request, context, guard, settings.retry_after_seconds, lang, intake.apply, render, APPLICATION_FIELDS
    )


@router.post(
    "/contact",
    response_class=HTMLResponse,
    summary="Submit the enquiry form without JavaScript",
    openapi_extra=FORM_POST,
    responses=html_responses(202, 403, 413, 415, 422, 429, 503),
)
async def post_contact_form(
    request: Request, context: Context, guard: Guard, intake: IntakeService, settings: Settings, lang: str | None = None
) -> HTMLResponse:
    def render(locale: Locale, status: int, **page: Any) -> HTMLResponse:
        return _contact_page(locale, status, captcha=_captcha(settings), **page)

    return await _post_form(
        request, context, guard, settings.retry_after_seconds, lang, intake.enquire, render, CONTACT_FIELDS
    )


def _failure(exc: Exception, t: dict[str, str], retry_after: int) -> tuple[int, str | None, dict[str, str] | None]:
    match exc:
        case PublishFailed() | KeysUnavailable():
            return 503, t["unavailable"], {"Retry-After": str(retry_after)}
        case RateLimited():
            return 429, t["rate_limited"], {"Retry-After": str(exc.retry_after)}
        case BodyTooLarge():
            return 413, t["too_large"], None
        case UnsupportedMediaType():
            return 415, t["unreadable"], None
        case OriginRefused():
            return 403, None, None
    return 422, t["unreadable"], None
