"""``python -m casework``: serve; ``create-admin``: the first admin account; ``dlq list|replay``: dead letters;
``policies``: the queues' RabbitMQ policies as JSON lines."""

import sys
from functools import partial

import uvicorn

from agency_chassis import dead_letters, policies
from agency_chassis.startup import load_settings
from casework import admin_cli
from casework.settings import CaseworkSettings

TOOLS = (["dlq"], ["policies"], ["create-admin"])


def main() -> None:
    # Serving refuses missing settings and placeholders; the tools need only what they use.
    settings = load_settings(CaseworkSettings, "casework", check=sys.argv[1:2] not in TOOLS)
    if sys.argv[1:2] == ["dlq"]:
        sys.exit(dead_letters.main(sys.argv[2:], str(settings.amqp_url)))
    if sys.argv[1:2] == ["policies"]:
        sys.exit(policies.main(sys.argv[2:], settings.queue_max_length, settings.dead_letter_retention_days))
    if sys.argv[1:2] == ["create-admin"]:
        sys.exit(admin_cli.main(sys.argv[2:], settings))
    from casework.main import create_app  # here: the tools above need none of the web app

    app = partial(create_app, settings)
    uvicorn.run(app, factory=True, host=settings.bind_host, port=settings.casework_port)


if __name__ == "__main__":
    main()
