"""The event envelope and derived identifiers."""

import json
import uuid

from agency_shared.events import AcceptanceEvidence, ApplicationSubmitted, ApplicationSubmittedData, derived_id, utc_now
from agency_shared.forms import ApplicationForm
from tests.support.data import CURRENT, application
from tests.support.events import application_submitted, enquiry_received


def _event() -> ApplicationSubmitted:
    now = utc_now()
    return ApplicationSubmitted(
        event_id=uuid.uuid4(),
        correlation_id="corr-1",
        occurred_at=now,
        data=ApplicationSubmittedData(
            application_id=uuid.uuid4(),
            application=ApplicationForm.model_validate(application()),
            acceptance=AcceptanceEvidence(
                agreement_id=CURRENT.id,
                agreement_version=CURRENT.version,
                agreement_sha256=CURRENT.sha256,
                accepted_at=now,
                client_ip="203.0.113.7",
                user_agent="test",
            ),
            locale="en",
        ),
    )


def test_envelope_round_trips_through_json_with_the_contract_fields() -> None:
    event = _event()
    wire = event.model_dump(mode="json")
    assert set(wire) == {"event_id", "event_type", "schema_version", "occurred_at", "correlation_id", "data"}
    assert wire["event_type"] == "application.submitted"
    assert wire["schema_version"] == 1
    assert wire["occurred_at"].endswith("Z")
    assert ApplicationSubmitted.model_validate_json(event.model_dump_json()) == event


def test_derived_ids_are_stable_and_distinct() -> None:
    assert derived_id("a", "b") == derived_id("a", "b")
    assert derived_id("a", "b") != derived_id("ab")
    assert derived_id("a", "b").version == 5


def test_submissions_published_before_the_human_check_existed_parse_as_not_recorded_not_as_none() -> None:
    # "none" would hold them for ever: their applicants already had the old receipt, so nothing releases them.
    for event in (application_submitted(), enquiry_received()):
        wire = json.loads(event.model_dump_json())
        del wire["data"]["human_check"]
        assert type(event).model_validate(wire).data.human_check is None
