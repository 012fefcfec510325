"""``python -m intake``: serve with uvicorn; ``python -m intake dlq list|replay``: dead letters."""

import sys
from functools import partial

import uvicorn

from agency_chassis import dead_letters, policies
from agency_chassis.coalescing import HTTP_PROTOCOL
from agency_chassis.metrics import shared_by_workers
from agency_chassis.startup import load_settings
from intake.main import create_app
from intake.settings import IntakeSettings


def main() -> None:
    # Serving refuses missing settings and placeholders; the dead-letter tools need only AMQP_URL.
    settings = load_settings(IntakeSettings, "intake", check=sys.argv[1:2] not in (["dlq"], ["policies"]))
    if sys.argv[1:2] == ["dlq"]:
        sys.exit(dead_letters.main(sys.argv[2:], str(settings.amqp_url)))
    if sys.argv[1:2] == ["policies"]:  # the queues' policies, for a deployment that applies them itself
        sys.exit(policies.main(sys.argv[2:], settings.queue_max_length, settings.dead_letter_retention_days))
    if settings.intake_workers == 1:
        serve(settings)
        return
    # Several processes answer on one port; /metrics (served by any of them) sums them all.
    with shared_by_workers():
        serve(settings)


def serve(settings: IntakeSettings) -> None:
    # One process serves with the settings loaded and checked above; several need the factory by name,
    # and each worker process loads (and checks) its own, once.
    app = partial(create_app, settings) if settings.intake_workers == 1 else "intake.main:create_app"
    # No access log: intake logs every submission itself (with its correlation id) and
    # counts requests by route and status in /metrics; a second line per request would only cost throughput.
    uvicorn.run(
        app,
        factory=True,
        host=settings.bind_host,
        port=settings.intake_port,
        workers=settings.intake_workers,
        access_log=False,
        # Which X-Forwarded-For to believe is intake's own setting (TRUSTED_PROXIES), not uvicorn's.
        proxy_headers=False,
        # uvicorn's httptools protocol, its responses' head and body written as one (see the module).
        http=HTTP_PROTOCOL,
    )


if __name__ == "__main__":
    main()
