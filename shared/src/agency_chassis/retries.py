"""Delayed retries through RabbitMQ: which attempt a delivery is, exponential backoff with jitter, the delay queues."""

import json
import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from faststream.rabbit import RabbitBroker

from agency_chassis.outcomes import Attempt, Memo
from agency_shared.topology import ConsumerQueue

logger = logging.getLogger(__name__)

# The attempt a copy parked in a delay queue will be (absent: the first).
ATTEMPT_HEADER = "x-attempt"
# How many times an operator replayed the message from its dead-letter queue.
REPLAYED_HEADER = "x-replayed"
# What earlier attempts remembered for the next one (``RetryLater.memo``): a JSON object of strings.
MEMO_HEADER = "x-memo"
# Each value kept at most this long: the headers must fit one AMQP frame whatever an SMTP server replied.
MEMO_VALUE_CHARS = 512
# How often RabbitMQ redelivered this copy (its consumer died, or lost its connection, before answering).
REDELIVERIES_HEADER = "x-redeliveries"
# On a dead letter (the runner's copy in ``<queue>.dlq``): which queue it died in, when, and why
# (``DeathCause``, then the outcome's reason after ``": "``, at most ``MEMO_VALUE_CHARS``).
DEAD_LETTERED_FROM_HEADER = "x-dead-lettered-from"
DEAD_LETTERED_AT_HEADER = "x-dead-lettered-at"
DEAD_LETTER_REASON_HEADER = "x-dead-letter-reason"


def redeliveries(headers: Mapping[str, Any]) -> int:
    value = headers.get(REDELIVERIES_HEADER, 0)
    return value if isinstance(value, int) and value > 0 else 0


def memo_of(headers: Mapping[str, Any]) -> dict[str, str]:
    """The memo a delivery carries; one that cannot be read counts as none (and is logged)."""
    value = headers.get(MEMO_HEADER)
    if value is None:
        return {}
    try:
        memo = json.loads(value)
    except (TypeError, ValueError):
        memo = None
    if not isinstance(memo, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in memo.items()):
        logger.error("ignoring an unreadable %s header", MEMO_HEADER)
        return {}
    return memo


def memo_header(memo: Memo) -> str:
    return json.dumps(
        {key: value[:MEMO_VALUE_CHARS] for key, value in memo.items()}, ensure_ascii=False, sort_keys=True
    )


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (1-based) failed: wait about ``base * 2**(n-1)`` seconds, at most ``cap``.

    The one owner of the rule of when a message has had its last attempt.
    """

    base_seconds: float
    cap_seconds: float
    max_attempts: int

    def attempt(self, headers: Mapping[str, Any]) -> Attempt:
        """Which attempt a delivery with these headers is, and whether it is the last one."""
        value = headers.get(ATTEMPT_HEADER, 1)
        number = value if isinstance(value, int) and value > 0 else 1
        return Attempt(
            number=number,
            last=number >= self.max_attempts,
            replayed=REPLAYED_HEADER in headers,
            memo=memo_of(headers),
        )

    def delay_ms(self, failed_attempt: int) -> int:
        return int(min(self.base_seconds * 2 ** (failed_attempt - 1), self.cap_seconds) * 1000)

    def expiration_ms(self, delay_ms: int) -> int:
        """The copy's own expiration in its delay queue: jittered downwards only, so it may leave early, never late."""
        return max(1, int(delay_ms * random.uniform(0.75, 1.0)))  # noqa: S311 - not for security

    def tiers_ms(self) -> list[int]:
        return sorted({self.delay_ms(n) for n in range(1, self.max_attempts)})


async def declare_delay_queues(broker: RabbitBroker, consumer: ConsumerQueue[Any], backoff: Backoff) -> None:
    """One delay queue per backoff tier of ``consumer`` (idempotent)."""
    for delay_ms in backoff.tiers_ms():
        await broker.declare_queue(consumer.retry_queue(delay_ms))
