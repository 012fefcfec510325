"""Settings every service reads from the environment (one set of variables for all services),
each class with the production rules of its own fields."""

from collections.abc import Iterator
from dataclasses import dataclass
from email.utils import parseaddr
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AmqpDsn, Field, MongoDsn, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agency_chassis.masking import mask_url

CommaSeparated = Annotated[list[str], NoDecode]
# Domains reserved for examples and local use (RFC 2606, RFC 6761): never a real mailbox or site.
PLACEHOLDER_DOMAINS = ("localhost", "example", "example.com", "example.net", "example.org", "test", "invalid")


@dataclass(frozen=True)
class SettingProblem:
    """One environment variable a service cannot start with, and why."""

    variable: str
    reason: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.reason}"


def split_commas(value: object) -> object:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; anything but a string passes through for pydantic to check."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SharedSettings(BaseSettings):
    """Fields common to all services; each service subclasses it (or a subclass below) with its own.

    Each class states what production refuses among its own fields in ``production_problems``,
    adding them to ``super()``'s; `agency_chassis.startup` applies them when ENVIRONMENT=production.
    """

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # Production unless told otherwise: a deployment that forgets ENVIRONMENT is still held
    # to production rules (agency_chassis.startup refuses missing settings and placeholders);
    # `make run` sets local and the tests set test.
    environment: Literal["local", "test", "production"] = "production"
    # Loopback by default; containers set BIND_HOST=0.0.0.0.
    bind_host: str = "127.0.0.1"
    amqp_url: AmqpDsn = AmqpDsn("amqp://guest:guest@localhost:5672/")
    # How long a publish may wait for the broker's confirm before it counts as failed.
    publish_timeout_seconds: float = Field(default=1.5, gt=0)
    prefetch_count: int = Field(default=16, ge=1)
    # Temporary failures (an SMTP 4xx, a database or broker outage) are retried with
    # exponential backoff through RabbitMQ; after the last attempt the message goes to
    # its dead-letter queue.
    max_attempts: int = Field(default=10, ge=1)
    retry_base_seconds: float = Field(default=1.0, gt=0)
    retry_max_seconds: float = Field(default=300.0, gt=0)
    # Messages a consumer queue may hold before publishes are refused (back-pressure): a policy (below).
    queue_max_length: int = Field(default=100_000, ge=1)
    # How long a dead letter is kept before RabbitMQ drops it (a policy's message-ttl on the DLQs).
    dead_letter_retention_days: float = Field(default=30.0, gt=0)
    # RabbitMQ's management API (e.g. http://rabbitmq:15672; the AMQP URL's user unless this URL names one,
    # with the policymaker tag): where the service puts the queues' policies at start-up. Unset: the
    # deployment applies them (``python -m <service> policies``).
    rabbitmq_management_url: str | None = None
    log_level: str = "INFO"
    # One JSON object per line (for a log collector), or plain text to read in a terminal.
    log_format: Literal["json", "text"] = "json"
    # A folder of agreement version files (v<N>.toml) replacing the bundled ones.
    agreements_dir: Path | None = None

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()

    def production_problems(self) -> list[SettingProblem]:
        """The settings production refuses: missing, or still a development default or placeholder."""
        if self.kept_default("amqp_url"):
            return [self.unset_problem("amqp_url", "is for development")]
        if self.amqp_url.username in (None, "", "guest"):
            reason = "uses RabbitMQ's default guest account; give the services a user with its own password"
            return [SettingProblem("AMQP_URL", reason)]
        return []

    def kept_default(self, field: str) -> bool:
        """Nothing (environment, .env, argument) set ``field``: it holds its development default."""
        return field not in self.model_fields_set

    def unset_problem(self, field: str, why_not_the_default: str) -> SettingProblem:
        """``FIELD: not set; the default <default, masked> <why_not_the_default>``."""
        default = mask_url(str(type(self).model_fields[field].default))
        return SettingProblem(field.upper(), f"not set; the default {default} {why_not_the_default}")

    def shared_secret_problem(self, field: str, development_secret: str, holders: str) -> SettingProblem | None:
        """What is wrong with the signing secret ``field`` that ``holders`` share: unset, the development one, or
        shorter than ``MIN_SECRET_LENGTH``; None when it will do."""
        secret = getattr(self, field).get_secret_value()
        if self.kept_default(field) or secret == development_secret:
            reason = f"not set; the same random secret for {holders} (e.g. `openssl rand -hex 32`)"
            return SettingProblem(field.upper(), reason)
        if len(secret) < MIN_SECRET_LENGTH:
            reason = f"too short ({len(secret)} characters); use at least {MIN_SECRET_LENGTH} random ones"
            return SettingProblem(field.upper(), reason)
        return None


class MongoSettings(SharedSettings):
    """The settings of a service that keeps its data in MongoDB."""

    mongodb_url: MongoDsn = MongoDsn("mongodb://localhost:27017")
    mongodb_db: str = "wechat_agency"

    def mongo_client_options(self) -> dict[str, Any]:
        """Every acknowledged write is journaled, and on a replica set held by a majority:
        a crash right after an acknowledgement loses nothing (the ledger is legal evidence)."""
        return {"tz_aware": True, "serverSelectionTimeoutMS": 5000, "w": "majority", "journal": True}

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        if self.kept_default("mongodb_url"):
            problems.append(self.unset_problem("mongodb_url", "is a development database"))
        return problems


class SmtpSettings(SharedSettings):
    """The settings of a service that sends email."""

    smtp_host: str = "localhost"
    smtp_port: int = 1025
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    mail_from: str = "WeChat Agency <no-reply@localhost>"
    staff_emails: CommaSeparated = Field(default_factory=list)

    @field_validator("staff_emails", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        return split_commas(value)

    def production_problems(self) -> list[SettingProblem]:
        return [*super().production_problems(), *self._mail_server_problems(), *self._address_problems()]

    def _mail_server_problems(self) -> Iterator[SettingProblem]:
        if self.kept_default("smtp_host"):
            sink = f"{type(self).model_fields['smtp_host'].default}:{type(self).model_fields['smtp_port'].default}"
            yield SettingProblem("SMTP_HOST", f"not set; the default {sink} is the development mail sink")
        if self.smtp_username and not self.smtp_password:
            yield SettingProblem("SMTP_PASSWORD", "missing while SMTP_USERNAME is set")

    def _address_problems(self) -> Iterator[SettingProblem]:
        if self.kept_default("mail_from"):
            yield self.unset_problem("mail_from", "is a placeholder")
        elif not real_address(parseaddr(self.mail_from)[1]):
            yield SettingProblem(
                "MAIL_FROM", "a placeholder or not an address; use the sender the SMTP server may send as"
            )
        if not self.staff_emails:
            yield SettingProblem("STAFF_EMAILS", "missing; comma-separated addresses that get every application")
        elif fake := [address for address in self.staff_emails if not real_address(address)]:
            yield SettingProblem("STAFF_EMAILS", f"placeholders or not addresses: {', '.join(fake)}")


def real_address(address: str) -> bool:
    """``address`` could be someone's mailbox: a local part and a domain that is not reserved for examples."""
    local, at, domain = address.strip().rpartition("@")
    domain = domain.lower().rstrip(".")
    placeholder = any(domain == d or domain.endswith(f".{d}") for d in PLACEHOLDER_DOMAINS)
    return bool(local and at and "." in domain and not placeholder)


# The local-development secret of verification links: production refuses it (and anything short).
DEVELOPMENT_VERIFICATION_SECRET = "local-development-only-email-verification-secret"  # noqa: S105
MIN_SECRET_LENGTH = 32


class VerificationSettings(SharedSettings):
    """The settings of a service that issues or checks email-verification links (notifications, intake).

    Every replica of both services must hold the same secret: a link signed by one is checked by another.
    """

    email_verification_secret: SecretStr = SecretStr(DEVELOPMENT_VERIFICATION_SECRET)
    # How long a verification link works after it was sent.
    email_verification_days: int = Field(default=7, ge=1, le=90)

    def production_problems(self) -> list[SettingProblem]:
        secret = self.shared_secret_problem(
            "email_verification_secret", DEVELOPMENT_VERIFICATION_SECRET, "intake and notifications"
        )
        return super().production_problems() + ([secret] if secret else [])


# The local-development secret of client-portal links: production refuses it (and anything short).
DEVELOPMENT_PORTAL_SECRET = "local-development-only-client-portal-secret"  # noqa: S105


class PortalLinkSettings(SharedSettings):
    """The settings of a service that issues or checks client-portal links (notifications, casework).

    Every replica of both services must hold the same secret: a link signed by one is checked by another.
    """

    portal_link_secret: SecretStr = SecretStr(DEVELOPMENT_PORTAL_SECRET)
    # How long a portal link works after it was sent (the client can ask for a new one any time).
    portal_link_days: int = Field(default=30, ge=1, le=365)

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        if secret := self.shared_secret_problem(
            "portal_link_secret", DEVELOPMENT_PORTAL_SECRET, "notifications and casework"
        ):
            problems.append(secret)
        return problems


class PortalEmailSettings(PortalLinkSettings):
    """The service that writes the portal's links into emails (notifications): where they point."""

    # Where clients open the portal: casework's public address.
    portal_url: str = "http://localhost:8003"

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        if self.kept_default("portal_url"):
            problems.append(self.unset_problem("portal_url", "would send clients' links to their own machine"))
        elif not _https_or_loopback(self.portal_url):
            reason = "not https:// (nor http:// on this machine): the portal's links are credentials"
            problems.append(SettingProblem("PORTAL_URL", reason))
        return problems


def _https_or_loopback(url: str) -> bool:
    """``url`` is https://, or http:// to this machine (where browsers treat plain HTTP as secure)."""
    parts = urlsplit(url)
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1", "::1"))
