"""Delayed retries through RabbitMQ: exponential backoff with jitter, never a sleep inside a handler."""

import random
from dataclasses import dataclass

from faststream.rabbit import RabbitBroker
from faststream.rabbit.message import RabbitMessage

from agency_shared.topology import ConsumerQueue

ATTEMPT_HEADER = "x-attempt"


@dataclass(frozen=True)
class Backoff:
    """Attempt ``n`` (1-based) failed: wait about ``base * 2**(n-1)`` seconds, at most ``cap``."""

    base_seconds: float
    cap_seconds: float
    max_attempts: int

    def delay_ms(self, failed_attempt: int) -> int:
        return int(min(self.base_seconds * 2 ** (failed_attempt - 1), self.cap_seconds) * 1000)

    def tiers_ms(self) -> list[int]:
        return sorted({self.delay_ms(n) for n in range(1, self.max_attempts)})


def attempt_of(message: RabbitMessage) -> int:
    """Which attempt this delivery is (1 for the first)."""
    value = message.headers.get(ATTEMPT_HEADER, 1)
    return value if isinstance(value, int) and value > 0 else 1


class RetryScheduler:
    """Parks a copy of a message in the retry queue for its delay; the caller then acks the original."""

    def __init__(self, broker: RabbitBroker, consumer: ConsumerQueue, backoff: Backoff, timeout: float) -> None:
        self._broker = broker
        self._consumer = consumer
        self._backoff = backoff
        self._timeout = timeout

    async def declare(self) -> None:
        for delay_ms in self._backoff.tiers_ms():
            await self._broker.declare_queue(self._consumer.retry_queue(delay_ms))

    def exhausted(self, message: RabbitMessage) -> bool:
        return attempt_of(message) >= self._backoff.max_attempts

    async def schedule(self, message: RabbitMessage) -> int:
        """Publish the retry (confirmed) and return its delay in ms."""
        attempt = attempt_of(message)
        delay_ms = self._backoff.delay_ms(attempt)
        # Jitter downwards only: a message may leave its tier early, never late.
        expiration_ms = max(1, int(delay_ms * random.uniform(0.75, 1.0)))  # noqa: S311 - not for security
        raw = message.raw_message
        await self._broker.publish(
            message.body,
            routing_key=self._consumer.retry_queue(delay_ms).name,
            headers={**message.headers, ATTEMPT_HEADER: attempt + 1},
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            content_type=message.content_type,
            message_type=raw.type,
            expiration=expiration_ms / 1000,
            persist=True,
            mandatory=True,
            timeout=self._timeout,
        )
        return delay_ms
