"""A fixed application record (every value given, nothing random), for tests that pin bytes and hashes."""

import uuid
from datetime import UTC, datetime, timedelta, timezone

from agency_shared.events import AcceptanceEvidence
from agency_shared.forms import ApplicationForm
from agreements.recording import ApplicationRecord

V1_SHA256 = "e3b0b919d17436e6e740d458f3f455c15f0fd748d97a4331648fced85d7bdb50"
FORM = {
    "account": {"type": "service", "name": "Maple Tea 枫叶茶", "description": "Canadian maple tea. 加拿大枫叶茶。"},
    "operator": {"name": "Li Wei 李伟", "email": "li.wei@mapletea.example", "phone": "+1 604 555 0199"},
    "company": {
        "legal_name": "Maple Tea Trading Ltd. 枫叶茶贸易有限公司",
        "registration_number": "BC1234567",
        "country": "CA",
        "address": "1000 Granville St\nVancouver, BC V6Z 1L5",
    },
    "agreement": {"version": "1", "sha256": V1_SHA256, "accepted": True},
    "locale": "zh-CN",
}
APPLICATION = ApplicationRecord(
    application_id=uuid.UUID("3f2b8c1e-5a47-4d0e-9b6a-1c2d3e4f5a6b"),
    acceptance_id=uuid.UUID("8d7c6b5a-4e3f-5a2b-8c1d-0e9f8a7b6c5d"),
    application=ApplicationForm.model_validate(FORM),
    acceptance=AcceptanceEvidence(
        agreement_id="wechat-oa-service-agreement",
        agreement_version="1",
        agreement_sha256=V1_SHA256,
        accepted_at=datetime(2026, 11, 25, 9, 24, 13, 123456, tzinfo=timezone(timedelta(hours=8))),
        client_ip="198.51.100.20",
        user_agent="Mozilla/5.0 (Macintosh) 浏览器",
    ),
    locale="zh-CN",
    correlation_id="c0ffee",
    submitted_event_id=uuid.UUID("00000000-0000-4000-8000-000000000001"),
    received_at=datetime(2026, 11, 25, 1, 24, 13, 124000, tzinfo=UTC),
    recorded_at=datetime(2026, 11, 25, 1, 24, 14, 5000, tzinfo=UTC),
    personal_salt="5a" * 32,
)
