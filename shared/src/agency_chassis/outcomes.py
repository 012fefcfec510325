"""What a consumer's use case decides about one message: done, retry later or give up, plus the events to publish."""

from collections.abc import Mapping
from dataclasses import dataclass, field

from agency_shared.events import Event

# What a use case learnt on an attempt that only the next attempt can write down: facts that
# must outlive an outage of the very store they belong in (an email the SMTP server accepted
# while the database could not record it "sent"). Short strings by short keys; carried in the
# parked copy's headers, so the broker keeps them as durably as the message itself.
Memo = Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Attempt:
    """Which delivery of a message this is, as the runner tells the use case.

    ``last`` is decided by the chassis (the backoff's ``max_attempts``), never by a use case:
    a use case that must finish something on the last attempt (record unfinished emails as
    failed) asks this value. ``replayed``: an operator put the message back from its DLQ.
    """

    number: int = 1
    last: bool = False
    replayed: bool = False
    # What earlier attempts of this message remembered (``RetryLater.memo``), merged.
    memo: Memo = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Done:
    """The message is handled: publish these events, then acknowledge it."""

    publish: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Something temporary (an outage, a busy resource) stopped it: publish these, then try again after a backoff.

    ``memo``: facts for the next attempt (added to what the attempt already carried).
    """

    reason: str
    publish: tuple[Event, ...] = ()
    memo: Memo = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GiveUp:
    """It can never succeed as it is: publish these, then dead-letter it for an operator."""

    reason: str
    publish: tuple[Event, ...] = ()


Outcome = Done | RetryLater | GiveUp
