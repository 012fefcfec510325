"""The console's pages: one Jinja2 environment (autoescaped) whose templates get the language, the words and
the CSRF token of the request."""

from collections.abc import Mapping
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, select_autoescape

from casework.i18n import LANGUAGE_NAMES, LOCALE_COOKIE, ConsoleLocale, chosen_locale, translate

_environment = Environment(
    loader=PackageLoader("casework", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_environment)


def request_locale(request: Request) -> ConsoleLocale:
    return chosen_locale(request.cookies.get(LOCALE_COOKIE), request.headers.get("accept-language"))


def render(
    request: Request, template: str, context: Mapping[str, Any] | None = None, status_code: int = 200
) -> HTMLResponse:
    """``template`` with the request's language (``t(key, **values)``), the signed-in staff member (``staff``, if
    any: ``request.state.staff``) and their session's CSRF token (``csrf_token``)."""
    locale = request_locale(request)

    def t(key: str, **values: object) -> str:
        return translate(key, locale, **values)

    page: dict[str, Any] = {
        "locale": locale,
        "languages": LANGUAGE_NAMES,
        "t": t,
        "staff": getattr(request.state, "staff", None),
        "csrf_token": getattr(request.state, "csrf_token", ""),
        **(context or {}),
    }
    return templates.TemplateResponse(request, template, page, status_code=status_code)
