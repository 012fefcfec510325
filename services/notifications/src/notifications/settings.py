"""The notifications service's settings."""

from typing import Literal

from pydantic import Field

from agency_chassis.settings import MongoSettings, SharedSettings, SmtpSettings


class NotificationsSettings(SharedSettings, SmtpSettings, MongoSettings):
    notifications_port: int = 8002
    staff_language: Literal["en", "zh-CN"] = "en"
    # Temporary failures (SMTP 4xx, refused connection, timeout) are retried with
    # exponential backoff through RabbitMQ; after the last attempt the message
    # goes to its dead-letter queue and the ledger says failed.
    max_attempts: int = Field(default=8, ge=1)
    retry_base_seconds: float = Field(default=2.0, gt=0)
    retry_max_seconds: float = Field(default=600.0, gt=0)
    # SMTP connections kept open and reused across messages, per process.
    smtp_pool_size: int = Field(default=4, ge=1)
    # Cap on messages per second handed to the SMTP server (unset: no cap).
    smtp_max_per_second: float | None = Field(default=None, gt=0)
    # How long a worker owns an email it is sending before another may take it over.
    send_lease_seconds: float = Field(default=120.0, gt=0)
