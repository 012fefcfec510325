"""The use case behind both the JSON API and the HTML pages: take a raw submission, accept it or say why not."""

import logging
import re
import uuid
from dataclasses import dataclass, replace
from typing import Any, Protocol, TypeVar

from prometheus_client import Counter
from pydantic import BaseModel, ValidationError

from agency_shared.agreement_documents import AgreementCatalog
from agency_shared.events import Event, HumanCheck
from agency_shared.forms import ApplicationForm, EnquiryForm
from intake.captcha import SOLUTION_FIELD, HumanChecks
from intake.idempotency import IdempotencyKeys, KeyReused
from intake.submission import (
    RequestContext,
    canonical_fingerprint,
    ensure_current,
    fingerprint,
    id_for,
    submit_application,
    submit_enquiry,
)

logger = logging.getLogger(__name__)

# A field no person sees or fills (hidden by CSS, skipped by keyboard and screen
# readers); form-filling bots do fill it.
HONEYPOT_FIELD = "fax"
# The no-JavaScript form carries its idempotency key as a hidden field.
IDEMPOTENCY_FIELD = "idempotency_key"
# The key names the submission, so it must not be guessable or likely to be shared by
# two clients: a UUID or another random token of 16 to 128 printable ASCII characters
# without spaces (the README quotes this pattern).
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{16,128}$")

HONEYPOT_HITS = Counter("intake_honeypot_hits_total", "Submissions with the honeypot field filled", ["form"])
SUBMISSIONS = Counter("intake_submissions_total", "Submissions by form and outcome", ["form", "outcome"])
# The accepted count of each form, looked up once (``labels`` takes a lock and builds its key on every call).
_ACCEPTED: dict[str, Counter] = {}


F = TypeVar("F", bound=BaseModel)


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


@dataclass(frozen=True)
class Screened:
    """A submission's fields without the honeypot and the idempotency key; ``decoy`` if the trap was filled."""

    fields: dict[str, Any]
    context: RequestContext
    decoy: Taken | None = None


class Intake:
    """Screen, validate and accept submissions: the API's route handler and the pages take the same steps.

    Accepting one: the agreement must be current; a keyed submission claims its key for its data
    (``KeyReused`` for other data; unkeyed ones never touch the database); the human check is
    noted; the event is published.
    """

    def __init__(
        self, catalog: AgreementCatalog, publisher: EventSink, keys: IdempotencyKeys, human_checks: HumanChecks
    ) -> None:
        self.catalog = catalog
        self._publisher = publisher
        self._keys = keys
        self.human_checks = human_checks

    async def apply(self, raw: dict[str, Any], context: RequestContext) -> Taken:
        screened = self.screen("application", raw, context)
        if screened.decoy is not None:
            return screened.decoy
        form = self.validated("application", ApplicationForm, screened.fields)
        return await self.accept_application(form, screened.context)

    async def enquire(self, raw: dict[str, Any], context: RequestContext) -> Taken:
        screened = self.screen("enquiry", raw, context)
        if screened.decoy is not None:
            return screened.decoy
        return await self.accept_enquiry(self.validated("enquiry", EnquiryForm, screened.fields), screened.context)

    def screen(self, kind: str, raw: dict[str, Any], context: RequestContext) -> Screened:
        """Take out the honeypot, the idempotency key and the ALTCHA solution; a filled honeypot gets a decoy,
        answered as accepted."""
        fields = dict(raw)
        trap = fields.pop(HONEYPOT_FIELD, None)
        key = fields.pop(IDEMPOTENCY_FIELD, None)
        solution = fields.pop(SOLUTION_FIELD, None)
        if context.idempotency_key is None and isinstance(key, str) and key:
            context = replace(context, idempotency_key=key)
        if solution is not None:
            context = replace(context, captcha_solution=solution)
        if context.idempotency_key is not None and not IDEMPOTENCY_KEY.match(context.idempotency_key):
            SUBMISSIONS.labels(kind, "invalid").inc()
            reason = "must be a random token (a UUID) of 16 to 128 printable characters without spaces"
            raise InvalidSubmission([FieldProblem("idempotency_key", reason, "idempotency_key_invalid")])
        if trap:
            HONEYPOT_HITS.labels(kind).inc()
            SUBMISSIONS.labels(kind, "honeypot").inc()
            logger.info("honeypot filled: %s answered as accepted, not published", kind)
            # Not validated, so named by the key and the raw fields: a bot's retry gets the same id.
            decoy = Taken(id_for(kind, context.idempotency_key, canonical_fingerprint(fields)), published=False)
            return Screened(fields, context, decoy=decoy)
        return Screened(fields, context)

    def validated(self, kind: str, form: type[F], fields: dict[str, Any]) -> F:
        try:
            return form.model_validate(fields)
        except ValidationError as exc:
            SUBMISSIONS.labels(kind, "invalid").inc()
            raise InvalidSubmission(field_problems(exc)) from exc

    async def accept_application(self, form: ApplicationForm, context: RequestContext) -> Taken:
        current = self.catalog.current()
        ensure_current(form, current)
        application_id = await self._identified("application", form, context)
        human_check = await self._human_check("application", application_id, context)
        event = submit_application(form, current, context, human_check, application_id)
        await self._publish("application", event)
        return Taken(event.data.application_id, published=True)

    async def accept_enquiry(self, form: EnquiryForm, context: RequestContext) -> Taken:
        enquiry_id = await self._identified("enquiry", form, context)
        human_check = await self._human_check("enquiry", enquiry_id, context)
        event = submit_enquiry(form, context, human_check, enquiry_id)
        await self._publish("enquiry", event)
        return Taken(event.data.enquiry_id, published=True)

    async def _identified(self, kind: str, form: BaseModel, context: RequestContext) -> uuid.UUID:
        """The submission's id. Without an Idempotency-Key a new one: nothing is fingerprinted and the
        database is never reached. With one, derived from the key and the data, the key being claimed
        for that data (``KeyReused`` if it was first used for other data)."""
        if context.idempotency_key is None:
            return uuid.uuid4()
        printed = fingerprint(form)
        submission_id = id_for(kind, context.idempotency_key, printed)
        try:
            await self._keys.claim(kind, context.idempotency_key, printed, submission_id)
        except KeyReused:
            SUBMISSIONS.labels(kind, "key_reused").inc()
            logger.info("%s refused: its Idempotency-Key was first used for other data", kind)
            raise
        return submission_id

    async def _human_check(self, kind: str, submission_id: uuid.UUID, context: RequestContext) -> HumanCheck:
        # Keyed, the solution is spent on the submission the key and its data name, so its retry may present
        # it again; unkeyed, every request is a submission of its own (id_for gives a new id).
        return await self.human_checks.check(kind, context.captcha_solution, f"{kind}:{submission_id}")

    async def _publish(self, kind: str, event: Event) -> None:
        await self._publisher.publish(event)
        accepted = _ACCEPTED.get(kind)
        if accepted is None:
            accepted = _ACCEPTED[kind] = SUBMISSIONS.labels(kind, "accepted")
        accepted.inc()


def field_problems(exc: ValidationError) -> list[FieldProblem]:
    return [
        FieldProblem(
            field=".".join(str(part) for part in error["loc"]) or "body", message=error["msg"], type=error["type"]
        )
        for error in exc.errors()
    ]
