"""The portal's "send me a new link": a client who lost their link enters their address; for each of that address's
open cases casework announces ``portal.link-requested`` with a freshly signed link, and notifications emails it.

The answer is the same whether or not the address is known: the request is checked (its form token, its limits)
and answered at once, and the look-up and the publishing happen afterwards in the background, so neither the
page nor its timing says whether a case exists. Limits (per client address and per email address, an hour, kept in
MongoDB so they hold across replicas) count every request, known address or not.
"""

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from email_validator import EmailNotValidError, validate_email
from itsdangerous import BadData, URLSafeTimedSerializer
from pymongo import AsyncMongoClient, ReturnDocument
from pymongo.errors import DuplicateKeyError

from agency_shared.events import Event, PortalLinkRequested, PortalLinkRequestedData, derived_id, utc_now
from casework.cases import Case
from casework.portal.session import case_generation
from casework.storage import MongoCases

logger = logging.getLogger(__name__)
Publish = Callable[[Event], Awaitable[None]]
LIMITS = "casework_portal_link_limits"
# The longest address there is (RFC 5321's path limit); anything longer is refused before it is looked at.
MAX_EMAIL_LENGTH = 254
FORM_PURPOSE = "wechat-agency.client-portal.link-form.v1"
# A form token works this long after the page was served.
FORM_SECONDS = 3600
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]")


class InvalidEmail(ValueError):
    """The field is not one email address; ``reason`` names why (shown next to the field)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def checked_email(value: str) -> str:
    """The address as entered (trimmed), or ``InvalidEmail``: empty, too long, a line break or control character,
    or not an address."""
    value = value.strip()
    if not value:
        raise InvalidEmail("required")
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidEmail("too_long")
    if _CONTROL.search(value):
        raise InvalidEmail("control")
    try:
        validate_email(value, check_deliverability=False)
    except EmailNotValidError:
        raise InvalidEmail("not_an_address") from None
    return value


class FormTokens:
    """The lost-link form's CSRF token, without a session: a signed, timed value the page carries; a cross-site
    form cannot read one (and the form is answered the same for every address anyway)."""

    def __init__(self, secret: str) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt=FORM_PURPOSE)

    def issue(self) -> str:
        return self._serializer.dumps(uuid.uuid4().hex)

    def valid(self, token: str) -> bool:
        try:
            self._serializer.loads(token, max_age=FORM_SECONDS)
        except BadData:
            return False
        return True


class MongoRequestLimits:
    """Fixed-window counters (an hour) by scope and hashed value, in MongoDB: every replica counts together."""

    def __init__(self, client: AsyncMongoClient[dict[str, Any]], db: str) -> None:
        self._counters = client[db][LIMITS]

    async def ensure_indexes(self) -> None:
        await self._counters.create_index("expires_at", expireAfterSeconds=0)

    async def allow(self, scope: str, value: str, limit: int, now: datetime) -> bool:
        """Count one request of ``value`` (an IP, an address) in the current hour; whether it is within ``limit``."""
        hour = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
        digest = hashlib.sha256(value.casefold().encode()).hexdigest()
        key = f"{scope}:{digest}:{hour.isoformat()}"
        change = {"$inc": {"count": 1}, "$setOnInsert": {"expires_at": hour + timedelta(hours=2)}}
        try:
            counter = await self._counters.find_one_and_update(
                {"_id": key}, change, upsert=True, return_document=ReturnDocument.AFTER, projection={"count": 1}
            )
        except DuplicateKeyError:  # two first requests of the hour raced to insert the counter: count on it
            counter = await self._counters.find_one_and_update(
                {"_id": key}, {"$inc": {"count": 1}}, return_document=ReturnDocument.AFTER, projection={"count": 1}
            )
        return counter is not None and int(counter["count"]) <= limit


@dataclass
class LinkRequests:
    """Sends new portal links: accepted at once, looked up and announced in the background."""

    cases: MongoCases
    limits: MongoRequestLimits
    publish: Publish
    per_ip: int
    per_email: int
    now: Callable[[], datetime] = utc_now
    _working: set[asyncio.Task[int]] = field(default_factory=set)

    async def within_limits(self, client_ip: str | None, email: str) -> bool:
        now = self.now()
        by_ip = await self.limits.allow("ip", client_ip or "unknown", self.per_ip, now)
        by_email = await self.limits.allow("email", email, self.per_email, now)
        return by_ip and by_email

    def request(self, email: str, correlation_id: str) -> None:
        """Look the address up and announce a link for each of its open cases, after the answer has gone."""
        task = asyncio.create_task(self.send_links(email, correlation_id))
        self._working.add(task)
        task.add_done_callback(self._working.discard)

    async def settled(self) -> None:
        """Wait for the requests in the background (shutdown; tests)."""
        while self._working:
            await asyncio.gather(*list(self._working), return_exceptions=True)

    async def send_links(self, email: str, correlation_id: str) -> int:
        """Announce a new link for each open case of ``email``; how many were confirmed by the broker."""
        try:
            cases = await self.cases.open_cases_of(email)
        except Exception:
            logger.exception("portal link request %s: the cases could not be looked up", correlation_id)
            return 0
        sent = 0
        for case in cases:
            if case.client_email is None:
                continue
            try:
                await self.publish(self.announcement(case, case.client_email, correlation_id))
            except Exception as exc:  # one case's failure stops no other; the client can ask again, nothing half-done
                logger.warning("portal link of case %s not announced (%r)", case.reference, exc)
                continue
            sent += 1
            logger.info("portal link of case %s requested again: announced", case.reference)
        return sent

    def announcement(self, case: Case, email: str, correlation_id: str) -> PortalLinkRequested:
        """The request, naming the case's current link generation: notifications signs the link as it sends it."""
        now = self.now()
        application_id = case.application_id
        return PortalLinkRequested(
            event_id=derived_id(PortalLinkRequested.routing_key, str(case.id), correlation_id),
            correlation_id=correlation_id,
            data=PortalLinkRequestedData(
                case_id=case.id,
                application_id=application_id,
                enquiry_id=None if application_id is not None else case.enquiry_id,
                reference=case.reference,
                email=email,
                name=case.client_name or "",
                locale=case.locale,
                portal_generation=case_generation(case),
                requested_at=now,
            ),
        )
