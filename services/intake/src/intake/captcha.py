"""The human check: ALTCHA proof-of-work challenges, and solutions verified and spent once across replicas.

A submission without a valid solution is still accepted; its event says ``human_check="none"``.
Notifications holds such a submission back from the staff until its address is verified
(``notifications.holding``): it reads ``human_check`` from the event, so nothing here decides that.
"""

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

import altcha
from prometheus_client import Counter
from pymongo import ASCENDING
from pymongo.asynchronous.collection import AsyncCollection
from pymongo.errors import DuplicateKeyError, PyMongoError

from agency_chassis.mongo import MongoConnection
from agency_shared.events import HumanCheck

logger = logging.getLogger(__name__)

# The form field and JSON key that carry the widget's solution (its base64 payload).
SOLUTION_FIELD = "altcha"
# PBKDF2 is the proof of work the vendored widget's own worker (static/altcha/pbkdf2.js) computes.
ALGORITHM = "PBKDF2/SHA-256"
# A real payload is about 600 characters; anything far larger is no solution and not worth decoding.
MAX_SOLUTION_LENGTH = 4096
COLLECTION = "captcha_solutions"

HUMAN_CHECKS = Counter(
    "intake_human_checks_total",
    "Human checks of submissions by outcome "
    "(passed, missing, malformed, bad_signature, expired, wrong, reused, unverifiable, off)",
    ["form", "outcome"],
)


class SolutionsUnavailable(Exception):
    """The store of spent solutions did not answer: whether this one was spent cannot be told."""


class SpentSolutions(Protocol):
    async def spend(self, challenge: str, submission: str, expires_at: datetime) -> bool:
        """Spend the solution of ``challenge`` on ``submission``: false if another submission spent it already;
        ``SolutionsUnavailable`` if the store does not answer."""
        ...


class HumanChecks(Protocol):
    """What intake asks: a challenge to hand out, and which check a submission passed."""

    def challenge(self) -> dict[str, Any] | None: ...

    async def check(self, kind: str, solution: object, submission: str) -> HumanCheck: ...


class CaptchaOff:
    """CAPTCHA=off: no challenge is handed out and every submission is marked as not asked."""

    def __init__(self) -> None:
        self._off: dict[str, Counter] = {}  # each form's count, looked up once

    def challenge(self) -> dict[str, Any] | None:
        return None

    async def check(self, kind: str, solution: object, submission: str) -> HumanCheck:
        off = self._off.get(kind)
        if off is None:
            off = self._off[kind] = HUMAN_CHECKS.labels(kind, "off")
        off.inc()
        return "off"


class AltchaCheck:
    """Challenges signed with the HMAC key; a solution passes once: signed by us, unexpired, right, unspent.

    Spent is per challenge (its signature), not per payload: one challenge may have several
    solutions, and a payload can be re-encoded. The same submission (same id: a retry with its
    Idempotency-Key after a 503) may present its solution again.
    """

    def __init__(
        self,
        hmac_key: str,
        cost: int,
        expiry_seconds: int,
        spent: SpentSolutions,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._key, self._cost, self._expiry, self._spent, self._clock = hmac_key, cost, expiry_seconds, spent, clock

    def challenge(self) -> dict[str, Any]:
        expires_at = int(self._clock()) + self._expiry
        made = altcha.create_challenge(ALGORITHM, self._cost, expires_at=expires_at, hmac_secret=self._key)
        return made.to_dict()

    async def check(self, kind: str, solution: object, submission: str) -> HumanCheck:
        outcome, payload = await self._verify(solution)
        if payload is not None:
            signature = str(payload.challenge.signature)
            challenge = hashlib.sha256(signature.encode()).hexdigest()
            expires_at = datetime.fromtimestamp(payload.challenge.parameters.expires_at or 0, UTC)
            try:
                if not await self._spent.spend(challenge, submission, expires_at):
                    outcome = "reused"
            except SolutionsUnavailable:
                # The submission is still accepted, as one that passed no check.
                logger.warning("the spent ALTCHA solutions could not be read", exc_info=True)
                outcome = "unverifiable"
        HUMAN_CHECKS.labels(kind, outcome).inc()
        if outcome != "passed":
            logger.info("%s %s passed no human check: ALTCHA solution %s", kind, submission, outcome)
            return "none"
        return "altcha"

    async def _verify(self, solution: object) -> tuple[str, altcha.Payload | None]:
        """The outcome of checking ``solution``, and its payload when it passed."""
        if solution is None or solution == "":
            return "missing", None
        if not isinstance(solution, str) or len(solution) > MAX_SOLUTION_LENGTH:
            return "malformed", None
        try:
            # The key derivation is a few ms of CPU: off the event loop.
            result = await asyncio.to_thread(altcha.verify_solution, solution, self._key)
            payload = altcha.Payload.from_base64(solution) if result.verified else None
        except Exception:
            return "malformed", None
        if result.error:
            return "malformed", None
        if result.expired:
            return "expired", None
        if result.invalid_signature:
            return "bad_signature", None
        if payload is None:
            return "wrong", None
        if payload.challenge.parameters.expires_at is None:  # we sign none without: not ours after all
            return "bad_signature", None
        return "passed", payload


class MongoSpentSolutions:
    """``captcha_solutions``: one document per spent challenge, deleted by a TTL index once it expired."""

    def __init__(self, connection: MongoConnection, database: str) -> None:
        self._connection, self._database = connection, database

    @property
    def _solutions(self) -> AsyncCollection[dict[str, Any]]:
        return self._connection.client[self._database][COLLECTION]

    async def ensure_indexes(self) -> None:
        await self._solutions.create_index([("expires_at", ASCENDING)], expireAfterSeconds=0, name="expires_at_ttl")

    async def spend(self, challenge: str, submission: str, expires_at: datetime) -> bool:
        try:
            await self._solutions.insert_one({"_id": challenge, "submission": submission, "expires_at": expires_at})
            return True
        except DuplicateKeyError:
            first = await self._solutions.find_one({"_id": challenge}, {"submission": 1})
            return first is not None and first["submission"] == submission
        except PyMongoError as exc:
            raise SolutionsUnavailable(str(exc)) from exc
