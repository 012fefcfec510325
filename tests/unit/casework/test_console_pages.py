"""The console's words (every key in both languages, every status, action and reason named) and its case list's
query string (each value no filter takes is refused naming its field), without a server."""

import json
import re
import string
from datetime import UTC, datetime
from importlib import resources
from typing import get_args

import pytest
from starlette.datastructures import QueryParams

from casework.accounts import Account
from casework.cases import HistoryKind
from casework.console.case_pages import ListForm, list_form, page_window
from casework.console.pages import PageProblem
from casework.i18n import catalogue, translate
from casework.roles import Role
from casework.storage import SORT_KEYS
from casework.workflow import ACTIONS, REJECTION_REASONS, ApplicationStatus, CaseKind, EnquiryStatus

CONSOLE = json.loads(resources.files("casework").joinpath("translations/console.json").read_text("utf-8"))
CONSOLE_TEMPLATES = ("cases.html", "case.html", "problem.html", "erase.html", "reacceptance.html", "ledger.html",
                     "dead_letters.html", "_console.html")  # fmt: skip


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


@pytest.mark.parametrize("key", sorted(CONSOLE))
def test_every_console_word_is_in_both_languages_with_the_same_placeholders(key: str) -> None:
    texts = CONSOLE[key]
    assert set(texts) == {"en", "zh-CN"}
    assert texts["en"].strip()
    assert texts["zh-CN"].strip()
    assert placeholders(texts["en"]) == placeholders(texts["zh-CN"])


def test_every_status_action_reason_and_timeline_line_has_its_words() -> None:
    known = set(catalogue())
    needed = {f"status.{status}" for status in (*ApplicationStatus, *EnquiryStatus)}
    needed |= {f"action.{action}" for action in ACTIONS} | {"action.assign_owner"}
    needed |= {f"rejection.{reason}" for reason in REJECTION_REASONS}
    needed |= {f"history.{kind}" for kind in get_args(HistoryKind)}
    needed |= {f"sort.{key}" for key in SORT_KEYS} | {f"kind.{kind}" for kind in CaseKind}
    needed |= {f"problem.title_{status}" for status in (403, 404, 409, 422, 502, 503)}
    assert needed - known == set()


def test_the_console_templates_and_routes_use_only_words_that_exist() -> None:
    known = set(catalogue())
    package = resources.files("casework")
    sources = [package.joinpath("templates", name).read_text("utf-8") for name in CONSOLE_TEMPLATES]
    sources += [
        entry.read_text("utf-8") for entry in package.joinpath("console").iterdir() if entry.name.endswith(".py")
    ]
    used = {key for source in sources for key in re.findall(r"""t\(\s*["']([a-z_]+\.[a-z_0-9]*[a-z0-9])["']""", source)}
    used |= {key for source in sources for key in re.findall(r'"(problem\.[a-z_]*[a-z])"', source)}
    used.discard("problem.html")  # the template's name
    assert used
    assert used - known == set()


def test_a_chinese_page_reads_chinese() -> None:
    assert translate("status.submitted_to_tencent", "zh-CN") == "已提交腾讯"
    assert translate("cases.count", "zh-CN", total=3, page=1, pages=1) == "共 3 个案件 · 第 1/1 页"


ACCOUNT = Account("a1b2c3", "mei@agency.example", "Mei", Role.OPERATOR, None, True, datetime(2026, 1, 1, tzinfo=UTC))


def test_a_query_string_becomes_the_lists_query() -> None:
    params = QueryParams("q=+Maple+&status=triage&status=on_hold&kind=application&owner=unassigned&overdue=1"
                         "&sort=company&dir=asc&page=3&per_page=50")  # fmt: skip
    form = list_form(params, {ACCOUNT.id: ACCOUNT})
    now = datetime(2026, 12, 1, tzinfo=UTC)
    query = form.query(now)
    assert (query.search, tuple(query.statuses), query.kind, query.owner) == (
        "Maple",
        ("triage", "on_hold"),
        "application",
        "",
    )
    assert (query.overdue_at, query.sort, query.descending, query.page, query.per_page) == (
        now,
        "company",
        False,
        3,
        50,
    )
    assert list_form(QueryParams(f"owner={ACCOUNT.id}"), {ACCOUNT.id: ACCOUNT}).query(now).owner == ACCOUNT.id
    assert list_form(QueryParams(""), {}) == ListForm()


def test_a_page_link_keeps_the_filters() -> None:
    form = list_form(QueryParams("q=竹&status=triage&status=live&overdue=1"), {})
    link = form.link(page="2")
    assert link.startswith("/console/cases?")
    again = list_form(QueryParams(link.split("?", 1)[1]), {})
    assert (again.q, again.statuses, again.overdue, again.page) == ("竹", ("triage", "live"), True, 2)
    assert "dir=asc" in form.sort_link("company")
    assert "dir=desc" in form.sort_link("due_at")


@pytest.mark.parametrize(
    ("query", "field"),
    [("status=done", "status"), ("kind=case", "kind"), ("owner=zzz", "owner"), ("overdue=2", "overdue"),
     ("sort=search", "sort"), ("dir=up", "dir"), ("page=0", "page"), ("page=10001", "page"),
     ("per_page=26", "per_page"), ("q=%00", "q"), ("q=" + "a" * 201, "q"), ("sort=company&sort=status", "sort"),
     ("$where=1", "$where")],
)  # fmt: skip
def test_a_value_no_filter_takes_is_refused_naming_its_field(query: str, field: str) -> None:
    with pytest.raises(PageProblem) as refused:
        list_form(QueryParams(query), {ACCOUNT.id: ACCOUNT})
    assert (refused.value.status, refused.value.field) == (422, field)


@pytest.mark.parametrize(
    ("current", "pages", "shown"),
    [
        (1, 1, (1,)),
        (1, 2, (1, 2)),
        (1, 8, (1, 2, 3, 4, None, 8)),
        (5, 9, (1, 2, 3, 4, 5, 6, 7, 8, 9)),
        (50, 10_000, (1, None, 47, 48, 49, 50, 51, 52, 53, None, 10_000)),
        (10_000, 10_000, (1, None, 9_997, 9_998, 9_999, 10_000)),
        (9, 2, (1, 2)),  # past the last page (the list was shorter than the link said)
    ],
)
def test_the_page_links_are_a_window_around_the_current_page(
    current: int, pages: int, shown: tuple[int | None, ...]
) -> None:
    assert page_window(current, pages) == shown


def test_ten_thousand_pages_are_a_dozen_links() -> None:
    for current in (1, 2, 5_000, 9_999, 10_000):
        links = page_window(current, 10_000)
        assert len(links) <= 11
        assert links[0] == 1
        assert links[-1] == 10_000
        assert current in links
