"""How long the notification ledger keeps an email's entry, and the purge that deletes older ones.

An entry exists so that a redelivered event sends no email twice; it is not kept forever, as its
recipient is a personal address (an erasure forgets it sooner). An entry is purged once its last
change is ``NOTIFICATION_LEDGER_RETENTION_DAYS`` old, plus a margin: the longest a message can take
to come back through the retry queues (``MAX_ATTEMPTS`` delays of at most ``RETRY_MAX_SECONDS``)
and a day of backlog. A message still in flight for the email's event is therefore always younger
than its entry's purge, and so is a dead letter, as long as dead letters are kept no longer than
the retention. The purge runs at start-up and then every hour, on every replica (deleting what is
already gone is harmless).
"""

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from pymongo.errors import PyMongoError

from agency_shared.events import utc_now

logger = logging.getLogger(__name__)
PURGE_INTERVAL_SECONDS = 3600.0
BACKLOG_MARGIN = timedelta(days=1)


class PurgeableLedger(Protocol):
    async def purge(self, changed_before: datetime) -> int:
        """Delete the entries last changed before ``changed_before``; how many there were."""
        ...


@dataclass(frozen=True)
class LedgerRetention:
    """Entries are kept ``retention`` after their last change, plus ``margin``."""

    retention: timedelta
    margin: timedelta

    @classmethod
    def of(cls, retention_days: int, max_attempts: int, retry_max_seconds: float) -> "LedgerRetention":
        return cls(timedelta(days=retention_days), timedelta(seconds=max_attempts * retry_max_seconds) + BACKLOG_MARGIN)

    def cutoff(self, now: datetime) -> datetime:
        return now - self.retention - self.margin

    async def purge(self, ledger: PurgeableLedger, now: datetime) -> int:
        purged = await ledger.purge(self.cutoff(now))
        if purged:
            logger.info("notification ledger: %d entries older than the retention purged", purged)
        return purged

    async def purge_periodically(
        self,
        ledger: PurgeableLedger,
        interval_seconds: float = PURGE_INTERVAL_SECONDS,
        now: Callable[[], datetime] = utc_now,
    ) -> None:
        """Purge now and then every ``interval_seconds`` until cancelled; a database outage waits for the next round."""
        while True:
            try:
                await self.purge(ledger, now())
            except PyMongoError as exc:
                logger.warning("notification ledger purge failed, next try in %.0f s: %r", interval_seconds, exc)
            await asyncio.sleep(interval_seconds)
