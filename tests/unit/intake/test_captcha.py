"""The human check's decisions with a fake store of spent solutions: which submissions pass, and why not."""

import hashlib
import re
import time
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from intake.captcha import AltchaCheck, CaptchaOff
from tests.support.captcha import TEST_COST, forged, solve, wrong
from tests.support.fakes import FakeSpentSolutions

KEY = "unit-test-captcha-key-of-32-characters!"
STATIC = Path(__file__).resolve().parents[3] / "services" / "intake" / "src" / "intake" / "static"


def check(spent: FakeSpentSolutions | None = None, clock: float | None = None) -> AltchaCheck:
    now = time.time() if clock is None else clock
    return AltchaCheck(KEY, TEST_COST, 600, spent or FakeSpentSolutions(), clock=lambda: now)


def outcomes(outcome: str) -> float:
    return REGISTRY.get_sample_value("intake_human_checks_total", {"form": "application", "outcome": outcome}) or 0.0


def test_a_challenge_is_signed_expires_and_asks_for_the_widgets_algorithm() -> None:
    challenge = check(clock=1_000_000).challenge()
    assert challenge["parameters"]["algorithm"] == "PBKDF2/SHA-256"
    assert challenge["parameters"]["cost"] == TEST_COST
    assert challenge["parameters"]["expiresAt"] == 1_000_600
    assert re.fullmatch(r"[0-9a-f]{64}", challenge["signature"])


async def test_a_right_unspent_solution_passes_and_is_spent_until_its_challenge_expires() -> None:
    spent = FakeSpentSolutions()
    human = check(spent)
    challenge = human.challenge()
    passed = outcomes("passed")
    assert await human.check("application", solve(challenge), "application:1") == "altcha"
    assert outcomes("passed") == passed + 1
    [(digest, submission)] = spent.spent.items()
    assert digest == hashlib.sha256(challenge["signature"].encode()).hexdigest()
    assert submission == "application:1"
    assert spent.expiries[digest].timestamp() == challenge["parameters"]["expiresAt"]


@pytest.mark.parametrize(
    ("solution", "outcome"),
    [
        (None, "missing"),
        ("", "missing"),
        ("not base64 at all!", "malformed"),
        ("eyJjaGFsbGVuZ2UiOiBbXX0=", "malformed"),  # {"challenge": []}
        ({"challenge": {}}, "malformed"),  # JSON that is no string
        (["a", "b"], "malformed"),  # the field twice in a form
        ("A" * 5000, "malformed"),
    ],
)
async def test_no_solution_or_a_malformed_one_passes_no_check(solution: object, outcome: str) -> None:
    before = outcomes(outcome)
    assert await check().check("application", solution, "application:1") == "none"
    assert outcomes(outcome) == before + 1


async def test_a_solution_of_a_challenge_signed_with_another_key_passes_no_check() -> None:
    before = outcomes("bad_signature")
    assert await check().check("application", forged("another key, not intake's one"), "application:1") == "none"
    assert outcomes("bad_signature") == before + 1


async def test_an_expired_challenge_passes_no_check() -> None:
    before = outcomes("expired")
    assert await check().check("application", forged(KEY, expires_in=-1), "application:1") == "none"
    assert outcomes("expired") == before + 1


async def test_a_wrong_solution_passes_no_check() -> None:
    human = check()
    before = outcomes("wrong")
    assert await human.check("application", wrong(solve(human.challenge())), "application:1") == "none"
    assert outcomes("wrong") == before + 1


async def test_a_solution_spent_by_another_submission_passes_no_check_but_its_own_retry_does() -> None:
    human = check()
    solution = solve(human.challenge())
    assert await human.check("application", solution, "application:1") == "altcha"
    before = outcomes("reused")
    assert await human.check("application", solution, "application:2") == "none"
    assert outcomes("reused") == before + 1
    assert await human.check("application", solution, "application:1") == "altcha"  # a retry with its key


async def test_a_solution_whose_spending_cannot_be_recorded_passes_no_check() -> None:
    human = check(FakeSpentSolutions(down=True))
    before = outcomes("unverifiable")
    assert await human.check("application", solve(human.challenge()), "application:1") == "none"
    assert outcomes("unverifiable") == before + 1


async def test_with_the_captcha_off_there_is_no_challenge_and_every_submission_is_marked_off() -> None:
    off = CaptchaOff()
    assert off.challenge() is None
    assert await off.check("enquiry", "anything", "enquiry:1") == "off"


def test_the_vendored_widget_is_the_one_its_note_describes() -> None:
    note = (STATIC / "altcha" / "README.md").read_text(encoding="utf-8")
    listed = dict(re.findall(r"^\| `([^`]+)` \| .* \| `([0-9a-f]{64})` \|$", note, re.MULTILINE))
    assert set(listed) == {"altcha.min.js", "altcha.css", "pbkdf2.js", "zh-cn.js"}
    for name, digest in listed.items():
        assert hashlib.sha256((STATIC / "altcha" / name).read_bytes()).hexdigest() == digest, name
    assert "MIT" in (STATIC / "altcha" / "LICENSE.txt").read_text(encoding="utf-8")
