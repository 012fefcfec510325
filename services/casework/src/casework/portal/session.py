"""The portal's session: the signed link's token, kept in a cookie once the client opened the link.

``GET /portal/open?t=<token>`` checks the token and moves it into the ``portal`` cookie (so the token leaves the
address bar, the history and any Referer), then every portal request checks it again: its signature, its expiry
and its generation against the case's current one, so staff revoking a case's links ends every session at once.
Forms carry a CSRF token derived from the session's token (``PortalLinks.csrf_token``): nothing is stored.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Form, Request

from agency_chassis.portal_links import ExpiredPortalLink, InvalidPortalLink, PortalClaim, PortalLinks
from agency_shared.events import utc_now
from casework.app_state import adapters_of
from casework.cases import Case

COOKIE = "portal"
PATH = "/portal"


class PortalRefusal(Exception):
    """A portal request without a valid session: ``reason`` is ``missing``, ``invalid``, ``expired``, ``revoked``
    (the page offers to send a new link), ``csrf`` (a form without its token), ``gone`` (the case's data was
    erased) or ``recording`` (a valid link to a case not opened yet: the application is being recorded)."""

    def __init__(self, reason: str, status: int = 401, locale: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.locale = locale  # the link's language, when the link says it (its page is in it)


@dataclass(frozen=True)
class PortalVisitor:
    """The client of ``case``, holding a valid link ``token``; ``csrf_token`` goes into every form they post."""

    case: Case
    claim: PortalClaim
    token: str
    csrf_token: str


def portal_links(request: Request) -> PortalLinks:
    links: PortalLinks = request.app.state.portal_links
    return links


def case_generation(case: Case) -> int:
    """The generation of the case's valid links (0 until staff first revoke them)."""
    return int(getattr(case, "portal_generation", 0) or 0)


async def visitor_of(request: Request, token: str, now: datetime | None = None) -> PortalVisitor:
    """The visitor ``token`` admits, or ``PortalRefusal``."""
    links = portal_links(request)
    try:
        claim = links.check(token, now or utc_now())
    except ExpiredPortalLink as exc:
        raise PortalRefusal("expired", 410, exc.claim.locale) from exc
    except InvalidPortalLink as exc:
        raise PortalRefusal("invalid") from exc
    case = await adapters_of(request).cases.get(claim.case_id)
    if case is None:
        # Signed by us for this case, which is not open yet (an application whose address was verified
        # moments ago): casework opens it within seconds.
        raise PortalRefusal("recording", 200, claim.locale)
    if case.erased_at is not None:
        raise PortalRefusal("gone", 410, claim.locale)
    if claim.generation != case_generation(case):
        raise PortalRefusal("revoked", 410, claim.locale)
    return PortalVisitor(case=case, claim=claim, token=token, csrf_token=links.csrf_token(token))


async def portal_visitor(request: Request) -> PortalVisitor:
    """FastAPI dependency: the client whose session cookie this request carries."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise PortalRefusal("missing")
    return await visitor_of(request, token)


async def portal_poster(request: Request, csrf_token: Annotated[str, Form()] = "") -> PortalVisitor:
    """FastAPI dependency of the portal's POST forms: the session's client, with the form's CSRF token checked."""
    visitor = await portal_visitor(request)
    if not csrf_token or not portal_links(request).csrf_matches(visitor.token, csrf_token):
        raise PortalRefusal("csrf", 403)
    return visitor


PortalClient = Annotated[PortalVisitor, Depends(portal_visitor)]
PortalPoster = Annotated[PortalVisitor, Depends(portal_poster)]
