"""Verification links' tokens: notifications signs, intake reads back; tampered, foreign and expired ones refused."""

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from agency_chassis.email_verification import ExpiredToken, InvalidToken, VerificationTokens
from agency_chassis.settings import VerificationSettings

SECRET = "a-test-secret-of-more-than-32-characters-0123"
ISSUED = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
APPLICATION = uuid.UUID("3f0c2a6e-1b1d-4a51-9a43-0d7f1a2b3c4d")


def tokens(secret: str = SECRET, days: int = 7) -> VerificationTokens:
    return VerificationTokens(secret, timedelta(days=days))


def test_a_token_vouches_for_the_application_the_address_and_the_language_until_it_expires() -> None:
    token = tokens().issue(APPLICATION, "用户@例子.广告", "zh-CN", ISSUED)
    claim = tokens().check(token, ISSUED + timedelta(days=6, hours=23))  # another replica, the same secret
    assert (claim.application_id, claim.email, claim.locale) == (APPLICATION, "用户@例子.广告", "zh-CN")
    assert claim.expires_at == ISSUED + timedelta(days=7)
    assert re.fullmatch(r"[A-Za-z0-9_.\-]+", token)  # one URL path segment


def test_an_expired_token_says_what_it_was_for() -> None:
    token = tokens().issue(APPLICATION, "li.wei@mapletea.example", "en", ISSUED)
    with pytest.raises(ExpiredToken) as expired:
        tokens().check(token, ISSUED + timedelta(days=7))
    assert expired.value.claim.application_id == APPLICATION


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t[:10] + ("x" if t[10] != "x" else "y") + t[11:],  # payload changed
        lambda t: t[: len(t) // 2],  # cut short
        lambda t: "",
        lambda t: "not-a-token",
    ],
)
def test_a_tampered_or_mangled_token_is_invalid(mangle: object) -> None:
    token = tokens().issue(APPLICATION, "li.wei@mapletea.example", "en", ISSUED)
    with pytest.raises(InvalidToken):
        tokens().check(mangle(token), ISSUED)  # type: ignore[operator]


def test_a_token_signed_with_another_secret_is_invalid() -> None:
    token = tokens("another-secret-of-more-than-32-characters-xyz").issue(APPLICATION, "a@b.example", "en", ISSUED)
    with pytest.raises(InvalidToken):
        tokens().check(token, ISSUED)


def test_a_different_address_makes_a_different_token() -> None:
    one = tokens().issue(APPLICATION, "li.wei@mapletea.example", "en", ISSUED)
    other = tokens().issue(APPLICATION, "eve@evil.example", "en", ISSUED)
    assert one != other
    assert tokens().check(other, ISSUED).email == "eve@evil.example"


def test_production_needs_a_real_shared_secret() -> None:
    def problems(**values: object) -> list[str]:
        settings = VerificationSettings.model_validate({"amqp_url": "amqp://svc:pw@rabbit:5672/", **values})
        return [problem.variable for problem in settings.production_problems()]

    assert problems() == ["EMAIL_VERIFICATION_SECRET"]
    assert problems(email_verification_secret="short") == ["EMAIL_VERIFICATION_SECRET"]
    assert problems(email_verification_secret=SECRET) == []
