"""The casework service's settings: time limits, the console's sessions and sign-in, the agreements API it reads."""

import json
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from agency_chassis.settings import MongoSettings, PortalLinkSettings, SettingProblem, split_commas

MIN_SECRET_LENGTH = 32
# Outside production only: the audit log's HMAC key when AUDIT_HMAC_KEY is unset (production refuses that).
DEVELOPMENT_AUDIT_KEY = "local-development-audit-key, never for production"
GENERATE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - a command, not a secret

# Business days a case may stay in a status before it is overdue (statuses that wait on the client or on Tencent's
# own deadline have none here: the client's chasers and Tencent's deadline are their clocks).
DEFAULT_TIME_LIMITS: dict[str, int] = {
    "triage": 1,
    "documents_in_review": 2,
    "account_setup": 2,
    "submitted_to_tencent": 10,
    "on_hold": 20,
    "new": 1,
    "contacted": 5,
    "qualified": 10,
}


def _parse_limits(value: object) -> object:
    """``"triage=1, submitted_to_tencent=10"`` (or JSON, as pydantic reads it) -> ``{"triage": 1, ...}``."""
    if isinstance(value, str) and not value.lstrip().startswith("{"):
        limits: dict[str, str] = {}
        for part in value.split(","):
            if part.strip():
                status, _, days = part.partition("=")
                limits[status.strip()] = days.strip()
        return limits
    return value


class CaseworkSettings(MongoSettings, PortalLinkSettings):
    casework_port: int = 8003
    # Where staff open the console (links in emails and chat messages point here).
    console_url: str = "http://localhost:8003"
    # Local run only: the first admin, made when no account exists (`python -m casework create-admin` elsewhere).
    console_admin_email: str = "admin@localhost"
    console_admin_password: SecretStr | None = None
    # A session ends after this long without a request, and in any case after session_max_hours.
    session_idle_minutes: int = Field(default=60, ge=1)
    session_max_hours: int = Field(default=12, ge=1)
    # Session cookies are Secure (HTTPS only) outside local runs and tests over plain HTTP.
    session_cookie_secure: bool = True
    # Proxies (an ingress) whose X-Forwarded-For names the staff member's address: the audit log and the
    # sign-in limits count that address, not the proxy's.
    trusted_proxies: Annotated[list[IPv4Network | IPv6Network], NoDecode] = Field(default_factory=list)
    # Failed sign-ins before an account is locked, and for how long; sign-ins a minute from one address.
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    login_attempts_per_minute: int = Field(default=10, ge=1)
    # Single sign-on through OpenID Connect: all three, or none (passwords only).
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    # The key of the audit log's HMACs: someone who can edit the database but lacks it cannot forge an entry.
    audit_hmac_key: SecretStr | None = None
    # agreements' staff API (evidence, receipts, re-acceptance, ledger check, erasure), with casework's own token.
    agreements_url: str = "http://localhost:8001"
    agreements_api_token: SecretStr | None = None
    # The workflow's figures: data, since Tencent changes them.
    verification_fee: str = "USD 99"
    tencent_info_attempts: int = Field(default=3, ge=1)
    renewal_interval_days: int = Field(default=365, ge=1)
    # The portal's "send me a new link": requests an hour from one address (IP), and for one email address.
    portal_link_requests_per_ip_hour: int = Field(default=20, ge=1)
    portal_link_requests_per_email_hour: int = Field(default=3, ge=1)
    # Overrides of DEFAULT_TIME_LIMITS, e.g. ``triage=2,submitted_to_tencent=15`` (or JSON).
    case_time_limits: Annotated[dict[str, int], NoDecode] = Field(default_factory=dict)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        parts = split_commas(value)
        return [ip_network(p, strict=False) for p in parts] if isinstance(parts, list) else parts

    @field_validator("case_time_limits", mode="before")
    @classmethod
    def _limits(cls, value: object) -> object:
        if isinstance(value, str) and value.lstrip().startswith("{"):
            return json.loads(value)
        return _parse_limits(value)

    @field_validator("case_time_limits")
    @classmethod
    def _known_positive(cls, value: dict[str, int]) -> dict[str, int]:
        if any(days < 1 for days in value.values()):
            raise ValueError("a time limit is at least one business day")
        return value

    @property
    def time_limits(self) -> dict[str, int]:
        """Business days a case may stay in each status: the defaults with CASE_TIME_LIMITS over them."""
        return {**DEFAULT_TIME_LIMITS, **self.case_time_limits}

    def audit_key(self) -> bytes:
        """The key the audit log's entries are signed with (a fixed development key when unset)."""
        key = self.audit_hmac_key.get_secret_value() if self.audit_hmac_key else DEVELOPMENT_AUDIT_KEY
        return key.encode()

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        token = self.agreements_api_token.get_secret_value() if self.agreements_api_token else ""
        if len(token) < MIN_SECRET_LENGTH:
            reason = f"missing or short; casework's own bearer token for agreements' staff API (e.g. {GENERATE_TOKEN})"
            problems.append(SettingProblem("AGREEMENTS_API_TOKEN", reason))
        audit_key = self.audit_hmac_key.get_secret_value() if self.audit_hmac_key else ""
        if len(audit_key) < MIN_SECRET_LENGTH or audit_key == DEVELOPMENT_AUDIT_KEY:
            reason = f"missing or short; the audit log's HMAC key, the same on every replica (e.g. {GENERATE_TOKEN})"
            problems.append(SettingProblem("AUDIT_HMAC_KEY", reason))
        if not self.session_cookie_secure:
            problems.append(SettingProblem("SESSION_COOKIE_SECURE", "false; the console must be served over HTTPS"))
        if self.console_admin_password is not None:
            reason = "set; production's first admin comes from `python -m casework create-admin`, not the environment"
            problems.append(SettingProblem("CONSOLE_ADMIN_PASSWORD", reason))
        if bool(self.oidc_issuer) != bool(self.oidc_client_id) or (self.oidc_client_id and not self.oidc_client_secret):
            reason = "OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET go together"
            problems.append(SettingProblem("OIDC_ISSUER", reason))
        return problems
