"""Verification links' tokens: notifications signs, intake reads back; tampered, foreign and expired ones refused."""

import hashlib
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from itsdangerous import URLSafeSerializer

from agency_chassis.email_verification import PURPOSE, ExpiredToken, InvalidToken, VerificationTokens
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


def test_an_enquiry_token_says_it_is_for_an_enquiry_and_never_names_an_application() -> None:
    token = tokens().issue(APPLICATION, "wang.fang@example.cn", "zh-CN", ISSUED, kind="enquiry")
    claim = tokens().check(token, ISSUED)
    assert (claim.kind, claim.subject_id, claim.enquiry_id, claim.application_id) == (
        "enquiry",
        APPLICATION,
        APPLICATION,
        None,
    )
    payload = URLSafeSerializer(SECRET).load_payload(token.rsplit(".", 1)[0].encode())
    assert "a" not in payload  # a checker that knows only applications finds no application in it


def test_an_application_link_issued_before_enquiries_had_links_still_works() -> None:
    # Exactly the payload tokens had before the kind existed.
    serializer = URLSafeSerializer(
        SECRET, salt=PURPOSE, signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"}
    )
    old = serializer.dumps({"a": str(APPLICATION), "e": "a@b.example", "l": "en", "t": int(ISSUED.timestamp())})
    claim = tokens().check(old, ISSUED)
    assert (claim.kind, claim.application_id, claim.enquiry_id) == ("application", APPLICATION, None)
    assert tokens().issue(APPLICATION, "a@b.example", "en", ISSUED) == old  # and new ones are the same


def test_a_token_of_an_unknown_kind_is_not_valid() -> None:
    serializer = URLSafeSerializer(
        SECRET, salt=PURPOSE, signer_kwargs={"digest_method": hashlib.sha256, "key_derivation": "hmac"}
    )
    for payload in (
        {"k": "order", "i": str(APPLICATION), "e": "a@b.example", "l": "en", "t": 1},
        {"k": "enquiry", "a": str(APPLICATION), "i": str(APPLICATION), "e": "a@b.example", "l": "en", "t": 1},
    ):
        with pytest.raises(InvalidToken):
            tokens().check(serializer.dumps(payload), ISSUED)
