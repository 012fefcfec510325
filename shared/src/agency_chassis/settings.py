"""Settings every service reads from the environment (one set of variables for all services)."""

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AmqpDsn, Field, MongoDsn, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaSeparated = Annotated[list[str], NoDecode]


def split_commas(value: object) -> object:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; anything but a string passes through for pydantic to check."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class SharedSettings(BaseSettings):
    """Fields common to all services; each service subclasses it with its own."""

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
    # Messages a consumer queue may hold before publishes are refused (back-pressure).
    queue_max_length: int = Field(default=100_000, ge=1)
    log_level: str = "INFO"
    # One JSON object per line (for a log collector), or plain text to read in a terminal.
    log_format: Literal["json", "text"] = "json"
    # A folder of agreement version files (v<N>.toml) replacing the bundled ones.
    agreements_dir: Path | None = None

    @field_validator("log_level")
    @classmethod
    def _upper(cls, value: str) -> str:
        return value.upper()


class MongoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    mongodb_url: MongoDsn = MongoDsn("mongodb://localhost:27017")
    mongodb_db: str = "wechat_agency"

    def mongo_client_options(self) -> dict[str, Any]:
        """Every acknowledged write is journaled, and on a replica set held by a majority:
        a crash right after an acknowledgement loses nothing (the ledger is legal evidence)."""
        return {"tz_aware": True, "serverSelectionTimeoutMS": 5000, "w": "majority", "journal": True}


class SmtpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

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
