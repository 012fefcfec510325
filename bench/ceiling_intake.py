"""Intake itself with publishing taken out: the ceiling of what the HTTP side alone can answer.

Everything else is the real intake app (guards, validation, the event built and
serialised); only the publisher is swapped for one that discards the event, so
the gap between this and intake is what publishing with confirms costs.

    python -m bench.ceiling_intake   (settings from the environment, as for `python -m intake`,
                                      INTAKE_WORKERS included)
"""

import uvicorn
from fastapi import FastAPI

from agency_chassis.coalescing import HTTP_PROTOCOL
from agency_shared.events import Event
from intake.main import create_app
from intake.settings import IntakeSettings


class DiscardingSink:
    def __init__(self) -> None:
        self.discarded = 0

    async def publish(self, event: Event) -> None:
        event.model_dump_json()  # the serialisation intake would do, so only the broker round trip is missing
        self.discarded += 1


def create_ceiling_app() -> FastAPI:
    return create_app(sink=DiscardingSink())


def main() -> None:
    settings = IntakeSettings()
    uvicorn.run(
        "bench.ceiling_intake:create_ceiling_app",
        factory=True,
        host="127.0.0.1",
        port=settings.intake_port,
        workers=settings.intake_workers,
        access_log=False,
        log_level="warning",
        http=HTTP_PROTOCOL,  # as intake serves
    )


if __name__ == "__main__":
    main()
