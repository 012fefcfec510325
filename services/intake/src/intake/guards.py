"""Abuse limits in front of the forms: client identity, rate limit, body size and type, origins."""

import json
import math
import time
from collections import defaultdict
from collections.abc import Callable
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network, ip_address
from typing import Any
from urllib.parse import parse_qsl

from limits import parse
from starlette.requests import Request

Network = IPv4Network | IPv6Network

JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
# The forms nest two levels (company.address, services[0]); deeper input is no form of ours,
# and reading it would only spend the stack (json and the page's own code recurse).
MAX_NESTING = 8


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the body is larger than {limit} bytes")
        self.limit = limit


class UnsupportedMediaType(Exception):
    def __init__(self, received: str, accepted: tuple[str, ...] = (JSON, FORM)) -> None:
        super().__init__(f"content type {received or '(none)'} is not accepted; send {' or '.join(accepted)}")


class MalformedBody(Exception):
    """The body is not valid JSON (or not a JSON object) or not decodable form data."""


class RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(f"too many submissions; retry in {retry_after}s")
        self.retry_after = retry_after


def client_address(request: Request, trusted_proxies: list[Network]) -> str:
    """The client's IP: the peer, unless the peer is a trusted proxy, then the right-most forwarded hop not trusted.

    Each proxy appends the address it saw, so only entries right of the last untrusted one
    were written by proxies we trust; anything further left came from the client and may be
    forged. Every ``X-Forwarded-For`` line counts (a proxy may add a line rather than extend
    the client's). An entry that is no IP address leaves the peer as the client.
    """
    peer = canonical_ip(request.client.host) if request.client else None
    if peer is None:
        return request.client.host if request.client else "unknown"
    if not trusted_proxies or not _is_in(peer, trusted_proxies):
        return str(peer)
    lines = request.headers.getlist("x-forwarded-for")
    forwarded = [hop.strip() for line in lines for hop in line.split(",") if hop.strip()]
    for hop in reversed(forwarded):
        address = canonical_ip(hop)
        if address is None:
            return str(peer)
        if not _is_in(address, trusted_proxies):
            return str(address)
    return str(peer)


@lru_cache(maxsize=4096)
def canonical_ip(value: str) -> IPv4Address | IPv6Address | None:
    """``value`` as an address, one spelling per host: IPv4-mapped IPv6 as IPv4, no IPv6 zone id; None if none.

    Remembered for the last few thousand values (addresses are immutable): the peer (a proxy) is the
    same on most requests, and ``rate_limit_key`` reads again the client address just read here.
    """
    try:
        address = ip_address(value.strip())
    except ValueError:
        return None
    if isinstance(address, IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.scope_id is not None:
            return IPv6Address(address.packed)
    return address


def rate_limit_key(client: str) -> str:
    """Whom a rate limit counts: an IPv4 address, or an IPv6 address's /64 (what one subscriber gets)."""
    address = canonical_ip(client)
    if isinstance(address, IPv6Address):
        return str(IPv6Network((address, 64), strict=False))
    return client


def _is_in(address: IPv4Address | IPv6Address | str, networks: list[Network]) -> bool:
    ip = canonical_ip(address) if isinstance(address, str) else address
    return ip is not None and any(ip in network for network in networks)


class SubmissionRateLimiter:
    """A per-client limit kept in this process (each replica counts its own), by GCRA.

    "10/minute" lets a client send a burst of 10, then one more every 6 s. Each
    client costs one float, updated in O(1); idle clients are swept in one pass
    now and then. (``limits``' in-memory storage, which we used before, rescans
    every client key on a timer, with a thread hop per key in its asyncio flavour:
    a fifth of intake's CPU under load. We still use ``limits`` to read the rate.)
    """

    SWEEP_EVERY_SECONDS = 10.0
    SLACK_SECONDS = 1e-6

    def __init__(self, rate: str, clock: Callable[[], float] = time.monotonic) -> None:
        item = parse(rate)
        self._period = float(item.get_expiry())
        self._interval = self._period / item.amount
        self._tolerance = self._period - self._interval  # how far ahead of now a client may be: its burst
        self._clock = clock
        self._ready_at: dict[str, float] = {}  # client -> theoretical arrival time of its next request
        self._next_sweep = clock() + self.SWEEP_EVERY_SECONDS

    async def check(self, client: str) -> None:
        now = self._clock()
        ready_at = max(self._ready_at.get(client, now), now)
        # Compare how far ahead the client is, not absolute times, and allow a microsecond of
        # slack: clock readings are floats, and ``now + 60 - 60`` can round to just above ``now``,
        # which would refuse a client's very first request or one that waited exactly long enough.
        wait = (ready_at - now) - self._tolerance  # > 0: the client has used up its burst
        if wait > self.SLACK_SECONDS:
            raise RateLimited(max(1, math.ceil(wait - self.SLACK_SECONDS)))
        self._ready_at[client] = ready_at + self._interval
        if now >= self._next_sweep:
            self._sweep(now)

    @property
    def tracked_clients(self) -> int:
        return len(self._ready_at)

    def _sweep(self, now: float) -> None:
        # A client whose next arrival time has passed is exactly like a new one.
        self._ready_at = {client: at for client, at in self._ready_at.items() if at > now}
        self._next_sweep = now + self.SWEEP_EVERY_SECONDS


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than ``limit`` bytes whatever Content-Length claims."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def parse_submission(body: bytes, content_type: str) -> dict[str, Any]:
    """A JSON object, or form fields with dotted names (``company.country``) folded into the same shape."""
    if content_type == JSON:
        try:
            data = json.loads(body)
        except RecursionError as exc:
            raise MalformedBody(f"the body nests deeper than {MAX_NESTING} levels") from exc
        except ValueError as exc:  # not UTF-8, not JSON, or an integer of more digits than Python converts
            raise MalformedBody(f"the body is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise MalformedBody("the body must be a JSON object")
        # No object or array nests deeper than there are brackets in the body (some may be in strings): a body
        # with MAX_NESTING of them at most, as every form of ours is, need not be walked.
        if body.count(b"{") + body.count(b"[") > MAX_NESTING and nesting(data) > MAX_NESTING:
            raise MalformedBody(f"the body nests deeper than {MAX_NESTING} levels")
        return data
    if content_type == FORM:
        try:
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError as exc:
            raise MalformedBody("form data must be UTF-8") from exc
        return fold_form_fields(pairs)
    raise UnsupportedMediaType(content_type)


def nesting(value: Any) -> int:
    """How many objects and arrays deep ``value`` goes, counted without recursion."""
    deepest, pending = 0, [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if depth <= MAX_NESTING:  # one level past the limit is enough to refuse it
            pending.extend((child, depth + 1) for child in children)
    return deepest


# Form fields that may repeat (checkbox groups) become lists.
LIST_FIELDS = frozenset({"services"})
# Checkboxes send "on" when ticked and nothing when not.
CHECKBOX_FIELDS = frozenset({"agreement.accepted"})


def fold_form_fields(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    lists: dict[str, list[str]] = defaultdict(list)
    nested: dict[str, Any] = {}
    for name, value in pairs:
        if name in LIST_FIELDS:
            lists[name].append(value)
            continue
        *parents, leaf = name.split(".")
        if len(parents) >= MAX_NESTING:
            raise MalformedBody(f"form field {name[:64]}… nests deeper than {MAX_NESTING} levels")
        target = nested
        # Sections exist even when all their inputs are empty, so a missing
        # field is reported by its own name ("account.name"), not its section's.
        for key in parents:
            child = target.setdefault(key, {})
            if not isinstance(child, dict):
                raise MalformedBody(f"form field {name} conflicts with {key}")
            target = child
        if name in CHECKBOX_FIELDS:
            target[leaf] = value.lower() in ("on", "true", "1", "yes")
        elif value != "":  # an empty input means "not given"
            target[leaf] = value
    nested.update(lists)
    return nested


def origin_allowed(request: Request, allowed: list[str], trusted_proxies: list[Network]) -> bool:
    """Same-origin posts and the configured frontends may submit; a post without Origin is not a browser's."""
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin.rstrip("/") in (*allowed, own_origin(request, trusted_proxies))


def own_origin(request: Request, trusted_proxies: list[Network]) -> str:
    """The origin the browser sees intake's own pages at: behind a TLS-terminating proxy, what the proxy says."""
    scheme, host = request.url.scheme, request.headers.get("host", request.url.netloc)
    peer = request.client.host if request.client else ""
    if trusted_proxies and _is_in(peer, trusted_proxies):
        # The first value is what the outermost proxy saw from the browser.
        scheme = _first(request.headers.get("x-forwarded-proto")) or scheme
        host = _first(request.headers.get("x-forwarded-host")) or host
    return f"{scheme.lower()}://{host.lower()}"


def _first(header: str | None) -> str:
    return header.split(",", 1)[0].strip() if header else ""


class OriginRefused(Exception):
    def __init__(self, origin: str) -> None:
        super().__init__(f"origin {origin} is not an allowed frontend")


class SubmissionGuard:
    """Everything a submission passes before its fields are read: origin, rate, media type, size."""

    def __init__(
        self, rate: str, max_body_bytes: int, allowed_origins: list[str], trusted_proxies: list[Network]
    ) -> None:
        self._limiter = SubmissionRateLimiter(rate)
        self._max_body_bytes = max_body_bytes
        self._allowed_origins = allowed_origins
        self._trusted_proxies = trusted_proxies

    async def admit(self, request: Request, client: str, accepted: tuple[str, ...] = (JSON, FORM)) -> dict[str, Any]:
        """The submission's fields, if it passes; ``accepted``: the media types this route reads."""
        if not origin_allowed(request, self._allowed_origins, self._trusted_proxies):
            raise OriginRefused(request.headers.get("origin", ""))
        await self._limiter.check(rate_limit_key(client))
        content_type = media_type(request)
        if content_type not in accepted:
            raise UnsupportedMediaType(content_type, accepted)
        return parse_submission(await read_body(request, self._max_body_bytes), content_type)
