"""The notifications service's settings."""

from typing import Literal

from pydantic import AnyHttpUrl, Field, field_validator

from agency_chassis.settings import (
    CommaSeparated,
    MongoSettings,
    PortalEmailSettings,
    SettingProblem,
    SmtpSettings,
    VerificationSettings,
    real_address,
    split_commas,
)


class NotificationsSettings(SmtpSettings, MongoSettings, VerificationSettings, PortalEmailSettings):
    notifications_port: int = 8002
    staff_language: Literal["en", "zh-CN"] = "en"
    # SMTP connections kept open and reused across messages, per process.
    smtp_pool_size: int = Field(default=4, ge=1)
    # Cap on messages per second handed to the SMTP server (unset: no cap).
    smtp_max_per_second: float | None = Field(default=None, gt=0)
    # How long a worker owns an email it is sending before another may take it over.
    send_lease_seconds: float = Field(default=120.0, gt=0)
    # Where the applicant's browser reaches intake: the verification links point at <this>/verify/<token>.
    intake_base_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8000")
    # Emails to one client address (verification, confirmation, enquiry autoresponse) per UTC day, across replicas.
    client_emails_per_day: int = Field(default=5, ge=1)
    # How long the notification ledger keeps an email's entry after its last change (notifications.retention).
    notification_ledger_retention_days: int = Field(default=30, ge=1)
    # The archive mailbox(es) every signed ledger checkpoint is emailed to: out of any database writer's reach.
    ledger_anchor_emails: CommaSeparated = Field(default_factory=list)

    @field_validator("ledger_anchor_emails", mode="before")
    @classmethod
    def _split_anchors(cls, value: object) -> object:
        return split_commas(value)

    def production_problems(self) -> list[SettingProblem]:
        problems = super().production_problems()
        if self.kept_default("intake_base_url"):
            problems.append(self.unset_problem("intake_base_url", "would send clients' links to their own machine"))
        if not self.ledger_anchor_emails:
            reason = "missing; the archive mailbox the ledger's signed checkpoints are kept in (comma-separated)"
            problems.append(SettingProblem("LEDGER_ANCHOR_EMAILS", reason))
        elif fake := [address for address in self.ledger_anchor_emails if not real_address(address)]:
            problems.append(SettingProblem("LEDGER_ANCHOR_EMAILS", f"placeholders or not addresses: {', '.join(fake)}"))
        return problems
