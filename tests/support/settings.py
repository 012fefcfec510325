"""Variations of a service's test settings."""

from typing import TypeVar

from pydantic import AnyHttpUrl, SecretStr
from pydantic_settings import BaseSettings

from notifications.settings import NotificationsSettings

Settings = TypeVar("Settings", bound=BaseSettings)


def settings_with(base: Settings, **changes: object) -> Settings:
    """``base`` with ``changes``, validated again as the service validates its settings."""
    return type(base).model_validate({**base.model_dump(), **changes})


# The verification secret of the notifications unit tests (the links they check were signed with it).
UNIT_SECRET = "unit-test-secret-of-more-than-32-characters"


def notifications_unit_settings(staff: tuple[str, ...]) -> NotificationsSettings:
    """Notifications' settings for use cases run with fakes: ``staff``, a sender, the links' base and secret."""
    return NotificationsSettings(
        environment="test",
        staff_emails=list(staff),
        mail_from="WeChat Agency <no-reply@agency.example>",
        intake_base_url=AnyHttpUrl("https://apply.agency.example/"),
        email_verification_secret=SecretStr(UNIT_SECRET),
    )
