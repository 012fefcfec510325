"""Start-up safety: refuse settings a deployment must not run with, and log the effective configuration masked."""

import json
import logging
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from email.utils import parseaddr
from typing import Any, NoReturn, TypeVar

from pydantic import SecretBytes, SecretStr, ValidationError

from agency_chassis.settings import MongoSettings, SharedSettings, SmtpSettings

logger = logging.getLogger(__name__)

# sysexits.h EX_CONFIG: the process was started with a configuration it must not run with.
EX_CONFIG = 78
MASK = "***"
MIN_TOKEN_LENGTH = 32
# Domains reserved for examples and local use (RFC 2606, RFC 6761): never a real mailbox or site.
PLACEHOLDER_DOMAINS = ("localhost", "example", "example.com", "example.net", "example.org", "test", "invalid")
PLACEHOLDER_WORDS = ("changeme", "change-me", "change_me", "placeholder", "example")
SECRET_NAMES = re.compile(r"pass|secret|token|key", re.IGNORECASE)
# scheme://user:password@host...: everything up to the last "@" of the authority is userinfo.
URL_USERINFO = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<user>[^:/@]*):(?P<password>[^/]*)@")
GENERATE_TOKEN = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"  # noqa: S105 - a command, not a secret


@dataclass(frozen=True)
class SettingProblem:
    """One environment variable a service cannot start with, and why."""

    variable: str
    reason: str

    def __str__(self) -> str:
        return f"{self.variable}: {self.reason}"


class SettingsRefused(Exception):
    """The settings are unfit for their environment: missing, invalid, or still a placeholder."""

    def __init__(self, service: str, problems: Sequence[SettingProblem], environment: str | None = None) -> None:
        self.service, self.problems, self.environment = service, tuple(problems), environment
        super().__init__(self.message())

    def message(self) -> str:
        where = f" with ENVIRONMENT={self.environment}" if self.environment else ""
        lines = [f"{self.service} refuses to start{where}:"]
        lines += [f"  - {problem}" for problem in self.problems]
        if self.environment == "production":
            lines.append("Set them (environment variables or .env), or ENVIRONMENT=local on a development machine.")
        return "\n".join(lines)


S = TypeVar("S", bound=SharedSettings)


def load_settings(settings_class: type[S], service: str, *, check: bool = True) -> S:
    """The settings from the environment and .env; exit with ``EX_CONFIG`` and a message naming every
    unusable variable (invalid, or with ``check`` missing or a placeholder) before anything connects."""
    try:
        settings = settings_class()
    except ValidationError as exc:
        _refuse(SettingsRefused(service, invalid_settings(exc)))
    problems = settings_problems(settings) if check else []
    if problems:
        _refuse(SettingsRefused(service, problems, settings.environment))
    return settings


def check_at_startup(settings: SharedSettings, service: str) -> None:
    """Raise `SettingsRefused` if ``settings`` are unfit for their environment; else log them, secrets masked."""
    problems = settings_problems(settings)
    if problems:
        raise SettingsRefused(service, problems, settings.environment)
    shown = json.dumps(effective_configuration(settings), sort_keys=True, ensure_ascii=False)
    logger.info("%s starts with ENVIRONMENT=%s and configuration %s", service, settings.environment, shown)


def _refuse(refused: SettingsRefused) -> NoReturn:
    print(refused, file=sys.stderr)
    sys.exit(EX_CONFIG)


def invalid_settings(error: ValidationError) -> list[SettingProblem]:
    """Pydantic's complaints, by variable; never the offending value, which may be a secret."""
    return [
        SettingProblem(str(detail["loc"][0]).upper() if detail["loc"] else "settings", detail["msg"])
        for detail in error.errors(include_url=False, include_input=False)
    ]


def settings_problems(settings: SharedSettings) -> list[SettingProblem]:
    """Outside local development and the tests: each required setting left unset, and each placeholder."""
    if settings.environment != "production":
        return []
    return [
        *_broker_problems(settings),
        *_database_problems(settings),
        *_mail_problems(settings),
        *_staff_api_problems(settings),
        *_public_url_problems(settings),
    ]


def _value(settings: SharedSettings, field: str) -> Any:
    """A setting only some services have (the shared settings classes cannot name it)."""
    return getattr(settings, field, None)


def _unset(settings: SharedSettings, field: str) -> bool:
    """``field`` belongs to this service's settings and kept its development default."""
    return field in type(settings).model_fields and field not in settings.model_fields_set


def _default(settings: SharedSettings, field: str) -> str:
    return mask_url(str(type(settings).model_fields[field].default))


def _broker_problems(settings: SharedSettings) -> Iterator[SettingProblem]:
    if _unset(settings, "amqp_url"):
        yield SettingProblem("AMQP_URL", f"not set; the default {_default(settings, 'amqp_url')} is for development")
    elif settings.amqp_url.username in (None, "", "guest"):
        yield SettingProblem(
            "AMQP_URL", "uses RabbitMQ's default guest account; give the services a user with its own password"
        )


def _database_problems(settings: SharedSettings) -> Iterator[SettingProblem]:
    if isinstance(settings, MongoSettings) and _unset(settings, "mongodb_url"):
        yield SettingProblem(
            "MONGODB_URL", f"not set; the default {_default(settings, 'mongodb_url')} is a development database"
        )


def _mail_problems(settings: SharedSettings) -> Iterator[SettingProblem]:
    if not isinstance(settings, SmtpSettings):
        return
    if _unset(settings, "smtp_host"):
        yield SettingProblem("SMTP_HOST", "not set; the default localhost:1025 is the development mail sink")
    if settings.smtp_username and not settings.smtp_password:
        yield SettingProblem("SMTP_PASSWORD", "missing while SMTP_USERNAME is set")
    if _unset(settings, "mail_from"):
        yield SettingProblem("MAIL_FROM", f"not set; the default {_default(settings, 'mail_from')} is a placeholder")
    elif not _real_address(parseaddr(settings.mail_from)[1]):
        yield SettingProblem("MAIL_FROM", "a placeholder or not an address; use the sender the SMTP server may send as")
    if not settings.staff_emails:
        yield SettingProblem("STAFF_EMAILS", "missing; comma-separated addresses that get every application")
    elif fake := [address for address in settings.staff_emails if not _real_address(address)]:
        yield SettingProblem("STAFF_EMAILS", f"placeholders or not addresses: {', '.join(fake)}")


def _staff_api_problems(settings: SharedSettings) -> Iterator[SettingProblem]:
    if "staff_api_token" not in type(settings).model_fields:
        return
    secret: SecretStr | None = _value(settings, "staff_api_token")
    token = secret.get_secret_value() if secret else ""
    if not token:
        yield SettingProblem("STAFF_API_TOKEN", f"missing; the staff API's bearer token (e.g. {GENERATE_TOKEN})")
    elif any(word in token.lower() for word in PLACEHOLDER_WORDS):
        yield SettingProblem("STAFF_API_TOKEN", f"still a placeholder; generate one (e.g. {GENERATE_TOKEN})")
    elif len(token) < MIN_TOKEN_LENGTH:
        yield SettingProblem(
            "STAFF_API_TOKEN", f"too short ({len(token)} characters); use at least {MIN_TOKEN_LENGTH} random ones"
        )


def _public_url_problems(settings: SharedSettings) -> Iterator[SettingProblem]:
    if _unset(settings, "status_base_url"):
        yield SettingProblem(
            "STATUS_BASE_URL",
            f"not set; the default {_default(settings, 'status_base_url')} would send clients to their own machine",
        )


def _real_address(address: str) -> bool:
    local, at, domain = address.strip().rpartition("@")
    domain = domain.lower().rstrip(".")
    placeholder = any(domain == d or domain.endswith(f".{d}") for d in PLACEHOLDER_DOMAINS)
    return bool(local and at and "." in domain and not placeholder)


def effective_configuration(settings: SharedSettings) -> dict[str, Any]:
    """Every setting by its variable name, as the service uses it; secrets and URL passwords are ``***``."""
    return {name.upper(): _shown(name, getattr(settings, name)) for name in type(settings).model_fields}


def _shown(name: str, value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, SecretStr | SecretBytes) or SECRET_NAMES.search(name):
        return MASK
    if isinstance(value, list | tuple | set | frozenset):
        return [_shown(name, item) for item in value]
    return mask_url(str(value))


def mask_url(text: str) -> str:
    """``amqp://user:secret@host/`` -> ``amqp://user:***@host/``; query parameters named like secrets too."""
    masked = URL_USERINFO.sub(lambda match: f"{match['scheme']}{match['user']}:{MASK}@", text)
    if "://" not in masked or "?" not in masked:
        return masked
    base, _, query = masked.partition("?")
    parameters = [
        f"{key}={MASK}" if SECRET_NAMES.search(key) else f"{key}{sep}{value}"
        for key, sep, value in (pair.partition("=") for pair in query.split("&"))
    ]
    return f"{base}?{'&'.join(parameters)}"
