"""Intake's settings."""

from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated

from pydantic import AnyHttpUrl, Field, field_validator
from pydantic_settings import NoDecode

from agency_chassis.settings import SettingProblem, VerificationSettings, split_commas


class IntakeSettings(VerificationSettings):
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
        return problems
