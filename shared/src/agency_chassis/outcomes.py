"""What a consumer's use case decides about one message: done, retry later or give up, plus the events to publish."""

from dataclasses import dataclass

from agency_shared.events import Event


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


@dataclass(frozen=True, slots=True)
class Done:
    """The message is handled: publish these events, then acknowledge it."""

    publish: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Something temporary (an outage, a busy resource) stopped it: publish these, then try again after a backoff."""

    reason: str
    publish: tuple[Event, ...] = ()


@dataclass(frozen=True, slots=True)
class GiveUp:
    """It can never succeed as it is: publish these, then dead-letter it for an operator."""

    reason: str
    publish: tuple[Event, ...] = ()


Outcome = Done | RetryLater | GiveUp
