"""An acceptance's link, pinned byte for byte: links written before stay verifiable and receipts keep their hash."""

import json

from agency_shared.chain import Head
from agreements.recording import acceptance_link
from tests.support.records import APPLICATION

# Written by the code before the chain had one module; key order as stored in MongoDB and served in receipts.
RECORD = (
    '{"sequence": 7, "prev_hash": "abababababababababababababababababababababababababababababababab", '
    '"acceptance_id": "8d7c6b5a-4e3f-5a2b-8c1d-0e9f8a7b6c5d", '
    '"application_id": "3f2b8c1e-5a47-4d0e-9b6a-1c2d3e4f5a6b", '
    '"agreement_id": "wechat-oa-service-agreement", "agreement_version": "1", '
    '"agreement_sha256": "e3b0b919d17436e6e740d458f3f455c15f0fd748d97a4331648fced85d7bdb50", '
    '"accepted_at": "2026-11-25T01:24:13.123456Z", "recorded_at": "2026-11-25T01:24:14.005000Z", '
    '"applicant_name_sha256": "3818682ce8a79108df8a0b2e2252e30dd8fb52b72ff15a4006111da816d7a217", '
    '"applicant_email_sha256": "9b95063401a820fcd0b4c1d3c4400116c04e8afec613b59d6a4eadd0ab454471", '
    '"applicant_phone_sha256": "fae7705061090a1696875574a14f92062c1baddd9999fab853d4cedb0b77a8dc", '
    '"client_ip_sha256": "798f1e0d218d5f70f7e2c7bad2eeec7bdf1a405cf0c91d5d15ed92ab7a68ca0f", '
    '"user_agent_sha256": "17086af19a4268a6ee586d1bb0a76c26d1626694f4f20e72bc64d1d7447c680d", '
    '"account_name": "Maple Tea 枫叶茶", "company_name": "Maple Tea Trading Ltd. 枫叶茶贸易有限公司", '
    '"company_registration_number": "BC1234567", "company_country": "CA", "locale": "zh-CN"}'
)
RECORD_HASH = "5767855872e2ee3e51cff13d53b3fd3c7ee642ed99fcb9716e099c7460dec12e"


def test_an_acceptance_link_is_byte_for_byte_what_was_written_before() -> None:
    link = acceptance_link(APPLICATION, Head(6, "ab" * 32))

    assert json.dumps(link.record, ensure_ascii=False) == RECORD
    assert link.record_hash == RECORD_HASH
    assert (link.sequence, link.prev_hash) == (7, "ab" * 32)
