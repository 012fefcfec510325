"""Every staff action from every status through the console's form (against SecantusDB and RabbitMQ): the allowed
ones move the case and land on its timeline, the refused ones answer 409 with the allowed list and change nothing;
wrong details answer 422 naming the field and change nothing; notes and owners likewise."""

from datetime import date, timedelta
from typing import Any

import pytest
from markupsafe import escape

from agency_shared.events import utc_now
from casework.access import Role
from casework.audit import AuditQuery
from casework.cases import Case
from casework.settings import CaseworkSettings
from casework.workflow import ACTIONS, ApplicationStatus, CaseState, EnquiryStatus, Rules, allowed_actions
from tests.support.casework import Casework, SignedIn, running_casework

APPLICATION_STATUSES = [status.value for status in ApplicationStatus]
ENQUIRY_STATUSES = [status.value for status in EnquiryStatus]


def details(action: str) -> dict[str, str]:
    """What the action's form sends besides the reason."""
    if action == "tencent_requested_info":
        return {"tencent_deadline": (date.today() + timedelta(days=20)).isoformat()}
    if action == "record_rejection":
        return {"rejection_reason": "missing_pages"}
    return {}


async def seeded(casework: Casework, status: str) -> Case:
    if status in ENQUIRY_STATUSES:
        return await casework.open_enquiry(status)
    if status == ApplicationStatus.ON_HOLD:
        return await casework.open_application(status, held_from=ApplicationStatus.TRIAGE.value)
    return await casework.open_application(status)


async def unchanged(casework: Casework, case: Case) -> bool:
    stored = await casework.case(case.id)
    return (stored.status, stored.version, len(stored.history)) == (case.status, case.version, len(case.history))


async def test_every_action_from_every_status(casework_settings: CaseworkSettings) -> None:
    wrong: list[str] = []
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        for status in APPLICATION_STATUSES + ENQUIRY_STATUSES:
            for action in ACTIONS:
                case = await seeded(casework, status)
                state = CaseState(case.kind, case.status, case.held_from, case.tencent_attempts)
                allowed = allowed_actions(state, Rules())
                form = {"action": action, "reason": f"{action} from {status}", "version": str(case.version)}
                answer = await operator.post(f"/console/cases/{case.id}/status", {**form, **details(action)})
                if action in allowed:
                    target = ACTIONS[action].target or case.held_from
                    stored = await casework.case(case.id)
                    last = stored.history[-1]
                    if answer.status_code != 303 or stored.status != target or last.text != form["reason"]:
                        wrong.append(f"{action} from {status}: {answer.status_code}, now {stored.status}")
                    elif (last.kind, last.staff, last.previous) != ("status_changed", operator.member.email, status):
                        wrong.append(f"{action} from {status}: timeline {last}")
                elif answer.status_code != 409 or not await unchanged(casework, case):
                    wrong.append(f"{action} from {status} was not refused: {answer.status_code}")
                else:
                    listed = [item for item in allowed if f'data-action="{item}"' in answer.text]
                    if listed != allowed:
                        wrong.append(f"{action} from {status}: 409 lists {listed}, not {allowed}")
    assert wrong == []


async def test_a_refused_action_answers_json_with_the_allowed_list(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        answer = await operator.post(
            f"/console/cases/{case.id}/status",
            {"action": "hand_over", "reason": "too early"},
            headers={"Accept": "application/json"},
        )
        assert answer.status_code == 409
        assert answer.json()["allowed"] == ["request_documents", "put_on_hold", "withdraw"]
        assert "hand_over" in answer.json()["detail"]
        assert await unchanged(casework, case)


INVALID: list[tuple[str, dict[str, str], str]] = [
    ("request_documents", {"reason": ""}, "reason"),
    ("request_documents", {"reason": "   \n "}, "reason"),
    ("request_documents", {"reason": "x" * 10_000}, "reason"),
    ("request_documents", {"reason": "a\x00b"}, "reason"),
    ("request_documents", {"reason": "carriage\rreturn alone"}, "reason"),
    ("tencent_requested_info", {"reason": "asked"}, "tencent_deadline"),
    ("tencent_requested_info", {"reason": "asked", "tencent_deadline": "2026-13-45"}, "tencent_deadline"),
    ("tencent_requested_info", {"reason": "asked", "tencent_deadline": "yesterday"}, "tencent_deadline"),
    ("tencent_requested_info", {"reason": "asked", "tencent_deadline": "2001-01-01"}, "tencent_deadline"),
    ("tencent_requested_info", {"reason": "asked", "tencent_deadline": "2999-01-01"}, "tencent_deadline"),
    ("record_rejection", {"reason": "no"}, "rejection_reason"),
    ("record_rejection", {"reason": "no", "rejection_reason": "<script>alert(1)</script>"}, "rejection_reason"),
]


@pytest.mark.parametrize(("action", "form", "field"), INVALID)
async def test_a_wrong_detail_answers_422_naming_the_field_and_changes_nothing(
    casework_settings: CaseworkSettings, action: str, form: dict[str, str], field: str
) -> None:
    source = "triage" if action == "request_documents" else "submitted_to_tencent"
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application(source)
        answer = await operator.post(f"/console/cases/{case.id}/status", {"action": action, **form})
        assert answer.status_code == 422
        assert f'<code class="field">{field}</code>' in answer.text
        assert "<script>alert" not in answer.text
        assert await unchanged(casework, case)


async def test_a_reason_typed_on_several_lines_is_kept_as_lines(casework_settings: CaseworkSettings) -> None:
    """Browsers send a textarea's line breaks as CRLF: the reason keeps them as line breaks, not a refusal."""
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        reason = "Checked the name.\r\n名称已核对。"
        answer = await operator.post(
            f"/console/cases/{case.id}/status", {"action": "request_documents", "reason": reason}
        )
        assert answer.status_code == 303
        assert (await casework.case(case.id)).history[-1].text == "Checked the name.\n名称已核对。"


async def test_a_form_from_an_older_version_of_the_case_is_refused(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        form = {"action": "request_documents", "reason": "first", "version": str(case.version)}
        assert (await operator.post(f"/console/cases/{case.id}/status", form)).status_code == 303
        again = await operator.post(f"/console/cases/{case.id}/notes", {"note": "late", "version": str(case.version)})
        assert again.status_code == 409
        assert "reload" in again.text
        assert [entry.kind for entry in (await casework.case(case.id)).history] == ["opened", "status_changed"]


async def post_note(operator: SignedIn, case: Case, note: str) -> Any:
    return await operator.post(f"/console/cases/{case.id}/notes", {"note": note})


HOSTILE = [
    "<script>alert('note')</script>",
    '"><img src=x onerror=alert(1)>',
    "{{ 7*7 }} {% raw %}",
    "Robert'); DROP TABLE cases;--",
    "‮ right-to-left override ‭",
    "表面ソ 𝕿𝖍𝖊 ﷽ 👨‍👩‍👧",
    "line one\r\nline two",
]


@pytest.mark.parametrize("note", HOSTILE)
async def test_hostile_notes_are_kept_as_typed_and_shown_escaped(
    casework_settings: CaseworkSettings, note: str
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        assert (await post_note(operator, case, note)).status_code == 303
        stored = (await casework.case(case.id)).history[-1]
        assert (stored.kind, stored.text) == ("note", note.strip())
        page = (await operator.http.get(f"/console/cases/{case.id}")).text
        assert "<script>alert" not in page
        assert "<img src=x" not in page
        assert str(escape(note.strip())) in page.split('id="h-timeline"')[1]


@pytest.mark.parametrize("note", ["", "   ", "x" * 5001, "bell\x07"])
async def test_bad_notes_are_refused_and_change_nothing(casework_settings: CaseworkSettings, note: str) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        answer = await post_note(operator, case, note)
        assert answer.status_code == 422
        assert '<code class="field">note</code>' in answer.text
        assert await unchanged(casework, case)


async def test_owner_assignment_to_oneself_another_and_nobody(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        colleague = await casework.account(Role.VIEWER, "colleague@agency.example", "张伟 Zhang Wei")
        case = await casework.open_application()
        path = f"/console/cases/{case.id}/owner"
        assert (await operator.post(path, {"owner": operator.member.id})).status_code == 303
        assert (await casework.case(case.id)).owner == operator.member.id
        assert (await operator.post(path, {"owner": colleague.id})).status_code == 303
        page = (await operator.http.get(f"/console/cases/{case.id}")).text
        assert "张伟 Zhang Wei" in page.split('id="case-owner"')[1][:100]
        assert (await operator.post(path, {"owner": ""})).status_code == 303
        assert (await casework.case(case.id)).owner is None
        for bad in ("no-such-account", "<script>", "x" * 300):
            before = await casework.case(case.id)
            answer = await operator.post(path, {"owner": bad})
            assert answer.status_code == 422
            assert await unchanged(casework, before)


async def test_unknown_and_malformed_case_ids(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        unknown = "00000000-0000-4000-8000-000000000000"
        assert (await operator.http.get(f"/console/cases/{unknown}")).status_code == 404
        assert (
            await operator.post(f"/console/cases/{unknown}/status", {"action": "resume", "reason": "r"})
        ).status_code == 404
        for malformed in ("not-a-uuid", "1' OR '1'='1", "%3Cscript%3E"):
            answer = await operator.http.get(f"/console/cases/{malformed}")
            assert answer.status_code == 422
            assert "<script>" not in answer.text
        assert utc_now()  # the clock the pages use is the real one


class AfterTheChange(Exception):
    """A failure once the change is written (the announcement's bookkeeping, the read back)."""


@pytest.mark.parametrize(
    ("path", "form", "audited"),
    [
        ("status", {"action": "request_documents", "reason": "need the licence"}, "status_change"),
        ("notes", {"note": "called the client"}, "note"),
        ("owner", {"owner": ""}, "assign_owner"),
    ],
)
async def test_a_change_written_before_a_failure_is_audited_and_the_failure_surfaces(
    casework_settings: CaseworkSettings, monkeypatch: pytest.MonkeyPatch, path: str, form: dict[str, str], audited: str
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        if path == "owner":
            form = {"owner": operator.member.id}
        written = casework.cases.change

        async def change_then_fail(*args: Any, **kwargs: Any) -> None:
            await written(*args, **kwargs)
            raise AfterTheChange

        monkeypatch.setattr(casework.cases, "change", change_then_fail)
        with pytest.raises(AfterTheChange):
            await operator.post(f"/console/cases/{case.id}/{path}", form)
        assert (await casework.case(case.id)).version == case.version + 1
        entries = (await casework.access.audit.find(AuditQuery(action=audited, subject=str(case.id)))).entries
        assert len(entries) == 1
        assert entries[0].actor == operator.member.email
