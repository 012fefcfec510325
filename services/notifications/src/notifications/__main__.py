"""``python -m notifications``: serve with uvicorn; ``python -m notifications dlq list|replay``: dead letters."""

import sys
from functools import partial

import uvicorn

from agency_chassis import dead_letters, policies
from agency_chassis.startup import load_settings
from notifications.main import create_app
from notifications.settings import NotificationsSettings


def main() -> None:
    # Serving refuses missing settings and placeholders; the dead-letter tools need only AMQP_URL.
    settings = load_settings(NotificationsSettings, "notifications", check=sys.argv[1:2] not in (["dlq"], ["policies"]))
    if sys.argv[1:2] == ["dlq"]:
        sys.exit(dead_letters.main(sys.argv[2:], str(settings.amqp_url)))
    if sys.argv[1:2] == ["policies"]:  # the queues' policies, for a deployment that applies them itself
        sys.exit(policies.main(sys.argv[2:], settings.queue_max_length, settings.dead_letter_retention_days))
    # The app gets the settings loaded and checked above: once per process.
    app = partial(create_app, settings)
    uvicorn.run(app, factory=True, host=settings.bind_host, port=settings.notifications_port)


if __name__ == "__main__":
    main()
