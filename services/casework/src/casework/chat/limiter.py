"""How long a robot's sender waits before its next message so that no window of its API's limit is exceeded."""

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """At most ``count`` messages in any ``seconds``."""

    count: int
    seconds: float

    def scaled(self, factor: float) -> "Window":
        return Window(self.count, self.seconds * factor)


def wait_before_next(sent: Sequence[float], windows: Sequence[Window], now: float) -> float:
    """Seconds from ``now`` until one more message fits every window, given when the last ones ended (the moment
    their answer came back: the API saw each of them before that, so a message started ``seconds`` after it is
    outside its window however long either took on the way)."""
    wait = 0.0
    for window in windows:
        recent = sorted(moment for moment in sent if moment > now - window.seconds)
        if len(recent) >= window.count:
            wait = max(wait, recent[-window.count] + window.seconds - now)
    return wait


def still_counting(sent: Sequence[float], windows: Sequence[Window], now: float) -> list[float]:
    """The ends of messages that still count in some window (older ones no longer matter)."""
    longest = max((window.seconds for window in windows), default=0.0)
    return sorted(moment for moment in sent if moment > now - longest)
