"""No personal value reaches a log line through a validation error: a run with known, refused values, its log read."""

import io
import json
import logging
import uuid

import pytest

import agreements.main
import intake.main
import notifications.main
from agency_chassis.logs import configure_logging
from agency_shared.topology import (
    AGREEMENTS_APPLICATION_SUBMITTED,
    AGREEMENTS_EMAIL_VERIFIED,
    NOTIFICATIONS_AGREEMENT_RECORDED,
    NOTIFICATIONS_ENQUIRY_RECEIVED,
)
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support import broker
from tests.support.apps import client, serving
from tests.support.data import application, flat_form
from tests.support.events import agreement_recorded_event, application_submitted, email_verified, enquiry_received

MARK = uuid.uuid4().hex[:10]
# Unique values, each refused by validation somewhere below, so a log line holding one got it from there.
NAME = f"Zhou{MARK}\nWei"  # a line break: a single-line field refuses it
EMAIL = f"zhou.{MARK}@@example.com"
PHONE = f"call {MARK}7"
USER_AGENT = f"agent-{MARK}"
KNOWN = (f"Zhou{MARK}", f"zhou.{MARK}", f"call {MARK}", USER_AGENT)


def bodies() -> list[tuple[str, str, bytes]]:
    """(routing key, message id, body) of events any client could publish, each refused by its consumers."""
    submitted = application_submitted().model_dump(mode="json")
    submitted["data"]["application"]["operator"] = {"name": NAME, "email": EMAIL, "phone": PHONE}
    enquiry = enquiry_received().model_dump(mode="json")
    enquiry["data"]["enquiry"].update(name=NAME, email=EMAIL)
    # Both subjects named: the model's own check fails, and pydantic's text would quote the whole data.
    verified = email_verified(uuid.uuid4(), email=EMAIL).model_dump(mode="json")
    verified["data"].update(enquiry_id=str(uuid.uuid4()), user_agent=USER_AGENT)
    recorded = agreement_recorded_event().model_dump(mode="json")
    recorded["data"].update(applicant_name=NAME, applicant_email=EMAIL, sequence="not a number")
    recorded["data"]["application"]["operator"] = {"name": NAME, "email": EMAIL, "phone": PHONE}
    return [
        ("agreement.recorded", f"bad-recorded-{MARK}", json.dumps(recorded).encode()),
        ("application.submitted", f"bad-application-{MARK}", json.dumps(submitted).encode()),
        ("enquiry.received", f"bad-enquiry-{MARK}", json.dumps(enquiry).encode()),
        ("email.verified", f"bad-verified-{MARK}", json.dumps(verified).encode()),
    ]


@pytest.mark.usefixtures("restored_logging")
async def test_refused_values_are_nowhere_in_the_log(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
    amqp_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    intake_app = intake.main.create_app(intake_settings)
    apps = (
        intake_app,
        agreements.main.create_app(agreements_settings),
        notifications.main.create_app(notifications_settings),
    )
    buffer = io.StringIO()
    configure_logging("tests", "INFO", stream=buffer)  # the services' handler, writing here, at their level
    caplog.set_level(logging.INFO)
    form = application({"operator.name": NAME, "operator.email": EMAIL, "operator.phone": PHONE})
    enquiry = {"name": NAME, "email": EMAIL, "services": ["official_account"], "message": f"call {MARK}7"}
    async with serving(*apps), client(intake_app) as http:
        refused = [
            await http.post("/v1/applications", json=form, headers={"User-Agent": USER_AGENT}),
            await http.post("/v1/enquiries", json={**enquiry, "message": ""}, headers={"User-Agent": USER_AGENT}),
            await http.post(
                "/",
                data=dict(flat_form(form)),
                headers={"User-Agent": USER_AGENT},
            ),
        ]
        for routing_key, message_id, body in bodies():
            await broker.publish_raw(amqp_url, body, routing_key, message_id)
        for queue, count in (
            (AGREEMENTS_APPLICATION_SUBMITTED, 1),
            (NOTIFICATIONS_AGREEMENT_RECORDED, 1),
            (NOTIFICATIONS_ENQUIRY_RECEIVED, 1),
            (AGREEMENTS_EMAIL_VERIFIED, 1),
        ):
            dead = await broker.take(amqp_url, queue.dead_letter_queue.name, count)
            assert [m.message_id for m in dead] != [], queue.name

    assert [response.status_code for response in refused] == [422, 422, 422], [r.text for r in refused]
    logged = buffer.getvalue() + "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.__dict__}" for record in caplog.records
    )
    # The log saw the refusals: their silence about the values means something.
    assert f"bad-application-{MARK}" in logged
    assert "operator.email" in logged or "application.operator" in logged
    found = [value for value in KNOWN if value.lower() in logged.lower()]
    assert found == [], [line for line in logged.splitlines() if any(v.lower() in line.lower() for v in found)][:5]
