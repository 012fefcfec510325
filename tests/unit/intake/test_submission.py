"""Unit tests of turning a form into the application.submitted event."""

import pytest

from agency_shared.forms import ApplicationForm
from intake.submission import AgreementNotCurrent, RequestContext, application_id_for, submit_application
from tests.support.data import CURRENT, application

CONTEXT = RequestContext(client_ip="203.0.113.7", user_agent="UA", correlation_id="c1", idempotency_key=None)


def test_event_carries_the_server_side_evidence() -> None:
    event = submit_application(ApplicationForm.model_validate(application()), CURRENT, CONTEXT)
    evidence = event.data.acceptance
    assert (evidence.client_ip, evidence.user_agent) == ("203.0.113.7", "UA")
    assert (evidence.agreement_version, evidence.agreement_sha256) == (CURRENT.version, CURRENT.sha256)
    assert evidence.accepted_at == event.occurred_at
    assert event.correlation_id == "c1"


@pytest.mark.parametrize("field", ["version", "sha256"])
def test_an_agreement_other_than_the_current_one_is_refused(field: str) -> None:
    stale = {"version": "0", "sha256": "0" * 64}[field]
    form = ApplicationForm.model_validate(application({f"agreement.{field}": stale}))
    with pytest.raises(AgreementNotCurrent) as caught:
        submit_application(form, CURRENT, CONTEXT)
    assert caught.value.current == CURRENT


def test_the_same_idempotency_key_and_data_name_the_same_application_and_event() -> None:
    form = ApplicationForm.model_validate(application())
    keyed = RequestContext("203.0.113.7", "UA", "c1", idempotency_key="key-1")
    first, second = submit_application(form, CURRENT, keyed), submit_application(form, CURRENT, keyed)
    assert first.data.application_id == second.data.application_id == application_id_for(form, "key-1")
    assert first.event_id == second.event_id
    assert application_id_for(form, None) != application_id_for(form, None)


def test_the_same_idempotency_key_with_other_data_names_another_application_and_event() -> None:
    """Once a key's claim has expired it may carry other data: that must not reuse the first one's event id."""
    keyed = RequestContext("203.0.113.7", "UA", "c1", idempotency_key="key-1")
    first = submit_application(ApplicationForm.model_validate(application()), CURRENT, keyed)
    other = submit_application(ApplicationForm.model_validate(application({"notes": "other"})), CURRENT, keyed)
    assert other.data.application_id != first.data.application_id
    assert other.event_id != first.event_id
