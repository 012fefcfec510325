"""Who may do what in the console (viewer, operator, admin × every console route: 403 where denied), CSRF on every
change, and the audit log's record of each view of personal data, export and change."""

from typing import Any

import pytest
from pymongo import AsyncMongoClient

from casework.access import Role
from casework.cases import Case
from casework.settings import CaseworkSettings
from tests.support.casework import Casework, SignedIn, running_casework

Mongo = AsyncMongoClient[dict[str, Any]]
# (method, path with {case}, form, roles allowed)
ROUTES: list[tuple[str, str, dict[str, str], frozenset[Role]]] = [
    ("GET", "/console/cases", {}, frozenset(Role)),
    ("GET", "/console/cases/{case}", {}, frozenset(Role)),
    ("GET", "/console/reacceptance", {}, frozenset(Role)),
    ("GET", "/console/ledger", {}, frozenset(Role)),
    ("GET", "/console/cases/{case}/export", {}, frozenset({Role.OPERATOR, Role.ADMIN})),
    (
        "POST",
        "/console/cases/{case}/status",
        {"action": "request_documents", "reason": "r"},
        frozenset({Role.OPERATOR, Role.ADMIN}),
    ),
    ("POST", "/console/cases/{case}/notes", {"note": "n"}, frozenset({Role.OPERATOR, Role.ADMIN})),
    ("POST", "/console/cases/{case}/owner", {"owner": ""}, frozenset({Role.OPERATOR, Role.ADMIN})),
    ("GET", "/console/cases/{case}/erase", {}, frozenset({Role.ADMIN})),
    ("POST", "/console/cases/{case}/erase", {"confirm": "not it"}, frozenset({Role.ADMIN})),
    ("GET", "/console/dead-letters", {}, frozenset({Role.ADMIN})),
    ("POST", "/console/dead-letters/replay", {}, frozenset({Role.ADMIN})),
]
CHANGES = [(method, path, form) for method, path, form, _ in ROUTES if method == "POST"]


async def call(staff: SignedIn, method: str, path: str, form: dict[str, str], case: Case) -> Any:
    path = path.format(case=case.id)
    if method == "GET":
        return await staff.http.get(path)
    return await staff.post(path, form)


@pytest.mark.parametrize("role", list(Role))
async def test_each_role_on_each_console_route(casework_settings: CaseworkSettings, role: Role) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(role) as staff:
        case = await casework.open_application()
        answers = {
            (method, path): (await call(staff, method, path, form, case)).status_code
            for method, path, form, _ in ROUTES
        }
    expected_denied = {(method, path) for method, path, _, allowed in ROUTES if role not in allowed}
    denied = {route for route, status in answers.items() if status == 403}
    assert denied == expected_denied, answers
    assert all(status not in (401, 500) for status in answers.values()), answers


async def test_a_viewer_sees_a_case_without_the_forms_that_change_it(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.VIEWER) as viewer:
        case = await casework.open_application()
        page = (await viewer.http.get(f"/console/cases/{case.id}")).text
        assert case.company is not None
        assert case.company in page
        for action in ("status", "notes", "owner", "export", "erase"):
            assert f"/console/cases/{case.id}/{action}" not in page


async def test_a_refusal_is_a_console_page_in_the_staff_members_language(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.VIEWER) as viewer:
        case = await casework.open_application()
        viewer.http.headers["Accept-Language"] = "zh-CN,zh;q=0.9"
        answer = await viewer.post(f"/console/cases/{case.id}/status", {"action": "withdraw", "reason": "no"})
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("text/html")
        assert '<html lang="zh-CN">' in answer.text
        as_json = await viewer.http.get(f"/console/cases/{case.id}/export", headers={"Accept": "application/json"})
        assert as_json.status_code == 403
        assert as_json.json() == {"detail": "permission"}


async def test_signed_out_pages_go_to_sign_in_and_changes_are_refused(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        case = await casework.open_application()
        admin.http.headers.pop("Cookie")
        page = await admin.http.get(f"/console/cases/{case.id}")
        assert page.status_code == 303
        assert page.headers["location"].startswith("/console/login?next=")
        for _, path, form in CHANGES:
            assert (await admin.post(path.format(case=case.id), form)).status_code == 401
        assert (await casework.case(case.id)).version == case.version


@pytest.mark.parametrize("token", [None, "", "forged-token"])
async def test_changes_without_the_sessions_csrf_token_are_refused_and_change_nothing(
    casework_settings: CaseworkSettings, token: str | None
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        case = await casework.open_application()
        for _, path, form in CHANGES:
            data = {**form, "confirm": case.reference} if path.endswith("/erase") else form
            sent = data if token is None else {**data, "csrf_token": token}
            answer = await admin.http.post(path.format(case=case.id), data=sent)
            assert answer.status_code == 403, path
        stored = await casework.case(case.id)
        assert (stored.version, stored.status, stored.owner, stored.erased_at) == (case.version, "triage", None, None)


async def audit_entries(casework: Casework, mongo: Mongo) -> list[dict[str, Any]]:
    return [entry async for entry in mongo[casework.settings.mongodb_db]["casework_audit"].find({}).sort("_id", 1)]


async def test_views_exports_and_changes_are_audited(casework_settings: CaseworkSettings, mongo: Mongo) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        subject = str(case.id)
        assert (await operator.http.get(f"/console/cases/{case.id}")).status_code == 200
        export = await operator.http.get(f"/console/cases/{case.id}/export")
        assert export.status_code == 200
        assert "attachment" in export.headers["content-disposition"]
        assert export.json()["client_email"] == case.client_email
        path = f"/console/cases/{case.id}"
        await operator.post(f"{path}/status", {"action": "request_documents", "reason": "checklist sent"})
        await operator.post(f"{path}/notes", {"note": "called the client"})
        await operator.post(f"{path}/owner", {"owner": operator.member.id})
        refused = await operator.post(f"{path}/status", {"action": "hand_over", "reason": "no"})
        assert refused.status_code == 409
        entries = [e for e in await audit_entries(casework, mongo) if e["subject"] == subject]
    assert [e["action"] for e in entries] == ["view_personal_data", "export", "status_change", "note", "assign_owner"]
    assert {e["actor"] for e in entries} == {operator.member.email}
    assert {e["from_address"] for e in entries} == {"203.0.113.9"}
    assert entries[2]["detail"] == {"action": "request_documents", "from": "triage", "to": "awaiting_documents"}
    assert case.client_email is not None
    assert case.client_email not in str(entries)  # the audit log names the case, not the person
