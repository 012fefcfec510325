"""Group commit: the deliveries in flight handed to a use case together, each still acknowledged on its own.

RabbitMQ delivers up to the prefetch count at once and each delivery runs in a task of its
own. A ``Batcher`` collects them: the first to arrive when nothing is being written waits
``wait_seconds`` for company, then the batch (at most ``max_size``) goes to the use case in
one call; deliveries that arrive while a batch is written form the next one, which starts as
soon as it is done. So a quiet system adds at most ``wait_seconds`` to a message, and a busy
one writes as many messages per round trip as are waiting.

The use case returns one ``Outcome`` per message, in order; each delivery then goes through
the runner's ``apply`` alone (published, parked, dead-lettered or acknowledged), so a failure
inside a batch fails only the messages whose outcomes say so.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agency_chassis.correlation import batch_context
from agency_chassis.outcomes import Attempt, Outcome

logger = logging.getLogger(__name__)

E = TypeVar("E")
BatchUseCase = Callable[[Sequence[tuple[E, Attempt]]], Awaitable[Sequence[Outcome]]]


@dataclass(eq=False)
class Batcher(Generic[E]):
    """Gathers the messages of one queue for its batch use case."""

    use_case: BatchUseCase[E]
    max_size: int
    wait_seconds: float
    name: str = "batch"
    _waiting: list[tuple[E, Attempt, "asyncio.Future[Outcome]"]] = field(default_factory=list, init=False)
    _writer: "asyncio.Task[None] | None" = field(default=None, init=False)

    async def submit(self, event: E, attempt: Attempt) -> Outcome:
        """The outcome of ``event`` once the batch it joined was handled."""
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._waiting.append((event, attempt, future))
        if self._writer is None:
            # The batch is about many messages, not the first one's: its lines name the message they are about
            # (``agency_chassis.correlation.about_event``).
            self._writer = asyncio.create_task(self._write(), context=batch_context())
        return await future

    async def _write(self) -> None:
        batch: list[tuple[E, Attempt, asyncio.Future[Outcome]]] = []
        try:
            await asyncio.sleep(self.wait_seconds)  # company for a lone message
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_size], self._waiting[self.max_size :]
                outcomes = await self.use_case([(event, attempt) for event, attempt, _ in batch])
                if len(outcomes) != len(batch):
                    raise RuntimeError(f"{self.name}: {len(outcomes)} outcomes for a batch of {len(batch)}")
                for (_, _, future), outcome in zip(batch, outcomes, strict=True):
                    future.set_result(outcome)
                batch = []
        except BaseException as exc:
            # A defect, or cancelled at shutdown: every delivery still waiting fails (and the broker returns it).
            for _, _, future in [*batch, *self._waiting]:
                if not future.done():
                    if isinstance(exc, Exception):
                        future.set_exception(exc)
                    else:
                        future.cancel()
            self._waiting = []
            if not isinstance(exc, Exception):
                raise
            logger.error("%s: a batch failed: %r", self.name, exc)
        finally:
            self._writer = None
