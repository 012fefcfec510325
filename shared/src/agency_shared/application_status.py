"""Where an application stands, as its status API, staff filters and exports show it."""

from enum import StrEnum


class Status(StrEnum):
    """An application's status, in the order it moves through them; stored and served as the value."""

    RECEIVED = "received"  # stored; its acceptance is being written to the ledger
    RECORDED = "recorded"  # its acceptance is a link in the ledger
    CONFIRMED = "confirmed"  # and the applicant's confirmation email, with the receipt, was accepted for delivery
