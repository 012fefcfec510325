"""Documents, against SecantusDB and RabbitMQ: staff ask for checklist items, the client uploads through the portal
(streamed into GridFS, typed by content, bombs and disguises refused with a reason and nothing stored), staff accept
or ask for a revision the client then reads, downloads are audited and sensitive ones kept to the owner and
admins, an erasure deletes the files; each kept file's hash reaches the case's timeline and the evidence ledger."""

import asyncio
import hashlib
import tracemalloc
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from pydantic import SecretStr
from pymongo import AsyncMongoClient
from pymongo.errors import ServerSelectionTimeoutError

import agreements.main
from agency_shared.events import ApplicantErased, ApplicantErasedData, DocumentReceived, utc_now
from agreements.settings import AgreementsSettings
from agreements.storage import MongoAcceptanceLedger
from casework.access import Role
from casework.audit import AuditQuery
from casework.cases import Case
from casework.documents.checklists import known_items
from casework.documents.store import BUCKET, CHUNK_BYTES, DOCUMENTS, CaseDocuments, FileAbout, StoredFile
from casework.documents.uploads import UploadSlots
from casework.settings import CaseworkSettings
from tests.support.apps import serving
from tests.support.broker import publish_events, wait_settled
from tests.support.casework import AGREEMENTS_TOKEN, Casework, SignedIn, eventually, running_casework
from tests.support.documents import (
    EXE,
    HTML,
    Client,
    flate_bomb_pdf,
    in_slices,
    jpeg,
    multipart,
    pdf,
    pixel_bomb_png,
    png,
    portal_client,
    portal_links_of,
    portal_token,
)
from tests.support.events import application_submitted
from tests.support.settings import settings_with

MongoClient = AsyncMongoClient[dict[str, Any]]


async def stored_files(mongo: MongoClient, db: str) -> tuple[int, int]:
    return (
        await mongo[db][f"{BUCKET}.files"].count_documents({}),
        await mongo[db][f"{BUCKET}.chunks"].count_documents({}),
    )


async def requested(casework: Casework, operator: SignedIn, case: Case, *items: str, note: str = "") -> None:
    answer = await operator.post(f"/console/cases/{case.id}/documents/request", {"items": list(items), "note": note})
    assert answer.status_code == 303, answer.text


@asynccontextmanager
async def client_of(casework: Casework, case: Case) -> AsyncIterator[Client]:
    client = portal_client(casework.app, casework.settings, portal_token(casework.settings, case.id))
    async with client.http:
        yield client


async def test_pdf_jpeg_and_png_are_kept_with_their_hash_on_the_timeline(
    casework_settings: CaseworkSettings, mongo: MongoClient
) -> None:
    files = {"application_letter": pdf(), "certificate_of_incorporation": jpeg(), "contact_id": png()}
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, *files, note="请上传清晰的扫描件 please")
        assert (await casework.case(case.id)).status == "awaiting_documents"
        async with client_of(casework, case) as client:
            page = await client.http.get("/portal/documents")
            assert page.status_code == 200
            assert page.text.count('enctype="multipart/form-data"') == 3
            assert "请上传清晰的扫描件 please" in page.text
            answers = {}
            for item, content in files.items():
                answer = await client.upload(item, content, f"{item}.bin", "application/octet-stream")
                assert answer.status_code == 201, answer.text
                answers[item] = answer.json()
        for item, content in files.items():
            assert answers[item]["sha256"] == hashlib.sha256(content).hexdigest()
            assert answers[item]["size"] == len(content)
        assert [answers[item]["content_type"] for item in files] == ["application/pdf", "image/jpeg", "image/png"]
        assert [answers[item]["name"] for item in files] == [
            "application_letter.pdf", "certificate_of_incorporation.jpg", "contact_id.png"
        ]  # fmt: skip
        stored = await casework.case(case.id)
        assert stored.status == "documents_in_review"  # every outstanding item arrived
        lines = {line.item: line for line in stored.history if line.kind == "document_received"}
        assert {item: lines[item].sha256 for item in files} == {item: answers[item]["sha256"] for item in files}
        # What GridFS holds is byte for byte what was sent.
        bucket = casework.app.state.adapters.documents
        for item, content in files.items():
            stream = await bucket.read(answers[item]["document_id"])
            assert await stream.read() == content
        assert (await stored_files(mongo, casework_settings.mongodb_db))[0] == 3


async def test_oversize_is_refused_as_it_streams_and_nothing_is_stored(
    casework_settings: CaseworkSettings, mongo: MongoClient
) -> None:
    settings = settings_with(casework_settings, document_max_bytes=2 * 1024 * 1024)
    async with running_casework(settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        async with client_of(casework, case) as client:
            answer = await client.upload("application_letter", pdf(padding=2 * 1024 * 1024))
            assert answer.status_code == 413
            assert answer.json()["reason"] == "too_large"
            # A declared length past the limit is refused before anything is read.
            declared = await client.http.post(
                "/portal/documents/application_letter",
                content=b"x" * 10,
                headers={"Content-Type": "multipart/form-data; boundary=x", "Content-Length": str(50 * 1024 * 1024),
                         "Accept": "application/json"},
            )  # fmt: skip
            assert declared.status_code == 413
        assert await stored_files(mongo, settings.mongodb_db) == (0, 0)
        assert (await casework.case(case.id)).status == "awaiting_documents"


@pytest.mark.parametrize(
    ("content", "name", "reason"),
    [
        (EXE, "certificate.pdf", "wrong_type"),
        (HTML, "certificate.pdf", "unknown_type"),
        (b"%PDX-not really", "certificate.pdf", "unknown_type"),
        (b"GIF89a" + b"\0" * 64, "certificate.png", "wrong_type"),
    ],
)
async def test_disguised_files_are_refused_with_their_reason(
    casework_settings: CaseworkSettings, mongo: MongoClient, content: bytes, name: str, reason: str
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        async with client_of(casework, case) as client:
            answer = await client.upload("application_letter", content, name, "application/pdf")
            assert answer.status_code == 415, answer.text
            assert (answer.json()["reason"], answer.json()["field"]) == (reason, "file")
            # The page a browser gets says why, in the client's language.
            body, _ = answer.json()["message"], None
            assert "PDF, JPEG" in body or "PDF, JPEG or PNG" in body
        assert await stored_files(mongo, casework_settings.mongodb_db) == (0, 0)


async def test_a_png_declared_as_pdf_is_kept_as_png(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        async with client_of(casework, case) as client:
            answer = await client.upload("application_letter", png(), "scan.pdf", "application/pdf")
        assert answer.status_code == 201, answer.text
        assert (answer.json()["content_type"], answer.json()["name"]) == ("image/png", "scan.png")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (pixel_bomb_png(), "too_many_pixels"),  # 10 gigapixels: Pillow's own bomb limit
        (pixel_bomb_png(8_000, 8_000), "too_many_pixels"),  # 64 MP: past DOCUMENT_MAX_PIXELS
        (flate_bomb_pdf(64), "decompression_bomb"),
        (png()[:60], "broken_image"),
    ],
    ids=["png-10-gigapixels", "png-64-megapixels", "pdf-flate-bomb", "png-truncated"],
)
async def test_bombs_and_broken_files_are_refused_and_deleted(
    casework_settings: CaseworkSettings, mongo: MongoClient, content: bytes, reason: str
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        async with client_of(casework, case) as client:
            answer = await client.upload("application_letter", content, "x.png", "image/png")
        assert answer.status_code == 422, answer.text
        assert answer.json()["reason"] == reason
        assert len(content) < 1024 * 1024  # small files all: what they claim is the danger
        assert await stored_files(mongo, casework_settings.mongodb_db) == (0, 0)
        assert not [line for line in (await casework.case(case.id)).history if line.kind == "document_received"]


@pytest.mark.parametrize(
    ("name", "kept"),
    [
        (b"../../etc/passwd", "passwd.pdf"),
        (b"..\\..\\windows\\system32\\cmd.exe", "cmd.pdf"),
        # A raw CR/LF ends the part's header line: what follows is another header, which is ignored.
        (b"invoice\r\nX-Injected: 1.pdf", "_invoice.pdf"),
        (b"tab\there\x07bell\x00nul.pdf", "tabherebellnul.pdf"),
        ("contract\u202egnp.exe".encode(), "contractgnp.pdf"),
        ("营业执照（香港）.pdf".encode(), "营业执照（香港）.pdf"),
        (b"", "document.pdf"),
        (b"...", "document.pdf"),
        (b"<script>alert(1)</script>.pdf", "script_.pdf"),
        (b'a"b<c>d|e?f*g:h.pdf', "a_b_c_d_e_f_g_h.pdf"),
    ],
)
async def test_hostile_names_are_sanitised(casework_settings: CaseworkSettings, name: bytes, kept: str) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        async with client_of(casework, case) as client:
            answer = await client.upload("application_letter", pdf(), name)
        assert answer.status_code == 201, answer.text
        assert answer.json()["name"] == kept


async def test_a_thousand_character_name_is_cut(casework_settings: CaseworkSettings) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        async with client_of(casework, case) as client:
            answer = await client.upload("application_letter", pdf(), ("章" * 1000 + ".pdf").encode())
        kept = answer.json()["name"]
        assert (len(kept), kept[-4:], kept[0]) == (120, ".pdf", "章")


async def test_expired_or_tampered_sessions_and_wrong_csrf_store_nothing(
    casework_settings: CaseworkSettings, mongo: MongoClient
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        settings = casework.settings
        expired = portal_token(settings, case.id, utc_now() - timedelta(days=settings.portal_link_days + 1))
        valid = portal_token(settings, case.id)
        tampered = valid[:-3] + ("AAA" if not valid.endswith("AAA") else "BBB")
        other_case = portal_token(settings, uuid.uuid4())
        # The portal's refusals (casework.portal.pages): an expired link is gone, a tampered one unauthorised, a
        # case not opened yet "being recorded"; nothing stored in any case.
        for token, status in ((expired, 410), (tampered, 401), (other_case, 200)):
            client = portal_client(casework.app, settings, token)
            async with client.http:
                answer = await client.upload("application_letter", pdf())
                assert answer.status_code == status, (token, answer.text)
                page = await client.http.get("/portal/documents")
                assert page.status_code == status
        client = portal_client(casework.app, settings, valid)
        async with client.http:
            for csrf, after in (("0" * 64, False), (None, False), (client.csrf, True)):
                answer = await client.upload("application_letter", pdf(), csrf=csrf, csrf_after_file=after)
                assert answer.status_code == 403, answer.text
        assert await stored_files(mongo, settings.mongodb_db) == (0, 0)
        assert (await casework.case(case.id)).status == "awaiting_documents"


async def test_staff_accept_or_ask_for_a_revision_the_client_reads(casework_settings: CaseworkSettings) -> None:
    reason = "The seal is unclear; 印章不清晰，请重新扫描 <b>all</b> pages"
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "certificate_of_incorporation", "contact_id")
        async with client_of(casework, case) as client:
            for item in ("certificate_of_incorporation", "contact_id"):
                assert (await client.upload(item, pdf())).status_code == 201
            assert (await casework.case(case.id)).status == "documents_in_review"
            # A file for an item no longer awaited is refused (and not kept).
            again = await client.upload("contact_id", pdf())
            assert again.status_code == 409
            accepted = await operator.post(f"/console/cases/{case.id}/documents/certificate_of_incorporation/accept")
            assert accepted.status_code == 303
            revised = await operator.post(f"/console/cases/{case.id}/documents/contact_id/revision", {"reason": reason})
            assert revised.status_code == 303
            stored = await casework.case(case.id)
            assert stored.status == "documents_need_revision"
            assert (stored.history[-1].kind, stored.history[-1].text) == ("status_changed", reason)
            page = await client.http.get("/portal/documents")
            assert "印章不清晰，请重新扫描 &lt;b&gt;all&lt;/b&gt; pages" in page.text  # shown, escaped
            assert page.text.count('enctype="multipart/form-data"') == 1
            assert (await client.upload("contact_id", jpeg(), "id.jpg", "image/jpeg")).status_code == 201
        assert (await casework.case(case.id)).status == "documents_in_review"
        # A revision needs its reason; accepting an item twice is refused.
        empty = await operator.post(f"/console/cases/{case.id}/documents/contact_id/revision", {"reason": " "})
        assert empty.status_code == 422
        assert "reason" in empty.text
        twice = await operator.post(f"/console/cases/{case.id}/documents/certificate_of_incorporation/accept")
        assert twice.status_code == 409
        unknown = await operator.post(f"/console/cases/{case.id}/documents/request", {"items": ["../../etc"]})
        assert unknown.status_code == 422
        actions = [entry.action async for entry in casework.access.audit.all(AuditQuery())]
        assert {"request_documents", "accept_document", "ask_document_revision"} <= set(actions)


async def test_the_status_page_sums_up_the_checklist_in_the_clients_language(
    casework_settings: CaseworkSettings,
) -> None:
    reason = "印章不清晰，请重新扫描 <b>全部</b> 页\r\nSeal unclear"
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        token = portal_links_of(casework.settings).issue(case.id, 0, "zh-CN", utc_now())  # a zh-CN link
        client = portal_client(casework.app, casework.settings, token)
        async with client.http:
            nothing = await client.http.get("/portal")
            assert nothing.status_code == 200, nothing.text
            assert 'id="checklist-summary"' not in nothing.text
            items = ("certificate_of_incorporation", "contact_id", "application_letter")
            await requested(casework, operator, case, *items)
            for item in ("certificate_of_incorporation", "contact_id"):
                assert (await client.upload(item, pdf())).status_code == 201
            url = f"/console/cases/{case.id}/documents"
            assert (await operator.post(f"{url}/certificate_of_incorporation/accept")).status_code == 303
            assert (await operator.post(f"{url}/contact_id/revision", {"reason": reason})).status_code == 303
            page = await client.http.get("/portal")
            assert page.status_code == 200
            assert '<html lang="zh-CN">' in page.text
            assert page.headers["cache-control"] == "no-store"
            summary = page.text[page.text.index('id="checklist-summary"') : page.text.index('id="documents-link"')]
            states = {
                "certificate_of_incorporation": "已通过",
                "contact_id": "请重新上传",
                "application_letter": "请上传",
            }
            for key, label in (
                ("certificate_of_incorporation", "公司注册证书或营业执照"),
                ("contact_id", "联系人身份证或护照"),
                ("application_letter", "申请公函（腾讯模板），签字并盖章"),
            ):
                start = summary.index(f'data-item="{key}"')
                entry = summary[start : summary.index("</li>", start)]
                assert label in entry, entry
                assert states[key] in entry, entry
            assert "原因：" in summary
            assert "印章不清晰，请重新扫描 &lt;b&gt;全部&lt;/b&gt; 页" in summary  # the staff's reason, escaped
            assert summary.count('class="revision-reason"') == 1
            # The client switches to English: the same summary in English.
            english = await client.http.get("/portal?lang=en")
            assert "Contact person&#39;s ID card or passport" in english.text
            assert "Please upload it again" in english.text
            assert "Accepted" in english.text
            # The documents page and a refused upload are portal pages too: its language switch, headers, base.
            documents = await client.http.get("/portal/documents?lang=zh-CN")
            assert '<html lang="zh-CN">' in documents.text
            assert "/portal/static/portal.css" in documents.text
            assert documents.headers["x-frame-options"] == "DENY"
            body, headers = multipart(HTML, "x.pdf", csrf=client.csrf)
            address = "/portal/documents/application_letter?lang=zh-CN"
            refused = await client.http.post(address, content=body, headers=headers)
            assert refused.status_code == 415, refused.text
            assert refused.headers["cache-control"] == "no-store"
            assert '<html lang="zh-CN">' in refused.text
            assert 'data-field="file"' in refused.text
            assert "该文件不是 PDF、JPEG 或 PNG 文件" in refused.text
            assert 'href="/portal/documents?lang=en"' in refused.text  # the switch leads back to the checklist


async def test_downloads_are_audited_and_sensitive_ones_kept_to_owner_and_admins(
    casework_settings: CaseworkSettings,
) -> None:
    async with running_casework(casework_settings) as casework:
        owner = await casework.account(Role.OPERATOR, "owner@agency.example", "Owner")
        case = await casework.open_application(owner=owner.id, owner_name=owner.name)
        async with casework.signed_in(Role.OPERATOR, "other@agency.example") as operator:
            await requested(casework, operator, case, "contact_id", "application_letter")
        async with client_of(casework, case) as client:
            ids = {item: (await client.upload(item, png(), "身份证.png", "image/png")).json()["document_id"]
                   for item in ("contact_id", "application_letter")}  # fmt: skip
        sensitive = f"/console/cases/{case.id}/documents/contact_id/files/{ids['contact_id']}"
        plain = f"/console/cases/{case.id}/documents/application_letter/files/{ids['application_letter']}"
        async with casework.signed_in(Role.VIEWER) as viewer:
            assert (await viewer.http.get(sensitive)).status_code == 403
            page = await viewer.http.get(f"/console/cases/{case.id}")
            assert f'href="{plain}"' in page.text
            assert f'href="{sensitive}"' not in page.text
            answer = await viewer.http.get(plain)
            assert (answer.status_code, answer.content) == (200, png())
        async with casework.signed_in(Role.ADMIN) as admin:
            answer = await admin.http.get(sensitive)
        assert answer.status_code == 200
        assert answer.headers["content-type"] == "image/png"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["content-disposition"].startswith("attachment;")
        assert "filename*=UTF-8''%E8%BA%AB%E4%BB%BD%E8%AF%81.png" in answer.headers["content-disposition"]
        entries = [entry async for entry in casework.access.audit.all(AuditQuery())]
        downloads = [(entry.actor, entry.action) for entry in entries if "download" in entry.action]
        assert sorted(downloads) == sorted([
            ("viewer@agency.example", "download_document_refused"),
            ("viewer@agency.example", "download_document"),
            ("admin@agency.example", "download_document"),
        ])  # fmt: skip


async def test_an_erasure_deletes_the_files_and_keeps_their_hashes(
    casework_settings: CaseworkSettings, mongo: MongoClient, amqp_url: str
) -> None:
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.ADMIN) as admin:
        case = await casework.open_application()
        await requested(casework, admin, case, "application_letter", "contact_id")
        async with client_of(casework, case) as client:
            for item in ("application_letter", "contact_id"):
                assert (await client.upload(item, pdf(padding=600_000), "秘密.pdf")).status_code == 201
        assert (await stored_files(mongo, casework_settings.mongodb_db))[1] >= 4
        assert case.application_id is not None
        erased = ApplicantErased(
            event_id=uuid.uuid4(),
            correlation_id="erase",
            data=ApplicantErasedData(application_id=case.application_id, event_ids=(), erased_at=utc_now()),
        )
        await publish_events(amqp_url, [erased])

        async def files_gone() -> bool:
            return await stored_files(mongo, casework_settings.mongodb_db) == (0, 0)

        await eventually(files_gone)
        stored = await casework.case(case.id)
        lines = [line for line in stored.history if line.kind == "document_received"]
        assert [(bool(line.sha256), line.file_name) for line in lines] == [(True, "[erased]")] * 2
        page = await admin.http.get(f"/console/cases/{case.id}")
        assert "秘密" not in page.text
        items = await casework.app.state.adapters.documents.items_of(case.id)
        assert all(file.name == "[erased]" and len(file.sha256) == 64 for item in items for file in item.files)


async def documents_with_a_request(mongo: MongoClient, db: str) -> tuple[CaseDocuments, uuid.UUID]:
    documents = CaseDocuments(mongo, db)
    await documents.ensure_indexes()
    case_id = uuid.uuid4()
    await documents.request(case_id, [known_items()["contact_id"]], "护照", "staff@agency.example", utc_now())
    return documents, case_id


async def chunks_of(mongo: MongoClient, db: str, file_id: Any) -> int:
    return await mongo[db][f"{BUCKET}.chunks"].count_documents({"files_id": file_id})


async def test_an_upload_that_ends_after_the_erasure_keeps_nothing(
    casework_settings: CaseworkSettings, mongo: MongoClient
) -> None:
    """The portal let the upload in before the erasure; its chunks are written on both sides of it, its files
    document and its receipt after: the file, its name and its document.received are not kept."""
    db = casework_settings.mongodb_db
    documents, case_id = await documents_with_a_request(mongo, db)
    body = pdf(padding=3 * CHUNK_BYTES)
    writer = await documents.open_upload("秘密.pdf", FileAbout(case_id, "contact_id", "application/pdf"))
    await writer.write(body[: 2 * CHUNK_BYTES])
    await documents.erase_case(case_id)
    await writer.write(body[2 * CHUNK_BYTES :])
    await writer.close()
    stored = StoredFile(file_id=str(writer.file_id), sha256=hashlib.sha256(body).hexdigest(), size=len(body),
                        content_type="application/pdf", name="秘密.pdf", received_at=utc_now())  # fmt: skip
    assert not await documents.received(case_id, "contact_id", stored)
    assert await documents.read(stored.file_id) is None
    assert await chunks_of(mongo, db, writer.file_id) == 0
    item = await documents.item(case_id, "contact_id")
    assert item is not None
    assert (item.files, item.state) == ([], "requested")
    assert await documents.unannounced() == []


async def test_an_erasure_deletes_the_chunks_of_an_upload_cut_off_by_a_crash(
    casework_settings: CaseworkSettings, mongo: MongoClient
) -> None:
    db = casework_settings.mongodb_db
    documents, case_id = await documents_with_a_request(mongo, db)
    writer = await documents.open_upload("护照.pdf", FileAbout(case_id, "contact_id", "application/pdf"))
    await writer.write(pdf(padding=3 * CHUNK_BYTES))  # no close: the process died mid-upload
    assert await chunks_of(mongo, db, writer.file_id) == 3
    await documents.erase_case(case_id)
    assert await chunks_of(mongo, db, writer.file_id) == 0


async def test_the_sweep_deletes_an_unfinished_uploads_chunks_after_an_hour(
    casework_settings: CaseworkSettings, mongo: MongoClient
) -> None:
    db = casework_settings.mongodb_db
    documents, case_id = await documents_with_a_request(mongo, db)
    about = FileAbout(case_id, "contact_id", "application/pdf")
    unfinished = await documents.open_upload("a.pdf", about)
    await unfinished.write(pdf(padding=2 * CHUNK_BYTES))
    finished = await documents.open_upload("b.pdf", about)
    await finished.write(pdf(padding=2 * CHUNK_BYTES))
    await finished.close()
    assert await documents.sweep_orphan_chunks() == 0  # still within the hour: an upload may be under way
    assert await chunks_of(mongo, db, unfinished.file_id) == 2
    assert await documents.sweep_orphan_chunks(utc_now() + timedelta(minutes=61)) == 1
    assert await chunks_of(mongo, db, unfinished.file_id) == 0
    assert await chunks_of(mongo, db, finished.file_id) == 3
    download = await documents.read(str(finished.file_id))
    assert download is not None
    assert (await download.read()).startswith(b"%PDF-")


async def stalled(body: bytes, sent: int, release: asyncio.Event) -> AsyncIterator[bytes]:
    """The first ``sent`` bytes of ``body``, then nothing until ``release`` (a connection gone quiet), then the rest."""
    yield body[:sent]
    await release.wait()
    yield body[sent:]


async def test_a_stalled_upload_is_refused_and_one_case_cannot_take_every_slot(
    casework_settings: CaseworkSettings, mongo: MongoClient
) -> None:
    settings = settings_with(casework_settings, document_upload_idle_seconds=2.0, document_uploads_at_once=8)
    async with running_casework(settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter", "contact_id")
        async with client_of(casework, case) as client:
            body, headers = multipart(pdf(padding=300_000), "letter.pdf", "application/pdf", client.csrf)
            headers = {**headers, "Accept": "application/json"}
            release = asyncio.Event()  # never set: these senders stall part-way through the file
            posts = [
                asyncio.create_task(
                    client.http.post(f"/portal/documents/{item}", content=stalled(body, 100_000, release),
                                     headers=headers)
                )
                for item in ("application_letter", "contact_id")
            ]  # fmt: skip
            slots: UploadSlots = casework.app.state.adapters.upload_slots

            async def both_sending() -> bool:
                return slots.sending(case.id) == 2

            # Both hold the case's two slots: a third upload of the same case is refused at once, to retry later.
            await eventually(both_sending)
            third = await client.upload("application_letter", pdf())
            assert third.status_code == 429
            assert (third.json()["reason"], third.headers["Retry-After"]) == ("busy_case", "60")
            # The stalled ones are refused once the body has sent nothing for DOCUMENT_UPLOAD_IDLE_SECONDS.
            refused = await asyncio.gather(*posts)
            assert [(r.status_code, r.json()["reason"]) for r in refused] == [(408, "too_slow")] * 2
            assert refused[0].json()["message"].startswith("The upload took too long and was stopped")
            assert slots.sending(case.id) == 0
            # Nothing of them is kept, and the case may upload again.
            assert await stored_files(mongo, settings.mongodb_db) == (0, 0)
            again = await client.upload("application_letter", pdf())
            assert again.status_code == 201, again.text
        assert (await casework.case(case.id)).status == "awaiting_documents"


@pytest.mark.parametrize("meanwhile", ["database_gone", "item_accepted", "failure_after_the_record"])
async def test_a_file_is_kept_exactly_when_its_record_is(
    casework_settings: CaseworkSettings, mongo: MongoClient, monkeypatch: pytest.MonkeyPatch, meanwhile: str
) -> None:
    """Between the file stored and its record written, the database went away (the request fails: a 500 in a real
    server) or staff marked the item as received by other means (409): the file goes. A failure after the record
    (moving the case to review) leaves the file with its record: the client's document, listed on its item."""
    db = casework_settings.mongodb_db
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        case = await casework.open_application()
        await requested(casework, operator, case, "application_letter")
        handling = casework.app.state.adapters.document_handling
        record = handling.received

        async def interfered(*args: Any) -> bool:
            if meanwhile == "database_gone":
                raise ServerSelectionTimeoutError("the database went away between the file and its record")
            await mongo[db][DOCUMENTS].update_one({}, {"$set": {"state": "accepted"}})
            result: bool = await record(*args)
            return result

        async def database_gone_after(*_: object) -> None:
            raise ServerSelectionTimeoutError("the database went away after the record")

        if meanwhile == "failure_after_the_record":
            monkeypatch.setattr(handling, "_to_review", database_gone_after)
        else:
            monkeypatch.setattr(handling, "received", interfered)
        async with client_of(casework, case) as client:
            if meanwhile == "item_accepted":
                answer = await client.upload("application_letter", pdf(padding=600_000))
                assert (answer.status_code, answer.json()["reason"]) == (409, "not_outstanding")
            else:
                with pytest.raises(ServerSelectionTimeoutError):
                    await client.upload("application_letter", pdf(padding=600_000))
        item = await casework.app.state.adapters.documents.item(case.id, "application_letter")
        if meanwhile == "failure_after_the_record":
            assert item is not None
            assert item.state == "received"
            [kept] = item.files
            stream = await casework.app.state.adapters.documents.read(kept.file_id)
            assert stream is not None
            assert await stream.read() == pdf(padding=600_000)
        else:
            assert await stored_files(mongo, db) == (0, 0)


async def test_memory_stays_bounded_with_twenty_uploads_at_once(casework_settings: CaseworkSettings) -> None:
    count, size = 20, 5 * 1024 * 1024
    content = pdf(padding=size)
    async with running_casework(casework_settings) as casework, casework.signed_in(Role.OPERATOR) as operator:
        cases = [await casework.open_application() for _ in range(count)]
        for case in cases:
            await requested(casework, operator, case, "application_letter")
        clients = [portal_client(casework.app, casework.settings, portal_token(casework.settings, c.id)) for c in cases]
        # The bodies exist before measuring: what is traced is what receiving them costs.
        bodies = [multipart(content, "big.pdf", "application/pdf", client.csrf) for client in clients]
        tracemalloc.start()
        try:
            answers = await asyncio.gather(
                *(
                    client.http.post("/portal/documents/application_letter", content=in_slices(body), headers=headers)
                    for client, (body, headers) in zip(clients, bodies, strict=True)
                )
            )
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            for client in clients:
                await client.http.aclose()
    assert [answer.status_code for answer in answers] == [303] * count
    print(f"\n{count} concurrent uploads of {size / 1_048_576:.0f} MB: traced peak {peak / 1_048_576:.1f} MB "
          f"({peak / (count * size):.1%} of the {count * size / 1_048_576:.0f} MB uploaded)")  # fmt: skip
    # Each upload holds its buffers (a parser slice, the first bytes, a GridFS chunk), never its file.
    assert peak < count * 2 * 1024 * 1024


async def test_the_ledger_links_each_document_once_even_when_redelivered(
    casework_settings: CaseworkSettings,
    agreements_settings: AgreementsSettings,
    mongo: MongoClient,
    amqp_url: str,
) -> None:
    tokens = SecretStr(f"casework={AGREEMENTS_TOKEN}")
    agreements_app = agreements.main.create_app(settings_with(agreements_settings, staff_api_tokens=tokens))
    async with serving(agreements_app), running_casework(casework_settings) as casework:
        submitted = application_submitted()
        await publish_events(amqp_url, [submitted])
        cases = casework.cases

        async def opened() -> list[Case]:
            return await cases.of_subject(submitted.data.application_id)

        [case] = await eventually(opened)
        async with casework.signed_in(Role.OPERATOR) as operator:
            await requested(casework, operator, case, "application_letter")
        async with client_of(casework, case) as client:
            document_id = (await client.upload("application_letter", pdf())).json()["document_id"]
        links = mongo[agreements_settings.mongodb_db]["acceptance_ledger"]
        kind = f"document:{document_id}"

        async def linked() -> dict[str, Any] | None:
            return await links.find_one({"kind": kind})

        link = await eventually(linked)
        assert link["record"]["sha256"] == hashlib.sha256(pdf()).hexdigest()
        assert link["record"]["acceptance_sequence"] == 1
        # The same event again (a redelivery, a replayed dead letter): no second link.
        [item] = await casework.app.state.adapters.documents.items_of(case.id)
        event = casework.app.state.adapters.documents.announcement(case, item.key, item.files[0])
        assert isinstance(event, DocumentReceived)
        await publish_events(amqp_url, [event, event])
        await wait_settled(amqp_url, "agreements.document-received")
        assert await links.count_documents({"kind": kind}) == 1
        ledger: MongoAcceptanceLedger = agreements_app.state.adapters.ledger
        report = await ledger.verify()
        assert report.ok, report
