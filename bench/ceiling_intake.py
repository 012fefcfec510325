"""Intake itself with publishing taken out: the ceiling of what the HTTP side alone can answer.

Everything else is the real intake app (guards, validation, the event built and
serialised); only the publisher is swapped for one that discards the event, so
the gap between this and intake is what publishing with confirms costs.

    python bench/ceiling_intake.py   (settings from the environment, as for `python -m intake`)
"""

import uvicorn
from fastapi import FastAPI

from agency_shared.events import Event
from intake.accepting import Intake
from intake.main import create_app
from intake.settings import IntakeSettings


class DiscardingSink:
    async def publish(self, event: Event) -> None:
        event.model_dump_json()  # the serialisation intake would do, so only the broker round trip is missing


def create_ceiling_app() -> FastAPI:
    app = create_app()
    real: Intake = app.state.intake
    app.state.intake = Intake(real.catalog, DiscardingSink())
    return app


def main() -> None:
    settings = IntakeSettings()
    uvicorn.run(create_ceiling_app(), host="127.0.0.1", port=settings.intake_port, log_level="warning")


if __name__ == "__main__":
    main()
