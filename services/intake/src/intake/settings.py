"""Intake's settings."""

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from agency_chassis.settings import MongoSettings, SettingProblem, VerificationSettings, split_commas

MIN_KEY_LENGTH = 32
GENERATE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
# Outside production, without CAPTCHA_HMAC_KEY: one fixed key, so every local replica and
# worker verifies what another one signed. Production refuses to start without its own key.
DEVELOPMENT_CAPTCHA_KEY = "local-development-altcha-key, never for production"


class IntakeSettings(VerificationSettings, MongoSettings):
    intake_port: int = 8000
    # Server processes sharing the port. Each is a replica in one host: its own broker
    # connection and its own rate-limit counts. Set it to the cores intake may use.
    intake_workers: int = Field(default=1, ge=1, le=64)
    # Where a client can follow its application (served by the agreements service).
    status_base_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8001")
    # What a 503 tells the client to wait before retrying.
    retry_after_seconds: int = Field(default=5, ge=1)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Submissions per client IP, in the `limits` notation ("10/minute", "100/hour").
    rate_limit: str = "10/minute"
    # Peers whose X-Forwarded-For is believed (reverse proxies, load balancers).
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(default_factory=list)
    # Web frontends on other origins that may post to intake (CORS).
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # How long an Idempotency-Key is remembered with the data it was first used for (MongoDB TTL index).
    idempotency_key_ttl_seconds: int = Field(default=24 * 3600, ge=60)
    # The human check: ALTCHA proof of work (self-hosted), or off (tests and benchmarks not about it).
    captcha: Literal["altcha", "off"] = "altcha"
    # Signs the ALTCHA challenges (HMAC-SHA-256); the same on every replica.
    captcha_hmac_key: SecretStr | None = None
    # PBKDF2-SHA-256 iterations per attempt; a browser needs about 256 attempts on average.
    captcha_cost: int = Field(default=5000, ge=1)
    # How long a challenge may be solved and its solution posted; a solution is spent once within it.
    captcha_expiry_seconds: int = Field(default=1200, ge=10)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        parts = split_commas(value)
        return [ip_network(p, strict=False) for p in parts] if isinstance(parts, list) else parts

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _origins(cls, value: object) -> object:
        parts = split_commas(value)
        return [p.rstrip("/") for p in parts] if isinstance(parts, list) else parts

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        if self.kept_default("status_base_url"):
            problems.append(self.unset_problem("status_base_url", "would send clients to their own machine"))
        if self.captcha == "off":
            reason = (
                "turns the human check off: nothing would be held for email verification and every bot's"
                " submission would reach the staff; CAPTCHA=off is for tests and benchmarks, use CAPTCHA=altcha"
            )
            problems.append(SettingProblem("CAPTCHA", reason))
        elif problem := self._captcha_key_problem():
            problems.append(problem)
        return problems

    def captcha_key(self) -> str:
        """The key the ALTCHA challenges are signed with."""
        return self.captcha_hmac_key.get_secret_value() if self.captcha_hmac_key else DEVELOPMENT_CAPTCHA_KEY

    def _captcha_key_problem(self) -> SettingProblem | None:
        """Never quotes the key: the reason may be printed and logged."""
        key = self.captcha_hmac_key.get_secret_value() if self.captcha_hmac_key else ""
        if not key:
            return SettingProblem(
                "CAPTCHA_HMAC_KEY", f"missing with CAPTCHA=altcha; generate one (e.g. {GENERATE_KEY})"
            )
        if len(key) < MIN_KEY_LENGTH:
            reason = f"too short ({len(key)} characters); use at least {MIN_KEY_LENGTH} random ones"
            return SettingProblem("CAPTCHA_HMAC_KEY", reason)
        return None
