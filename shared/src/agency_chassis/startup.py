"""Start-up safety: load a service's settings once, refuse those its environment must not run with, log them masked.

What production refuses is each settings class's own business (``production_problems``);
this module only applies it, reports it and stops the process before anything connects.
"""

import json
import logging
import sys
from collections.abc import Sequence
from typing import Any, NoReturn, TypeVar

from pydantic import ValidationError

from agency_chassis.masking import masked_value
from agency_chassis.settings import SettingProblem, SharedSettings

logger = logging.getLogger(__name__)

# sysexits.h EX_CONFIG: the process was started with a configuration it must not run with.
EX_CONFIG = 78


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
    """The settings from the environment and .env, read once per process; exit with ``EX_CONFIG`` and a
    message naming every unusable variable (invalid, or with ``check`` unfit for the environment) before
    anything connects."""
    try:
        settings = settings_class()
        if check:
            check_settings(settings, service)
    except ValidationError as exc:
        _exit(SettingsRefused(service, invalid_settings(exc)))
    except SettingsRefused as refused:
        _exit(refused)
    return settings


def check_settings(settings: SharedSettings, service: str) -> None:
    """Raise `SettingsRefused`, naming every problem, if ``settings`` are unfit for their environment."""
    if problems := settings_problems(settings):
        raise SettingsRefused(service, problems, settings.environment)


def settings_problems(settings: SharedSettings) -> list[SettingProblem]:
    """In production, each setting left unset or a placeholder; local development and the tests take anything."""
    return settings.production_problems() if settings.environment == "production" else []


def log_configuration(settings: SharedSettings, service: str) -> None:
    """One line with the effective configuration, secrets masked (once logging is configured)."""
    shown = json.dumps(effective_configuration(settings), sort_keys=True, ensure_ascii=False)
    logger.info("%s starts with ENVIRONMENT=%s and configuration %s", service, settings.environment, shown)


def _exit(refused: SettingsRefused) -> NoReturn:
    print(refused, file=sys.stderr)
    sys.exit(EX_CONFIG)


def invalid_settings(error: ValidationError) -> list[SettingProblem]:
    """Pydantic's complaints, by variable; never the offending value, which may be a secret."""
    return [
        SettingProblem(str(detail["loc"][0]).upper() if detail["loc"] else "settings", detail["msg"])
        for detail in error.errors(include_url=False, include_input=False)
    ]


def effective_configuration(settings: SharedSettings) -> dict[str, Any]:
    """Every setting by its variable name, as the service uses it; secrets and URL passwords are ``***``."""
    return {name.upper(): masked_value(name, getattr(settings, name)) for name in type(settings).model_fields}
