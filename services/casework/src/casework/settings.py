"""The casework service's settings: time limits, the console's sessions and sign-in, the agreements API it reads."""

import json
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, field_validator, model_validator
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


def _reminder_days(value: list[int]) -> list[int]:
    if any(day < 1 or day > 3660 for day in value):
        raise ValueError("each day is between 1 and 3660")
    return sorted(set(value))


# Days of a reminder series, ``"3,7,14"`` (or a list): each from 1 to 3660, kept in order, each once.
ReminderDays = Annotated[list[int], NoDecode, BeforeValidator(split_commas), AfterValidator(_reminder_days)]


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
    # The reminder scheduler (casework/reminding.py): how often it looks (0: never, on this replica), the client's
    # chasers (days after the status began), Tencent's deadline warnings (daily, its last days), the renewal
    # reminders and the move to renewal_due (days before the verification expires), how late a reminder may be.
    reminder_scan_seconds: float = Field(default=60.0, ge=0)
    reminder_chaser_days: ReminderDays = Field(default_factory=lambda: [3, 7, 14])
    reminder_fee_days: ReminderDays = Field(default_factory=lambda: [3, 7])
    reminder_tencent_days: int = Field(default=5, ge=0)
    reminder_renewal_days: ReminderDays = Field(default_factory=lambda: [7, 30, 90])
    renewal_due_days: int = Field(default=90, ge=1)
    reminder_catch_up_days: int = Field(default=7, ge=1)
    # Staff alerts in chat (casework.chat): each robot's webhook URL is a credential; none set, the channel is off.
    chat_wecom_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    chat_dingtalk_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    chat_dingtalk_secret: SecretStr | None = None  # the robots' signing secret (SEC...), when signing is on
    chat_feishu_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    chat_feishu_secret: SecretStr | None = None
    chat_slack_urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    chat_locale: Literal["en", "zh-CN"] = "en"
    # Attempts of one message before it is given up, and the backoff between them (base * 2^(n-1), at most max).
    chat_max_attempts: int = Field(default=8, ge=1)
    chat_retry_base_seconds: float = Field(default=2.0, gt=0)
    chat_retry_max_seconds: float = Field(default=600.0, gt=0)
    # How long a replica holds a robot's sending lease without renewing it (one sender per robot at a time).
    chat_lease_seconds: float = Field(default=30.0, gt=0)
    # The deadline of one chat message, its answer included (after it, the message is tried again later).
    chat_timeout_seconds: float = Field(default=10.0, gt=0)
    # Multiplies every chat clock (rate windows, backoff, throttling pauses); below 1 only in tests.
    chat_time_scale: float = Field(default=1.0, gt=0, le=1)

    # The client's uploads (casework/documents): the largest file, the most pixels an image may have (read before
    # decoding), and how far a PDF's compressed streams may inflate (ratio to its size, and in all).
    document_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    document_max_pixels: int = Field(default=40_000_000, ge=1)
    document_max_inflate_ratio: int = Field(default=100, ge=1)
    document_max_inflated_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    # Uploads a replica receives at once (each holds about 2 MB while it streams); more wait their turn, their
    # bodies unread (the connection's flow control holds them back), so memory is bounded however many arrive.
    document_uploads_at_once: int = Field(default=8, ge=1)
    # An upload whose body sends nothing for DOCUMENT_UPLOAD_IDLE_SECONDS, or takes longer than
    # DOCUMENT_UPLOAD_SECONDS in all, is refused (408): a trickle cannot hold an upload slot for ever.
    document_upload_idle_seconds: float = Field(default=60.0, gt=0)
    document_upload_seconds: float = Field(default=900.0, gt=0)
    # Outbound webhooks to the agency's CRM (Standard Webhooks): after a secret is rotated the old one keeps
    # signing too for this long; each attempt's timeout; how often the delivery loop looks for due deliveries
    # and how long a replica holds one it sends; WEBHOOK_RETRY_SCALE multiplies the retry schedule (tests only).
    webhook_secret_grace_hours: float = Field(default=24.0, ge=0)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    webhook_poll_seconds: float = Field(default=2.0, gt=0)
    webhook_lease_seconds: float = Field(default=120.0, gt=0)
    webhook_retry_scale: float = Field(default=1.0, gt=0, le=1)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        parts = split_commas(value)
        return [ip_network(p, strict=False) for p in parts] if isinstance(parts, list) else parts

    @field_validator("chat_wecom_urls", "chat_dingtalk_urls", "chat_feishu_urls", "chat_slack_urls", mode="before")
    @classmethod
    def _robot_urls(cls, value: object) -> object:
        return split_commas(value)

    @field_validator("chat_wecom_urls", "chat_dingtalk_urls", "chat_feishu_urls", "chat_slack_urls")
    @classmethod
    def _web_addresses(cls, value: list[SecretStr]) -> list[SecretStr]:
        # Not the URL itself in the error: it is a credential.
        if any(not url.get_secret_value().startswith(("https://", "http://")) for url in value):
            raise ValueError("a chat robot's URL starts with https:// (http:// only for a local server)")
        return value

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

    @model_validator(mode="after")
    def _lease_outlasts_a_request(self) -> "CaseworkSettings":
        # A replica's claim on a delivery must outlast its request, or another replica could send it meanwhile.
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError("WEBHOOK_LEASE_SECONDS must be longer than WEBHOOK_TIMEOUT_SECONDS")
        # Likewise a robot's lease: a message still on its way when the lease ran out could be sent twice.
        if self.chat_lease_seconds <= self.chat_timeout_seconds:
            raise ValueError("CHAT_LEASE_SECONDS must be longer than CHAT_TIMEOUT_SECONDS")
        return self

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
        for name in ("chat_wecom_urls", "chat_dingtalk_urls", "chat_feishu_urls", "chat_slack_urls"):
            if any(not url.get_secret_value().startswith("https://") for url in getattr(self, name)):
                problems.append(SettingProblem(name.upper(), "a robot's URL is not https:// (it carries a credential)"))
        if bool(self.oidc_issuer) != bool(self.oidc_client_id) or (self.oidc_client_id and not self.oidc_client_secret):
            reason = "OIDC_ISSUER, OIDC_CLIENT_ID and OIDC_CLIENT_SECRET go together"
            problems.append(SettingProblem("OIDC_ISSUER", reason))
        return problems
