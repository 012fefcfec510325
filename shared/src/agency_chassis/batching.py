"""Group commit: work that concurrent tasks ask for at about the same time, done in one go.

A ``Batcher`` collects what it is asked (``submit``) and hands it to one ``handle`` call:
the first item to arrive when nothing is being handled waits ``wait_seconds`` for company,
then the batch (at most ``max_size``) is handled; items that arrive meanwhile form the next
batch, which starts as soon as the one before is done. So a quiet system adds at most
``wait_seconds`` to an item, and a busy one does as many items per round trip as are waiting.
Each caller gets its own result back, or the exception the batch failed with.

Two uses: the runner hands the deliveries in flight (up to the prefetch) to a batch use
case (``Runner.consume_batch``), each delivery then acknowledged on its own; and an adapter
can coalesce the database commands of concurrent handlers (the notification ledger's
claims and "sent" marks), each caller still waiting until its own write is durable.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from agency_chassis.correlation import batch_context

logger = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")


@dataclass(eq=False)
class Batcher(Generic[T, R]):
    """Gathers items for ``handle``, which answers one result per item, in order."""

    handle: Callable[[Sequence[T]], Awaitable[Sequence[R]]]
    max_size: int
    wait_seconds: float = 0.0
    name: str = "batch"
    _waiting: list[tuple[T, "asyncio.Future[R]"]] = field(default_factory=list, init=False)
    _writer: "asyncio.Task[None] | None" = field(default=None, init=False)

    def __post_init__(self) -> None:
        if self.max_size < 1:
            raise ValueError(f"{self.name}: a batch holds at least one item, not {self.max_size}")

    async def submit(self, item: T) -> R:
        """The result for ``item`` once the batch it joined was handled (or the exception it failed with)."""
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():  # (one cancelled before it ran never cleared itself)
            # The batch is about many items, not the first one's: its log lines name the message they are
            # about (``agency_chassis.correlation.about_event``).
            self._writer = asyncio.create_task(self._write(), context=batch_context())
        return await future

    async def _write(self) -> None:
        batch: list[tuple[T, asyncio.Future[R]]] = []
        try:
            await asyncio.sleep(self.wait_seconds)  # company for a lone item (0: those ready in this turn)
            while self._waiting:
                batch, self._waiting = self._waiting[: self.max_size], self._waiting[self.max_size :]
                try:
                    results = await self.handle([item for item, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{self.name}: {len(results)} results for a batch of {len(batch)}")
                except Exception as exc:  # this batch fails, each caller with the error; the next one goes on
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    batch = []
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                batch = []
        except BaseException:  # cancelled (shutdown): every caller still waiting is cancelled too
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting = []
            raise
        finally:
            self._writer = None
