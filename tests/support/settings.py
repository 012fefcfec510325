"""Variations of a service's test settings."""

from typing import TypeVar

from pydantic_settings import BaseSettings

Settings = TypeVar("Settings", bound=BaseSettings)


def settings_with(base: Settings, **changes: object) -> Settings:
    """``base`` with ``changes``, validated again as the service validates its settings."""
    return type(base).model_validate({**base.model_dump(), **changes})
