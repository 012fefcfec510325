"""The audit log: who, what, when and from where for sign-ins and account changes; append-only, each entry numbered
and under a keyed HMAC (an edit and a deletion show); filters, pages and the CSV export (itself audited)."""

import csv
import hashlib
import io
import json
from datetime import timedelta
from typing import Any

from pymongo import AsyncMongoClient

from casework.access import Role
from casework.audit import AuditLog, AuditQuery, entry_mac
from tests.support.console import console, sign_in, signed_in_token

Mongo = AsyncMongoClient[dict[str, Any]]


async def entries(mongo: Mongo, mongo_db: str, **query: Any) -> list[dict[str, Any]]:
    return [e async for e in mongo[mongo_db]["casework_audit"].find(query).sort("_id", 1)]


async def test_sign_in_failure_and_sign_out_are_recorded_with_who_and_where(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        viewer = await c.staff(Role.VIEWER)
        async with c.client("198.51.100.77") as http:
            await sign_in(http, "viewer@agency.example", "wrong password here")
            await sign_in(http, "nobody@agency.example", "wrong password here")
            csrf = await signed_in_token(http, "viewer@agency.example")
            await http.post("/console/logout", data={"csrf_token": csrf})
        recorded = await entries(mongo, mongo_db)
        assert [(e["action"], e["actor"], e["subject"], e["from_address"]) for e in recorded] == [
            ("login_failed", None, viewer.id, "198.51.100.77"),
            ("login_failed", None, None, "198.51.100.77"),
            ("login", "viewer@agency.example", viewer.id, "198.51.100.77"),
            ("logout", "viewer@agency.example", viewer.id, "198.51.100.77"),
        ]
        assert recorded[0]["detail"] == {"reason": "wrong_password"}
        assert recorded[1]["detail"] == {"reason": "unknown_account"}
        assert all(e["at"] == c.clock.now for e in recorded)
        assert "wrong password here" not in str(recorded)  # never a password, even a wrong one


async def test_account_changes_are_recorded_with_the_admin_as_actor(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        async with c.client("192.0.2.10") as http:
            csrf = await signed_in_token(http, "admin@agency.example")
            created = await http.post(
                "/console/accounts",
                data={"csrf_token": csrf, "email": "new@agency.example", "name": "Wang Fang", "role": "operator"},
            )
            assert created.status_code == 201
            new = await c.access.accounts.by_email("new@agency.example")
            assert new is not None
            await http.post(f"/console/accounts/{new.id}", data={"csrf_token": csrf, "action": "role", "role": "admin"})
            await http.post(f"/console/accounts/{new.id}", data={"csrf_token": csrf, "action": "reset_password"})
        recorded = await entries(mongo, mongo_db, action={"$in": ["account_created", "account_changed"]})
        assert [(e["action"], e["actor"], e["subject"], e["from_address"], e["detail"]) for e in recorded] == [
            (
                "account_created",
                "admin@agency.example",
                new.id,
                "192.0.2.10",
                {"role": "operator", "sign_in": "password"},
            ),
            ("account_changed", "admin@agency.example", new.id, "192.0.2.10", {"change": "role", "role": "admin"}),
            ("account_changed", "admin@agency.example", new.id, "192.0.2.10", {"change": "reset_password"}),
        ]
        assert "Wang Fang" not in str(recorded)  # the record, not the personal data


async def test_each_entry_carries_a_keyed_mac_of_what_was_stored(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db, audit_hmac_key="k" * 40) as c:
        await c.access.audit.record(
            actor="operator@agency.example",
            action="view_personal_data",
            subject="case-123",
            from_address="203.0.113.4",
            detail={"document": "passport", "note": "中文 ✓"},
        )
        stored = (await entries(mongo, mongo_db))[0]
        assert stored["sequence"] == 1
        assert stored["hmac"] == entry_mac(b"k" * 40, stored)
        page = await c.access.audit.find()
        assert page.entries[0].intact
        # Someone with database access rewrites who looked, and recomputes what they can without the key.
        edited = {**stored, "actor": "someone-else@agency.example"}
        forged = hashlib.sha256(json.dumps(edited, default=str).encode()).hexdigest()
        await mongo[mongo_db]["casework_audit"].update_one({}, {"$set": {"actor": edited["actor"], "hmac": forged}})
        assert not (await c.access.audit.find()).entries[0].intact


async def test_a_deleted_entry_shows_as_a_gap_in_the_sequence(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        for number in range(1, 6):
            await c.access.audit.record(
                actor="x@agency.example", action="note", subject=f"case-{number}", from_address=None
            )
        assert (await c.access.audit.find()).missing_count == 0
        collection = mongo[mongo_db]["casework_audit"]
        await collection.delete_one({"subject": "case-3"})
        await collection.delete_one({"subject": "case-5"})  # the newest: only the counter remembers it
        page = await c.access.audit.find()
        assert (page.missing, page.missing_count) == ([5, 3], 2)
        async with c.client() as http:
            await signed_in_token(http, "admin@agency.example")
            shown = await http.get("/console/audit", params={"actor": "x@agency.example"})
        assert shown.status_code == 200
        assert "2 entries are missing from the log (numbers 5, 3)" in shown.text


def test_the_audit_log_offers_no_way_to_change_or_remove_an_entry() -> None:
    public = {name for name in dir(AuditLog) if not name.startswith("_")}
    assert public == {"open", "record", "find", "all"}


async def test_filters_and_pages(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        audit = c.access.audit
        start = c.clock.now
        for number in range(7):
            actor = "a@agency.example" if number % 2 else "b@agency.example"
            await audit.record(actor=actor, action="note", subject=f"case-{number}", from_address=None)
            c.clock.advance(days=1)
        only_a = await audit.find(AuditQuery(actor="a@agency.example"))
        assert [e.subject for e in only_a.entries] == ["case-5", "case-3", "case-1"]
        window = await audit.find(AuditQuery(since=start + timedelta(days=2), until=start + timedelta(days=4)))
        assert [e.subject for e in window.entries] == ["case-3", "case-2"]
        first = await audit.find(limit=3)
        second = await audit.find(before=first.next_before, limit=3)
        third = await audit.find(before=second.next_before, limit=3)
        seen = [e.subject for page in (first, second, third) for e in page.entries]
        assert seen == [f"case-{n}" for n in range(6, -1, -1)]
        assert third.next_before is None


async def test_the_audit_page_filters_and_refuses_bad_filters(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        async with c.client() as http:
            await signed_in_token(http, "admin@agency.example")
            await c.access.audit.record(actor="x@agency.example", action="erase", subject="case-9", from_address=None)
            page = await http.get("/console/audit", params={"action": "erase"})
            assert page.status_code == 200
            assert "case-9" in page.text
            assert "signed in" not in page.text.split("<tbody>")[1]
            bad = await http.get("/console/audit", params={"since": "2026-13-45", "action": "drop_table"})
            assert bad.status_code == 400
            assert "Enter a date as YYYY-MM-DD." in bad.text
            assert 'aria-describedby="error-since"' in bad.text


async def test_the_csv_export_is_audited_and_safe_in_a_spreadsheet(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        await c.access.audit.record(
            actor=None, action="login_failed", subject=None, from_address='=HYPERLINK("http://evil")'
        )
        async with c.client("192.0.2.44") as http:
            await signed_in_token(http, "admin@agency.example")
            answer = await http.get("/console/audit.csv")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/csv")
        rows = list(csv.reader(io.StringIO(answer.text.lstrip("\ufeff"))))
        assert rows[0] == ["sequence", "at", "actor", "action", "subject", "from_address", "detail", "hmac"]
        addresses = [row[5] for row in rows[1:]]
        assert '\'=HYPERLINK("http://evil")' in addresses
        exports = await entries(mongo, mongo_db, action="export")
        assert [(e["actor"], e["subject"], e["from_address"]) for e in exports] == [
            ("admin@agency.example", "audit_log", "192.0.2.44")
        ]


async def test_a_page_showing_personal_data_records_the_view(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.VIEWER)
        async with c.client("203.0.113.50") as http:
            await sign_in(http, "viewer@agency.example")
            assert (await http.get("/console/probe/cases/case-77/documents")).status_code == 200
        views = await entries(mongo, mongo_db, action="view_personal_data")
        assert [(e["actor"], e["subject"], e["from_address"], e["detail"]) for e in views] == [
            ("viewer@agency.example", "case-77", "203.0.113.50", {"document": "passport"})
        ]


async def test_the_export_records_which_filters_were_used_not_their_text(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        async with c.client() as http:
            await signed_in_token(http, "admin@agency.example")
            typed = {"actor": "free text <script>", "subject": "王小明 passport", "since": "2026-01-01"}
            assert (await http.get("/console/audit.csv", params=typed)).status_code == 200
        exports = await entries(mongo, mongo_db, action="export")
        assert [e["detail"] for e in exports] == [{"filters": "actor,subject,since"}]


async def test_a_date_past_the_calendar_is_a_field_error(mongo: Mongo, mongo_url: str, mongo_db: str) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        await c.staff(Role.ADMIN)
        async with c.client() as http:
            await signed_in_token(http, "admin@agency.example")
            page = await http.get("/console/audit", params={"until": "9999-12-31"})
            assert page.status_code == 400
            assert 'aria-describedby="error-until"' in page.text
            export = await http.get("/console/audit.csv", params={"until": "9999-12-31"})
            assert export.status_code == 400


async def test_pages_follow_time_then_sequence_with_the_filters_served_by_an_index(
    mongo: Mongo, mongo_url: str, mongo_db: str
) -> None:
    async with console(mongo, mongo_url, mongo_db) as c:
        audit = c.access.audit
        for number in range(6):  # two entries in each millisecond: the sequence orders them
            await audit.record(actor="a@agency.example", action="note", subject=f"case-{number}", from_address=None)
            if number % 2:
                c.clock.advance(milliseconds=1)
        first = await audit.find(AuditQuery(actor="a@agency.example"), limit=3)
        second = await audit.find(AuditQuery(actor="a@agency.example"), before=first.next_before, limit=3)
        assert [e.subject for e in (*first.entries, *second.entries)] == [f"case-{n}" for n in range(5, -1, -1)]
        assert second.next_before is None
        listed = await (await mongo[mongo_db]["casework_audit"].list_indexes()).to_list()
        indexes = {tuple(index["key"].items()) for index in listed}
        for name in ("actor", "action", "subject"):
            assert ((name, 1), ("at", -1), ("sequence", -1)) in indexes
        assert (("at", -1), ("sequence", -1)) in indexes
