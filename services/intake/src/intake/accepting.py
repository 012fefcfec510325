"""The use case behind both the JSON API and the HTML pages: take a raw submission, accept it or say why not."""

import logging
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from prometheus_client import Counter
from pydantic import ValidationError

from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import Event
from agency_shared.forms import ApplicationForm, EnquiryForm
from intake.submission import RequestContext, id_for, submit_application, submit_enquiry

logger = logging.getLogger(__name__)

# A field no person sees or fills (hidden by CSS, skipped by keyboard and screen
# readers); form-filling bots do fill it.
HONEYPOT_FIELD = "fax"
# The no-JavaScript form carries its idempotency key as a hidden field.
IDEMPOTENCY_FIELD = "idempotency_key"
# The key names the submission, so it must not be guessable or likely to be shared by
# two clients: a UUID or another random token of 16 to 128 printable characters.
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{16,128}$")

HONEYPOT_HITS = Counter("intake_honeypot_hits_total", "Submissions with the honeypot field filled", ["form"])
SUBMISSIONS = Counter("intake_submissions_total", "Submissions by form and outcome", ["form", "outcome"])


class EventSink(Protocol):
    async def publish(self, event: Event) -> None: ...


@dataclass(frozen=True)
class FieldProblem:
    field: str
    message: str
    type: str


class InvalidSubmission(Exception):
    def __init__(self, errors: list[FieldProblem]) -> None:
        super().__init__(f"{len(errors)} invalid field(s)")
        self.errors = errors


@dataclass(frozen=True)
class Taken:
    """A submission the broker has (or, for a honeypot hit, that is answered as if it had)."""

    id: uuid.UUID
    published: bool


class Intake:
    def __init__(self, catalog: AgreementCatalog, publisher: EventSink) -> None:
        self.catalog = catalog
        self._publisher = publisher

    async def apply(self, raw: dict[str, Any], context: RequestContext) -> Taken:
        def build(fields: dict[str, Any], ctx: RequestContext) -> tuple[Event, uuid.UUID]:
            event = submit_application(ApplicationForm.model_validate(fields), self.catalog.current(), ctx)
            return event, event.data.application_id

        return await self._take("application", raw, context, build)

    async def enquire(self, raw: dict[str, Any], context: RequestContext) -> Taken:
        def build(fields: dict[str, Any], ctx: RequestContext) -> tuple[Event, uuid.UUID]:
            event = submit_enquiry(EnquiryForm.model_validate(fields), ctx)
            return event, event.data.enquiry_id

        return await self._take("enquiry", raw, context, build)

    async def _take(
        self,
        kind: str,
        raw: dict[str, Any],
        context: RequestContext,
        build: Callable[[dict[str, Any], RequestContext], tuple[Event, uuid.UUID]],
    ) -> Taken:
        fields = dict(raw)
        trap = fields.pop(HONEYPOT_FIELD, None)
        key = fields.pop(IDEMPOTENCY_FIELD, None)
        if context.idempotency_key is None and isinstance(key, str) and key:
            context = replace(context, idempotency_key=key)
        if context.idempotency_key is not None and not IDEMPOTENCY_KEY.match(context.idempotency_key):
            SUBMISSIONS.labels(kind, "invalid").inc()
            reason = "must be a random token (a UUID) of 16 to 128 printable characters without spaces"
            raise InvalidSubmission([FieldProblem("idempotency_key", reason, "idempotency_key_invalid")])
        if trap:
            HONEYPOT_HITS.labels(kind).inc()
            SUBMISSIONS.labels(kind, "honeypot").inc()
            logger.info("honeypot filled: %s answered as accepted, not published", kind)
            return Taken(id_for(kind, context.idempotency_key), published=False)
        try:
            event, subject_id = build(fields, context)
        except ValidationError as exc:
            SUBMISSIONS.labels(kind, "invalid").inc()
            raise InvalidSubmission(field_problems(exc)) from exc
        await self._publisher.publish(event)
        SUBMISSIONS.labels(kind, "accepted").inc()
        return Taken(subject_id, published=True)


def field_problems(exc: ValidationError) -> list[FieldProblem]:
    return [
        FieldProblem(
            field=".".join(str(part) for part in error["loc"]) or "body", message=error["msg"], type=error["type"]
        )
        for error in exc.errors()
    ]
