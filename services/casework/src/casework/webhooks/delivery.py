"""Sending deliveries: each request signed with the endpoint's live secrets (Standard Webhooks headers), a bounded
timeout, no redirects followed and a bounded read of the answer; retried on the schedule below for about three
days, a ``410 Gone`` disables the endpoint. Any number of replicas run the loop: a delivery is claimed first."""

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from standardwebhooks import Webhook

from agency_shared.events import utc_now
from casework.webhooks.endpoints import Endpoint
from casework.webhooks.guard import Resolve, public_only_transport, resolve
from casework.webhooks.store import AttemptRecord, Delivery, DeliveryState, MongoWebhooks

logger = logging.getLogger(__name__)
Clock = Callable[[], datetime]
OnDisabled = Callable[[Endpoint, str], Awaitable[None]]

# The wait before each retry: 10 retries after the first attempt, about three days in all (a test sums it).
RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
    timedelta(hours=10),
    timedelta(hours=14),
    timedelta(hours=20),
)
MAX_RESPONSE_BYTES = 4096  # what is read of an answer's body, at most
MAX_RESPONSE_CHARS = 1000  # what the attempt log keeps of it
MAX_ERROR_CHARS = 500
BATCH = 20  # deliveries a loop claims and sends at once
USER_AGENT = "wechat-agency-casework-webhooks/1"


@dataclass(frozen=True)
class Sent:
    status_code: int | None
    duration_ms: int
    error: str | None = None
    response: str | None = None


def signed_headers(message_id: str, timestamp: datetime, body: str, secrets: list[str]) -> dict[str, str]:
    """The Standard Webhooks headers: ``webhook-signature`` holds one ``v1,<base64>`` per live secret."""
    signatures = " ".join(Webhook(secret).sign(message_id, timestamp, body) for secret in secrets)
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": signatures,
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }


class WebhookSender:
    """The HTTP client deliveries go out through (opened in the lifespan)."""

    def __init__(self, timeout_seconds: float, *, public_only: bool = False, resolver: Resolve = resolve) -> None:
        # Outside local and test runs: only to a host whose every address is global (``guard``).
        self._public_only = public_only
        self._resolver = resolver
        self._timeout = httpx.Timeout(timeout_seconds)
        # httpx's timeouts are per phase (connect, each read...): an endpoint that drips its answer is cut here.
        self._deadline = timeout_seconds
        self._client: httpx.AsyncClient | None = None

    async def open(self) -> None:
        transport = public_only_transport(self._resolver) if self._public_only else None
        self._client = httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, trust_env=False, transport=transport
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, url: str, headers: dict[str, str], body: str) -> Sent:
        assert self._client is not None, "the sender is not open"
        started = time.perf_counter()
        try:
            async with (
                asyncio.timeout(self._deadline),
                self._client.stream("POST", url, content=body.encode(), headers=headers) as response,
            ):
                read = bytearray()
                async for chunk in response.aiter_raw():
                    read += chunk[: MAX_RESPONSE_BYTES - len(read)]
                    if len(read) >= MAX_RESPONSE_BYTES:
                        break
                text = read.decode("utf-8", "replace")[:MAX_RESPONSE_CHARS]
                return Sent(response.status_code, _since(started), response=text or None)
        except TimeoutError:
            return Sent(None, _since(started), error=f"no complete answer within {self._deadline:g} s")
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
            return Sent(None, _since(started), error=error)


def _since(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


@dataclass(frozen=True)
class Decision:
    state: DeliveryState
    next_attempt_at: datetime | None = None
    disable: bool = False


def decide(delivery: Delivery, sent: Sent, now: datetime, scale: float = 1.0) -> Decision:
    """What follows an attempt: delivered on a 2xx; failed and the endpoint disabled on a 410; otherwise the next
    retry on the schedule (times ``scale``), or failed once the schedule is spent."""
    if sent.status_code is not None and 200 <= sent.status_code < 300:
        return Decision("delivered")
    if sent.status_code == 410:
        return Decision("failed", disable=True)
    if delivery.retries < len(RETRY_SCHEDULE):
        return Decision("pending", now + RETRY_SCHEDULE[delivery.retries] * scale)
    return Decision("failed")


class DeliveryLoop:
    """Claims due deliveries and sends them, until cancelled; ``wake()`` makes it look at once."""

    def __init__(
        self,
        store: MongoWebhooks,
        sender: WebhookSender,
        *,
        lease: timedelta,
        poll_seconds: float,
        retry_scale: float = 1.0,
        on_disabled: OnDisabled | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self._store = store
        self._sender = sender
        self._lease = lease
        self._poll = poll_seconds
        self._scale = retry_scale
        self._on_disabled = on_disabled
        self._clock = clock
        self._woken = asyncio.Event()

    def wake(self) -> None:
        self._woken.set()

    async def run(self) -> None:
        while True:
            try:
                sent = await self.run_once()
            except Exception:
                logger.exception("the webhook delivery loop failed; it goes on")
                sent = 0
            if sent == 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._woken.wait(), self._poll)
                self._woken.clear()

    async def run_once(self) -> int:
        """Send what is due now (each delivery this loop claims); returns how many it sent."""
        now = self._clock()
        claimed = [found for due in await self._store.due(now, BATCH)
                   if (found := await self._store.claim(due, now, self._lease)) is not None]  # fmt: skip
        await asyncio.gather(*(self._deliver(delivery) for delivery in claimed))
        return len(claimed)

    async def _deliver(self, delivery: Delivery) -> None:
        endpoint = await self._store.endpoint(delivery.endpoint_id)
        if endpoint is None or not endpoint.enabled:
            await self._store.cancel(delivery)
            logger.info("webhook delivery %s cancelled: its endpoint is gone or disabled", delivery.id)
            return
        at = self._clock()
        headers = signed_headers(delivery.message_id, at, delivery.body, endpoint.signing_secrets(at))
        sent = await self._sender.send(endpoint.url, headers, delivery.body)
        decision = decide(delivery, sent, self._clock(), self._scale)
        attempt = AttemptRecord(
            at=at,
            number=len(delivery.attempts) + 1,
            duration_ms=sent.duration_ms,
            status_code=sent.status_code,
            error=sent.error,
            response=sent.response,
            replay=delivery.replaying,
        )
        if decision.disable:  # first: no event is recorded for it once its delivery shows as failed
            await self._store.set_enabled(endpoint.id, False, "410 Gone")
            logger.warning("webhook endpoint %s answered 410 Gone: disabled", endpoint.id)
            if self._on_disabled is not None:
                await self._on_disabled(endpoint, "410 Gone")
        if not await self._store.attempted(delivery, attempt, decision.state, decision.next_attempt_at):
            logger.warning("webhook delivery %s: its lease ran out during the attempt", delivery.id)
        if decision.state != "delivered":
            logger.warning("webhook delivery %s to endpoint %s: %s, now %s", delivery.id, endpoint.id,
                           sent.status_code or sent.error, decision.state)  # fmt: skip
