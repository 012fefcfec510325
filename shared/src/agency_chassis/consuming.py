"""The runner of every consumer: a use case decides what became of a message, the runner acts on it.

``Runner.consume`` subscribes a use case to its queue. For each delivery the handler gets
the typed event (FastStream parsed and validated it once), names its application in the
log context, works out the ``Attempt`` from the headers and the ``Backoff``, calls the use
case and hands its ``Outcome`` to ``Runner.apply``, the one place where retry, backoff and
exhaustion are decided:

- the outcome's events are published first, each confirmed; one that is not turns the
  outcome into ``RetryLater`` (the use case runs again and publishes them again);
- ``Done``: acknowledged;
- ``RetryLater``: a copy is parked in the delay queue of its backoff tier (confirmed), then
  the delivery is acknowledged; after the last attempt it is dead-lettered instead. The copy
  carries the outcome's ``memo`` (merged with the attempt's) to the next attempt;
- ``GiveUp``: dead-lettered for an operator.

Dead-lettering is a copy the runner sends to ``<queue>.dlq`` itself (confirmed, with
``x-dead-lettered-from`` / ``-at`` and ``x-dead-letter-reason``), then the delivery is
acknowledged: at-least-once, and whatever policies the broker has (without a dead-letter
target a rejected message would simply be dropped). If the copy is not confirmed the
delivery fails and comes back.

A payload that is not JSON or not the queue's event can never succeed: it is
dead-lettered at once. An exception the use case did not foresee is a ``RetryLater``
(logged with its traceback), so it too is retried with backoff and then dead-lettered.
Only a retry that cannot even be parked (the broker is gone) fails the delivery, which
is then requeued (``NACK_ON_ERROR``). A delivery RabbitMQ marks redelivered (that nack, or a
consumer that died or lost its connection with it) is parked in the shortest delay tier and
counted in ``x-redeliveries``, so a crash loop ends in the DLQ after ``REDELIVERY_LIMIT`` by our
own count, not by the broker's delivery limit (which RabbitMQ 4.3 no longer raises on a return).

``Runner.consume_batch`` is the same for a batch use case (group commit): a ``Batcher``
gathers the deliveries in flight (up to the prefetch), the use case gets their events and
attempts and returns one outcome per message, and each delivery goes through the same
``apply`` on its own: the use case's signature changes, the rules of what an outcome does to
a message do not.
"""

import inspect
import json
import logging
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

from aio_pika import IncomingMessage
from faststream import BaseMiddleware, ContextRepo
from faststream.message import StreamMessage
from faststream.middlewares import AckPolicy
from faststream.rabbit import RabbitBroker, RabbitRouter
from faststream.rabbit.annotations import RabbitMessage
from faststream.rabbit.subscriber import RabbitSubscriber
from pydantic import ValidationError

from agency_chassis.batching import Batcher
from agency_chassis.correlation import about_application
from agency_chassis.metrics import DEAD_LETTERED
from agency_chassis.outcomes import Attempt, Done, GiveUp, Outcome, RetryLater
from agency_chassis.publishing import MessageCopy, PublishFailed
from agency_chassis.retries import (
    ATTEMPT_HEADER,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERED_AT_HEADER,
    DEAD_LETTERED_FROM_HEADER,
    MEMO_HEADER,
    MEMO_VALUE_CHARS,
    REDELIVERIES_HEADER,
    Backoff,
    declare_delay_queues,
    memo_header,
    redeliveries,
)
from agency_shared.events import Event
from agency_shared.topology import EVENTS_EXCHANGE, ConsumerQueue

logger = logging.getLogger(__name__)

E = TypeVar("E", bound=Event)

# A delivery RabbitMQ marks redelivered: an earlier delivery of this very copy ended without an
# answer (the process died, or lost its connection, while handling it or holding it prefetched).
# Counted in the copy's own ``x-redeliveries`` and parked in the shortest delay tier, not run again
# at once: a message that kills its consumer every time reaches its DLQ after this many, whatever
# the broker counts (RabbitMQ 4.3 no longer raises a quorum queue's delivery count on a return).
# Not an attempt: a message merely prefetched by a consumer that was stopped used none.
REDELIVERY_LIMIT = 10
UseCase = Callable[[E, Attempt], Awaitable[Outcome]]
# A use case for the deliveries in flight together: one outcome per message, in order.
BatchUseCase = Callable[[Sequence[tuple[E, Attempt]]], Awaitable[Sequence[Outcome]]]
# How long the first message of a batch waits for company when nothing is being written (group commit).
BATCH_WAIT_SECONDS = 0.002


class DeathCause(StrEnum):
    """Why a message was dead-lettered: the start of its ``x-dead-letter-reason``."""

    GAVE_UP = "gave-up"  # the use case said it can never succeed
    EXHAUSTED = "attempts-exhausted"  # RetryLater on its last attempt
    REDELIVERED = "redelivered-too-often"  # its consumer kept ending without an answer
    UNREADABLE = "unreadable"  # not JSON, or not the queue's event


class Sender(Protocol):
    """What the runner sends through (``agency_chassis.publishing.EventPublisher``)."""

    async def publish(self, event: Event) -> None: ...

    async def send_copy(self, copy: MessageCopy, queue: str, expiration_ms: int | None = None) -> None: ...


def copy_of(message: IncomingMessage) -> MessageCopy:
    """The delivery as the runner sends it on (to a delay queue or the DLQ), from aio-pika's message."""
    return MessageCopy(
        body=message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        message_type=message.type,
        headers=dict(message.headers),
    )


async def dead_letter(
    sender: Sender, queue: ConsumerQueue[Event], message: MessageCopy, cause: DeathCause, reason: str
) -> None:
    """Send ``message`` to ``queue``'s DLQ, saying where, when and why it died (confirmed; raises if not)."""
    await sender.send_copy(
        message.with_headers(
            **{
                DEAD_LETTERED_FROM_HEADER: queue.name,
                DEAD_LETTERED_AT_HEADER: datetime.now(UTC).isoformat(timespec="milliseconds"),
                DEAD_LETTER_REASON_HEADER: f"{cause}: {reason}"[:MEMO_VALUE_CHARS],
            }
        ),
        queue.dead_letter_queue.name,
    )
    DEAD_LETTERED.labels(queue.name).inc()


class Runner:
    """Subscribes use cases to their queues and applies their outcomes; one per service."""

    def __init__(
        self, sender: Sender, backoff: Backoff, max_batch: int = 16, batch_wait_seconds: float = BATCH_WAIT_SECONDS
    ) -> None:
        self._sender = sender
        self._backoff = backoff
        self._queues: list[ConsumerQueue[Event]] = []
        self.max_batch = max_batch  # the prefetch: no more deliveries are in flight at once
        self.batch_wait_seconds = batch_wait_seconds

    def consume_batch(
        self, router: RabbitRouter, queue: ConsumerQueue[E], use_case: BatchUseCase[E]
    ) -> RabbitSubscriber:
        """Run ``use_case`` for the events on ``queue`` in batches of those in flight (group commit)."""

        async def alone(item: tuple[E, Attempt]) -> Outcome:
            try:
                [outcome] = await use_case([item])
            except Exception as exc:
                return unforeseen(exc, f"{item[0].event_id} from {queue.name}")
            return outcome

        async def decide_batch(batch: Sequence[tuple[E, Attempt]]) -> Sequence[Outcome]:
            if len(batch) == 1:
                return [await alone(batch[0])]
            try:
                return await use_case(batch)
            except Exception as exc:
                # Which message it was is not known: each goes again on its own, so one that always fails
                # does not hold back (and use up the attempts of) the others that came with it.
                logger.warning(
                    "a batch of %d from %s failed (%r): each message on its own", len(batch), queue.name, exc
                )
                return [await alone(item) for item in batch]

        batcher = Batcher(decide_batch, self.max_batch, self.batch_wait_seconds, name=queue.name)

        async def one_of_a_batch(event: E, attempt: Attempt) -> Outcome:
            return await batcher.submit((event, attempt))

        one_of_a_batch.__doc__ = inspect.getdoc(use_case)  # what the AsyncAPI document says of the subscriber
        return self.consume(router, queue, one_of_a_batch)

    def consume(self, router: RabbitRouter, queue: ConsumerQueue[E], use_case: UseCase[E]) -> RabbitSubscriber:
        """Run ``use_case`` for every event on ``queue``; described in the AsyncAPI document by its docstring."""
        self._queues.append(queue)
        # A router of its own, so what rejects unreadable payloads knows (and counts) the queue.
        own = RabbitRouter(middlewares=[DeadLetterUnreadable(queue, self._sender)])
        subscriber = own.subscriber(
            queue.declaration(passive=True),  # declared (or kept) by declare_topology before consuming starts
            EVENTS_EXCHANGE,
            ack_policy=AckPolicy.NACK_ON_ERROR,
            title=queue.name,
            description=inspect.getdoc(use_case),
        )

        model = queue.event  # FastStream parses and validates each body as the handler's annotation says

        async def handle(event: model, message: RabbitMessage) -> None:  # type: ignore[valid-type]
            typed = cast(E, event)
            about_application(typed.about_application())
            if message.raw_message.redelivered:
                await self.redelivered(queue, copy_of(message.raw_message))
            else:
                attempt = self._backoff.attempt(message.headers)
                outcome = await self.decide(queue, use_case, typed, attempt)
                await self.apply(queue, copy_of(message.raw_message), attempt, outcome)
            # returning acknowledges the delivery (AckPolicy.NACK_ON_ERROR): whatever became of it was confirmed

        subscriber(handle)
        router.include_router(own)
        return subscriber

    @staticmethod
    async def decide(queue: ConsumerQueue[E], use_case: UseCase[E], event: E, attempt: Attempt) -> Outcome:
        """The use case's outcome; an error it did not foresee is retried like an outage (then dead-lettered),
        never requeued at once: a defect must not spin, and only the runner decides what is retried."""
        try:
            return await use_case(event, attempt)
        except Exception as exc:
            return unforeseen(exc, f"{event.event_id} from {queue.name}")

    async def declare(self, broker: RabbitBroker) -> None:
        """Declare the delay queues of every queue consumed (the queues themselves are the topology's)."""
        for queue in self._queues:
            await declare_delay_queues(broker, queue, self._backoff)

    async def apply(
        self, queue: ConsumerQueue[Event], message: MessageCopy, attempt: Attempt, outcome: Outcome
    ) -> None:
        """Publish the outcome's events, then park or dead-letter ``message`` as it says (or nothing: ``Done``).

        The delivery may be acknowledged once this returns; it raises when a copy was not confirmed."""
        try:
            for event in outcome.publish:
                await self._sender.publish(event)
        except PublishFailed as exc:
            outcome = RetryLater(f"a follow-up event was not published: {exc}")
        if isinstance(outcome, Done):
            return
        if isinstance(outcome, GiveUp):
            logger.error("dead-lettering %s from %s: %s", message.message_id, queue.name, outcome.reason)
            await dead_letter(self._sender, queue, message, DeathCause.GAVE_UP, outcome.reason)
            return
        memo = {**attempt.memo, **outcome.memo}
        if attempt.last:
            logger.error(
                "dead-lettering %s from %s after %d attempts: %s",
                message.message_id, queue.name, attempt.number, outcome.reason,
            )  # fmt: skip
            # with what this attempt learnt (a replay then finds it)
            remembered = message.with_headers(**{MEMO_HEADER: memo_header(memo)}) if outcome.memo else message
            await dead_letter(self._sender, queue, remembered, DeathCause.EXHAUSTED, outcome.reason)
            return
        delay_ms = self._backoff.delay_ms(attempt.number)
        headers = {ATTEMPT_HEADER: attempt.number + 1, **({MEMO_HEADER: memo_header(memo)} if memo else {})}
        await self._sender.send_copy(
            message.with_headers(**headers),
            queue.retry_queue(delay_ms).name,
            expiration_ms=self._backoff.expiration_ms(delay_ms),
        )
        logger.warning("%s: %s; retrying in %d ms", message.message_id, outcome.reason, delay_ms)

    async def redelivered(self, queue: ConsumerQueue[Event], message: MessageCopy) -> None:
        """Park a redelivered copy in the shortest delay tier, counted; dead-letter it past ``REDELIVERY_LIMIT``."""
        count = redeliveries(message.headers) + 1
        if count > REDELIVERY_LIMIT:
            logger.error(
                "dead-lettering %s from %s: redelivered %d times (its consumer keeps ending without an answer)",
                message.message_id, queue.name, count - 1,
            )  # fmt: skip
            reason = f"redelivered {count - 1} times"
            await dead_letter(self._sender, queue, message, DeathCause.REDELIVERED, reason)
            return
        delay_ms = self._backoff.delay_ms(1)
        await self._sender.send_copy(
            message.with_headers(**{REDELIVERIES_HEADER: count}),
            queue.retry_queue(delay_ms).name,
            expiration_ms=self._backoff.expiration_ms(delay_ms),
        )
        logger.warning("%s from %s redelivered (%d): parked for %d ms", message.message_id, queue.name, count, delay_ms)


def unforeseen(exc: Exception, what: str) -> RetryLater:
    """An error a use case did not foresee, logged (with where it happened) and retried like an outage."""
    if isinstance(exc, ValidationError):
        # Where it happened, but not pydantic's text: it quotes the values it refused.
        where = "".join(traceback.format_tb(exc.__traceback__))
        logger.error("%s failed unexpectedly: %s\n%s", what, without_values(exc), where)
        return RetryLater(f"unexpected ValidationError: {without_values(exc)}")
    logger.error("%s failed unexpectedly", what, exc_info=exc)
    return RetryLater(f"unexpected {type(exc).__name__}: {exc}")


def without_values(exc: Exception) -> str:
    """What was wrong with a message, without what it held: a validation error names each field and the kind of
    error, never the rejected value (pydantic's own text quotes it, and it may be a name or an address)."""
    if isinstance(exc, ValidationError):
        problems = [
            f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['type']}"
            for error in exc.errors(include_url=False, include_input=False, include_context=False)
        ]
        return f"{exc.error_count()} validation error(s) for {exc.title}: {'; '.join(problems)}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 ({exc.reason} at byte {exc.start})"
    return f"{type(exc).__name__}: {exc}"


class DeadLetterUnreadable:
    """A router middleware: a payload that is not valid JSON or not the queue's event is dead-lettered at once."""

    def __init__(self, queue: ConsumerQueue[Event], sender: Sender) -> None:
        self.queue = queue
        self.sender = sender

    def __call__(self, msg: IncomingMessage | None, /, *, context: ContextRepo) -> "_UnreadableScope":
        return _UnreadableScope(msg, context=context, outer=self)


class _UnreadableScope(BaseMiddleware):
    def __init__(self, msg: IncomingMessage | None, /, *, context: ContextRepo, outer: DeadLetterUnreadable) -> None:
        super().__init__(msg, context=context)
        self.outer = outer

    async def consume_scope(self, call_next: Any, msg: StreamMessage[Any]) -> Any:
        try:
            return await call_next(msg)
        except (ValidationError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            problem = without_values(exc)
        # Outside the except block: the exception's cause would carry the rejected values into any traceback logged.
        queue = self.outer.queue
        logger.error("dead-lettering unreadable message %s from %s: %s", msg.message_id, queue.name, problem)
        await dead_letter(self.outer.sender, queue, copy_of(msg.raw_message), DeathCause.UNREADABLE, problem)
        return None  # acknowledged: its copy is in the DLQ
