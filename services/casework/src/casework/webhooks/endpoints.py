"""A CRM endpoint as admins configure it: its URL (checked), the event types it takes, its signing secrets."""

import base64
import ipaddress
import re
import secrets
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import httpx

from agency_chassis.logs import url_origin
from casework.webhooks.events import EVENT_TYPES, WebhookEventType
from casework.webhooks.guard import is_public

SECRET_PREFIX = "whsec_"  # noqa: S105 - the prefix of every secret, not one
SECRET_BYTES = 32  # the spec asks for 24 to 64 random bytes
MAX_URL_LENGTH = 2000
# The environments where an endpoint may be plain HTTP (a receiver on this machine).
PLAIN_HTTP_ENVIRONMENTS = ("local", "test")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0x[0-9a-f]*", re.IGNORECASE)


class EndpointProblem(ValueError):
    """An endpoint the console refuses: ``field`` is at fault, ``reason`` says why (a translation key's tail)."""

    def __init__(self, field: str, reason: str, detail: str) -> None:
        super().__init__(f"{field}: {detail}")
        self.field = field
        self.reason = reason
        self.detail = detail


def new_secret() -> str:
    """A fresh signing secret, ``whsec_`` and the base64 of 32 random bytes (what ``standardwebhooks`` reads)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def checked_url(value: str, environment: str) -> str:
    """The endpoint URL, or ``EndpointProblem``: absolute, HTTPS (plain HTTP only in local and test runs), a host,
    no credentials or fragment, no whitespace or control characters, at most 2,000 characters."""
    url = value.strip()
    if not url:
        raise EndpointProblem("url", "url_missing", "enter the endpoint's URL")
    if len(url) > MAX_URL_LENGTH:
        raise EndpointProblem("url", "url_too_long", f"at most {MAX_URL_LENGTH} characters")
    if any(char.isspace() or ord(char) < 0x20 or ord(char) == 0x7F for char in url):
        raise EndpointProblem("url", "url_invalid", "no spaces or control characters in a URL")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        raise EndpointProblem("url", "url_invalid", "not a URL") from None
    allowed = ("https", "http") if environment in PLAIN_HTTP_ENVIRONMENTS else ("https",)
    if parsed.scheme not in allowed:
        raise EndpointProblem("url", "url_not_https", "the endpoint must be an https:// URL")
    if not parsed.host:
        raise EndpointProblem("url", "url_invalid", "the URL names no host")
    if parsed.userinfo:
        reason = "no user name or password in the URL: the signature is the proof"
        raise EndpointProblem("url", "url_credentials", reason)
    if parsed.fragment:
        raise EndpointProblem("url", "url_invalid", "no #fragment in an endpoint URL")
    if _numeric_host_not_canonical(parsed.host):
        reason = "write an IP address as four decimal numbers (like 203.0.113.7) or use the host name"
        raise EndpointProblem("url", "url_numeric_host", reason)
    if environment not in PLAIN_HTTP_ENVIRONMENTS and _internal_address(parsed.host):
        raise EndpointProblem("url", "url_internal", "the CRM's public address, not an internal or loopback one")
    return str(parsed)


def recorded_url(url: str) -> str:
    """The endpoint as the audit log keeps it: its origin only. A CRM's hook URL often carries a token in its path
    or query (``/hooks/catch/123/aBc9/``), a secret the audit log, kept for years and exported, must not hold."""
    return url_origin(str(httpx.URL(url)))  # as httpx sends it: the host in IDNA


def _numeric_host_not_canonical(host: str) -> bool:
    """A host a resolver reads as an IPv4 address though it is not written as one: an integer (``2130706433``),
    hex (``0x7f000001``), octal (``0177.0.0.1``), a short dotted form (``127.1``) or a trailing dot. (As URLs
    are parsed for browsers: a host whose last label is a number is an IPv4 address.)"""
    if ":" in host:
        return False  # IPv6, checked as an address
    last = host.rstrip(".").rsplit(".", 1)[-1]
    if not _NUMERIC_LABEL.fullmatch(last):
        return False
    try:
        return str(ipaddress.IPv4Address(host)) != host
    except ValueError:
        return True


def _internal_address(host: str) -> bool:
    """A literal address in a loopback, private, link-local (cloud metadata) or reserved range, or ``localhost``.
    (A name that resolves to one is the network policy's to stop.)"""
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return not is_public(address)


def checked_event_types(values: Iterable[str]) -> list[WebhookEventType]:
    """The chosen event types in their canonical order, or ``EndpointProblem`` (none chosen, or an unknown one)."""
    chosen = {value.strip() for value in values if value.strip()}
    if not chosen:
        raise EndpointProblem("event_type", "events_missing", "choose at least one event type")
    unknown = chosen - set(EVENT_TYPES)
    if unknown:
        named = ", ".join(sorted(unknown))[:200]
        raise EndpointProblem("event_type", "events_unknown", f"unknown event type: {named}")
    return [event for event in EVENT_TYPES if event in chosen]


@dataclass(frozen=True)
class SigningSecret:
    secret: str
    created_at: datetime
    # Set on the previous secret when it is rotated out: it signs too until then.
    expires_at: datetime | None = None

    def live(self, now: datetime) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Endpoint:
    id: str
    url: str
    event_types: Sequence[WebhookEventType]
    enabled: bool
    created_at: datetime
    secrets: Sequence[SigningSecret]
    disabled_reason: str | None = None
    # Raised by every change: a change is made only to the version it was read at (no lost updates).
    version: int = 0

    def signing_secrets(self, now: datetime) -> list[str]:
        """The secrets each request is signed with now: the current one, and the one rotated out until its grace
        period ends (``webhook-signature`` then carries a ``v1,`` signature for each)."""
        return [item.secret for item in self.secrets if item.live(now)]

    @property
    def rotating_until(self) -> datetime | None:
        ends = [item.expires_at for item in self.secrets if item.expires_at is not None]
        return max(ends) if ends else None

    def to_document(self) -> dict[str, Any]:
        return {
            "_id": self.id,
            "url": self.url,
            "event_types": list(self.event_types),
            "enabled": self.enabled,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
            "secrets": [secret_document(item) for item in self.secrets],
            "version": self.version,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> "Endpoint":
        return cls(
            id=document["_id"],
            url=document["url"],
            event_types=cast(list[WebhookEventType], list(document["event_types"])),
            enabled=bool(document["enabled"]),
            disabled_reason=document.get("disabled_reason"),
            created_at=aware(document["created_at"]),
            secrets=[
                SigningSecret(item["secret"], aware(item["created_at"]), aware_or_none(item.get("expires_at")))
                for item in document["secrets"]
            ],
            version=int(document.get("version", 0)),
        )


def secret_document(item: SigningSecret) -> dict[str, Any]:
    return {"secret": item.secret, "created_at": item.created_at, "expires_at": item.expires_at}


def new_endpoint(url: str, event_types: Sequence[WebhookEventType], now: datetime) -> Endpoint:
    return Endpoint(str(uuid.uuid4()), url, event_types, True, now, [SigningSecret(new_secret(), now)])


def rotated(endpoint: Endpoint, now: datetime, grace: timedelta) -> tuple[Endpoint, str]:
    """The endpoint with a new current secret, the current one signing too until ``now + grace`` (secrets already
    rotated out and past their grace are dropped), and the new secret."""
    secret = new_secret()
    kept = [
        item if item.expires_at is not None else SigningSecret(item.secret, item.created_at, now + grace)
        for item in endpoint.secrets
        if item.live(now)
    ]
    kept = [item for item in kept if item.live(now)]
    return Endpoint(
        endpoint.id,
        endpoint.url,
        endpoint.event_types,
        endpoint.enabled,
        endpoint.created_at,
        [SigningSecret(secret, now), *kept],
        endpoint.disabled_reason,
        endpoint.version,
    ), secret


def aware(moment: datetime) -> datetime:
    """PyMongo returns naive UTC datetimes unless the client is tz_aware."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def aware_or_none(moment: datetime | None) -> datetime | None:
    return None if moment is None else aware(moment)
