"""The notifications service's settings."""

from typing import Literal

from pydantic import Field

from agency_chassis.settings import MongoSettings, SmtpSettings


class NotificationsSettings(SmtpSettings, MongoSettings):
    notifications_port: int = 8002
    staff_language: Literal["en", "zh-CN"] = "en"
    # SMTP connections kept open and reused across messages, per process.
    smtp_pool_size: int = Field(default=4, ge=1)
    # Cap on messages per second handed to the SMTP server (unset: no cap).
    smtp_max_per_second: float | None = Field(default=None, gt=0)
    # How long a worker owns an email it is sending before another may take it over.
    send_lease_seconds: float = Field(default=120.0, gt=0)
