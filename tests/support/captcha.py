"""Solving ALTCHA challenges as the widget does (with the altcha library's own solver), and forging bad ones."""

import time
from typing import Any

import altcha

from intake.captcha import ALGORITHM

# Cheap challenges for tests: a handful of PBKDF2 iterations per attempt.
TEST_COST = 10


def solve(challenge: dict[str, Any]) -> str:
    """The payload the widget would post as ``altcha`` for ``challenge`` (JSON from /v1/captcha/challenge)."""
    parsed = altcha.Challenge.from_dict(challenge)
    solution = altcha.solve_challenge(parsed, timeout=30)
    assert solution is not None, "the challenge could not be solved"
    return altcha.Payload(parsed, solution).to_base64()


def forged(key: str, expires_in: int = 600, cost: int = TEST_COST) -> str:
    """A solved challenge signed with ``key``: a wrong key is a bad signature, a negative ``expires_in`` expired."""
    challenge = altcha.create_challenge(ALGORITHM, cost, expires_at=int(time.time()) + expires_in, hmac_secret=key)
    return solve(challenge.to_dict())


def wrong(payload: str) -> str:
    """``payload`` with another derived key: signed by intake, but not a solution."""
    parsed = altcha.Payload.from_base64(payload)
    parsed.solution.derived_key = "00" * 32
    return parsed.to_base64()
