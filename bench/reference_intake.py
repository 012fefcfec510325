"""The straightforward intake the real one is measured against.

Plain FastAPI on uvicorn, the same pydantic model, one aio-pika channel with
publisher confirms, and each publish awaited in the request: what a competent
engineer writes first. Same guarantees as intake: the body is fully validated,
the event is persistent, mandatory and confirmed before the 202.

    python bench/reference_intake.py --port 8100 --amqp-url amqp://guest:guest@localhost/
"""

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aio_pika
import uvicorn
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import (
    AcceptanceEvidence,
    ApplicationSubmitted,
    ApplicationSubmittedData,
    derived_id,
    utc_now,
)
from agency_shared.forms import ApplicationForm
from agency_shared.topology import EVENTS_EXCHANGE


class Accepted(BaseModel):
    application_id: uuid.UUID


def create_app(amqp_url: str) -> FastAPI:
    state: dict[str, aio_pika.abc.AbstractExchange] = {}
    current = AgreementCatalog.bundled().current()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        connection = await aio_pika.connect_robust(amqp_url)
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        state["exchange"] = await channel.get_exchange(EVENTS_EXCHANGE.name)
        yield
        await connection.close()

    app = FastAPI(lifespan=lifespan)

    @app.post("/v1/applications", status_code=202, response_model=Accepted)
    async def submit(form: ApplicationForm, request: Request) -> Accepted:
        if (form.agreement.version, form.agreement.sha256) != (current.version, current.sha256):
            raise HTTPException(409, "not the current agreement")
        application_id = uuid.uuid4()
        now = utc_now()
        event = ApplicationSubmitted(
            event_id=derived_id(ApplicationSubmitted.routing_key, str(application_id)),
            occurred_at=now,
            correlation_id=uuid.uuid4().hex,
            data=ApplicationSubmittedData(
                application_id=application_id,
                application=form,
                acceptance=AcceptanceEvidence(
                    agreement_id=current.id,
                    agreement_version=current.version,
                    agreement_sha256=current.sha256,
                    accepted_at=now,
                    client_ip=request.client.host if request.client else "unknown",
                    user_agent=request.headers.get("user-agent", ""),
                ),
                locale=form.locale,
            ),
        )
        await state["exchange"].publish(
            aio_pika.Message(
                event.model_dump_json().encode(),
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                content_type="application/json",
                message_id=str(event.event_id),
                correlation_id=event.correlation_id,
            ),
            routing_key=event.routing_key,
            mandatory=True,
        )
        return Accepted(application_id=application_id)

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--amqp-url", required=True)
    args = parser.parse_args()
    uvicorn.run(create_app(args.amqp_url), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
