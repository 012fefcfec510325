"""argon2 off the event loop, a bounded number at once; and the audit key production requires."""

import asyncio
import threading
from typing import Literal

from argon2 import PasswordHasher

from casework.passwords import PasswordWork, hash_password
from casework.settings import DEVELOPMENT_AUDIT_KEY, CaseworkSettings


class CountingHasher(PasswordHasher):
    """Each verification waits at a gate the test opens, and notes how many ran at once."""

    def __init__(self, loop: asyncio.AbstractEventLoop, watch_for: int) -> None:
        super().__init__()
        self.loop, self.watch_for = loop, watch_for
        self.gate, self.lock = threading.Event(), threading.Lock()
        self.reached = asyncio.Event()
        self.running = self.peak = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
        with self.lock:
            self.running += 1
            self.peak = max(self.peak, self.running)
            if self.running == self.watch_for:
                self.loop.call_soon_threadsafe(self.reached.set)
        try:
            self.gate.wait(timeout=30)
            return super().verify(hash, password)
        finally:
            with self.lock:
                self.running -= 1


async def test_no_more_verifications_run_at_once_than_the_bound() -> None:
    hasher = CountingHasher(asyncio.get_running_loop(), watch_for=2)
    work = PasswordWork(hasher, at_once=2)
    stored = hash_password("correct horse battery staple")
    checks = [asyncio.create_task(work.verify(stored, "correct horse battery staple")) for _ in range(6)]
    await hasher.reached.wait()
    hasher.gate.set()
    assert all(check.matches for check in await asyncio.gather(*checks))
    assert hasher.peak == 2


def production(**values: str) -> CaseworkSettings:
    return CaseworkSettings.model_validate({"environment": "production", **values})


def test_production_requires_an_audit_key_of_its_own() -> None:
    def refused(settings: CaseworkSettings) -> bool:
        return "AUDIT_HMAC_KEY" in {problem.variable for problem in settings.production_problems()}

    assert refused(production())
    assert refused(production(audit_hmac_key="short"))
    assert refused(production(audit_hmac_key=DEVELOPMENT_AUDIT_KEY))
    assert not refused(production(audit_hmac_key="k" * 32))
    assert production(audit_hmac_key="k" * 32).audit_key() == b"k" * 32
    assert CaseworkSettings.model_validate({"environment": "test"}).audit_key() == DEVELOPMENT_AUDIT_KEY.encode()
