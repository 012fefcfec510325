"""Where an application stands, as its status API, staff filters and exports show it."""

from enum import StrEnum


class Status(StrEnum):
    """An application's status, in the order it moves through them; stored and served as the value."""

    RECEIVED = "received"  # stored; its acceptance is being written to the ledger
    RECORDED = "recorded"  # its acceptance is a link in the ledger; the verification email is on its way
    AWAITING_VERIFICATION = "awaiting_verification"  # the verification email was accepted for delivery
    VERIFIED = "verified"  # the applicant confirmed the address; the verification is a link beside the acceptance
    CONFIRMED = "confirmed"  # and the applicant's confirmation email, with the receipt, was accepted for delivery

    def earlier(self) -> list["Status"]:
        """The statuses before this one: an update moves an application forward only, whatever order events come in."""
        statuses = list(Status)
        return statuses[: statuses.index(self)]
