"""Write each service's AsyncAPI document to docs/asyncapi/<service>.yaml (``make asyncapi``); no broker needed.

The documents come from the services' own apps (``create_app``), built against a
fixed development broker address, so they are the same on every machine and the
test suite can regenerate them and compare (tests/unit/test_asyncapi.py).
"""

import sys
from pathlib import Path
from typing import Any

from pydantic import AmqpDsn

import agreements.main
import casework.main
import intake.main
import notifications.main
from agency_chassis.asyncapi import EventDocument
from agreements.settings import AgreementsSettings
from casework.settings import CaseworkSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings

ROOT = Path(__file__).resolve().parents[1]
FOLDER = ROOT / "docs" / "asyncapi"
# What the documents show as the broker (the server entry and the vhost of every channel).
DOCUMENTED_BROKER = AmqpDsn("amqp://localhost:5672/")


def documents(**settings: Any) -> dict[str, EventDocument]:
    """Each service's document, from an app that is built but never started."""
    shared: dict[str, Any] = {"environment": "local", "amqp_url": DOCUMENTED_BROKER, **settings}
    apps = {
        "intake": intake.main.create_app(IntakeSettings(_env_file=None, **shared)),
        "agreements": agreements.main.create_app(AgreementsSettings(_env_file=None, **shared)),
        "notifications": notifications.main.create_app(NotificationsSettings(_env_file=None, **shared)),
        "casework": casework.main.create_app(CaseworkSettings(_env_file=None, **shared)),
    }
    return {service: app.state.asyncapi for service, app in apps.items()}


def path_of(service: str) -> Path:
    return FOLDER / f"{service}.yaml"


def main() -> int:
    FOLDER.mkdir(parents=True, exist_ok=True)
    for service, document in documents(log_level="WARNING").items():
        path = path_of(service)
        path.write_text(document.to_yaml(), encoding="utf-8")
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
