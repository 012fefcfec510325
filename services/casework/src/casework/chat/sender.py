"""One robot's sender: while its replica holds the robot's lease, it sends the robot's due alerts one at a time,
each after the rate limiter allows it, and retries with backoff or gives up after a bounded number of attempts."""

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import httpx
from prometheus_client import Counter

from casework.chat.channels import Answer, Channel, Verdict
from casework.chat.limiter import Window, still_counting, wait_before_next
from casework.chat.messages import alert_text
from casework.chat.store import ChatStore, Delivery, Lease
from casework.i18n import ConsoleLocale

logger = logging.getLogger(__name__)
CHAT_MESSAGES = Counter(
    "wechat_chat_messages_total",
    "Chat alert attempts by channel and outcome (sent, retried, rate_limited, failed)",
    ["channel", "outcome"],
)
IDLE_SECONDS = 2.0  # how often an idle sender looks for alerts other replicas stored (scaled)


@dataclass(frozen=True)
class Robot:
    """A configured chat robot: its id (the channel and a hash of its URL; the URL itself is a secret) and URL."""

    id: str
    channel: Channel
    url: str

    def __repr__(self) -> str:  # never the URL
        return f"Robot({self.id})"


@dataclass(frozen=True)
class Pacing:
    """The sender's clocks: attempts, backoff and lease, every duration multiplied by ``scale`` (tests shorten it),
    and ``deadline``, the longest one message may take, its answer included (not scaled, like the lease)."""

    max_attempts: int
    retry_base: float
    retry_max: float
    lease: float
    scale: float = 1.0
    deadline: float = 10.0

    def backoff(self, attempt: int) -> float:
        """Seconds before attempt ``attempt + 1``: base·2^(attempt-1), at most max, jittered ±20%."""
        seconds: float = min(self.retry_max, self.retry_base * 2.0 ** (attempt - 1))
        return seconds * self.scale * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret

    def windows(self, channel: Channel) -> tuple[Window, ...]:
        return tuple(window.scaled(self.scale) for window in channel.windows)


class RobotSender:
    def __init__(
        self,
        robot: Robot,
        store: ChatStore,
        http: httpx.AsyncClient,
        pacing: Pacing,
        holder: str,
        console_url: str,
        locale: ConsoleLocale,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.robot = robot
        self._store = store
        self._http = http
        self._pacing = pacing
        self._holder = holder
        self._console_url = console_url
        self._locale = locale
        self._clock = clock
        self.woken = asyncio.Event()
        self._stopping = False

    def stop(self) -> None:
        """End the loop after the message in hand, if any, is sent and recorded (not cut off between the two)."""
        self._stopping = True
        self.woken.set()

    async def run(self) -> None:
        while not self._stopping:
            try:
                await self.turn()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("the chat sender of %s failed; trying again", self.robot.id)
                await self._nap(IDLE_SECONDS * self._pacing.scale)

    async def release(self) -> None:
        await self._store.release(self.robot.id, self._holder, self._clock())

    async def turn(self) -> None:
        """Send the robot's next due alert if this replica holds the robot and its limit allows; else wait a while."""
        pacing, now = self._pacing, self._clock()
        idle = IDLE_SECONDS * pacing.scale
        lease = await self._store.hold(self.robot.id, self._holder, now, pacing.lease)
        if lease is None:
            await self._nap(min(idle, pacing.lease / 3))
            return
        if lease.in_flight is not None:
            lease = await self._count_in_flight(lease, lease.in_flight)
            if lease is None:
                return
        sent = list(lease.sent)
        delivery = await self._store.next_due(self.robot.id, now)
        if delivery is None:
            await self._nap(idle)
            return
        wait = max(wait_before_next(sent, pacing.windows(self.robot.channel), now), lease.paused_until - now)
        if wait > 0:
            await self._nap(min(wait, pacing.lease / 3))  # then hold the lease again, and look again
            return
        if not await self._store.begin(self.robot.id, self._holder, now, pacing.lease):
            return
        answer = await self._post(delivery)
        ended = self._clock()
        paused_until = lease.paused_until
        if answer.verdict is Verdict.RATE_LIMITED:
            paused_until = ended + (answer.retry_after or self.robot.channel.throttle_seconds * pacing.scale)
        windows = pacing.windows(self.robot.channel)
        await self._store.ended(
            self.robot.id, self._holder, still_counting([*sent, ended], windows, ended), paused_until
        )
        await self._settle(delivery, answer, ended, paused_until)

    async def _count_in_flight(self, lease: Lease, started: float) -> Lease | None:
        """A message begun and never recorded as ended (its sender died, was cancelled or lost the lease mid-way,
        or the record failed) may have reached the API, at the latest by its deadline: count it as ending then
        (not now, which would count it again at every turn), and record it so, once; None if the lease was lost."""
        ended = started + self._pacing.deadline
        if not await self._store.count_in_flight(self.robot.id, self._holder, started, ended):
            return None
        return replace(lease, sent=[*lease.sent, ended], in_flight=None)

    async def _post(self, delivery: Delivery) -> Answer:
        channel = self.robot.channel
        text = alert_text(delivery.alert, self._console_url, self._locale)
        request = channel.request(self.robot.url, text, self._clock())
        try:
            # httpx's timeout bounds each phase (connect, each read): a server trickling its answer could outlast
            # the lease, and another replica send the message again. The deadline bounds the whole request.
            async with asyncio.timeout(self._pacing.deadline):
                response = await self._http.post(
                    request.url, content=request.body, headers={"Content-Type": "application/json; charset=utf-8"}
                )
        except TimeoutError:
            return Answer(Verdict.RETRY, f"no answer within {self._pacing.deadline:g} s")
        except httpx.HTTPError as exc:
            # The exception's type only: its text may carry the URL, a credential.
            return Answer(Verdict.RETRY, f"network error {type(exc).__name__}")
        return channel.read(response.status_code, response.headers, response.content)

    async def _settle(self, delivery: Delivery, answer: Answer, now: float, paused_until: float) -> None:
        robot, alert = self.robot, delivery.alert
        attempt = delivery.attempts + 1
        if answer.verdict is Verdict.DELIVERED:
            await self._store.settle(delivery, "sent", now, answer.detail)
            CHAT_MESSAGES.labels(robot.channel.name, "sent").inc()
            logger.info("chat alert %s about %s sent to %s", alert.kind, alert.reference, robot.id)
            return
        if answer.verdict is Verdict.REFUSED or attempt >= self._pacing.max_attempts:
            await self._store.settle(delivery, "failed", now, answer.detail)
            CHAT_MESSAGES.labels(robot.channel.name, "failed").inc()
            logger.error("chat alert %s about %s to %s given up after %d attempt(s): %s",
                         alert.kind, alert.reference, robot.id, attempt, answer.detail)  # fmt: skip
            return
        outcome = "rate_limited" if answer.verdict is Verdict.RATE_LIMITED else "retried"
        next_at = max(now + self._pacing.backoff(attempt), paused_until)
        await self._store.postpone(delivery, next_at, answer.detail)
        CHAT_MESSAGES.labels(robot.channel.name, outcome).inc()
        logger.warning("chat alert %s about %s to %s not delivered (%s), attempt %d; trying again in %.1f s",
                       alert.kind, alert.reference, robot.id, answer.detail, attempt, next_at - now)  # fmt: skip

    async def _nap(self, seconds: float) -> None:
        """Wait ``seconds``, or less if an alert was raised in this replica."""
        if self._stopping:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.woken.wait(), seconds)
        if not self._stopping:
            self.woken.clear()
