"""The webhooks' rules without a server: endpoint URLs and event types, secrets and their rotation, the signature
a receiver verifies with ``standardwebhooks``, what follows each answer, the thin payload."""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from agency_shared.events import CaseClient, CaseStatusChanged, CaseStatusChangedData, utc_now
from casework.settings import CaseworkSettings
from casework.webhooks import events
from casework.webhooks.delivery import RETRY_SCHEDULE, Sent, decide, signed_headers
from casework.webhooks.endpoints import (
    EndpointProblem,
    checked_event_types,
    checked_url,
    new_endpoint,
    new_secret,
    recorded_url,
    rotated,
)
from casework.webhooks.guard import refused_address
from casework.webhooks.store import Delivery

NOW = datetime(2026, 12, 6, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://crm.example/hooks", "url_not_https"),
        ("https://127.0.0.1/hooks", "url_internal"),
        ("https://[::1]/hooks", "url_internal"),
        ("https://10.1.2.3/hooks", "url_internal"),
        ("https://169.254.169.254/latest/meta-data", "url_internal"),
        ("https://localhost:8443/hooks", "url_internal"),
        ("https://[64:ff9b::a9fe:a9fe]/latest/meta-data", "url_internal"),  # NAT64 to 169.254.169.254
        ("https://crm.example/\nhooks", "url_invalid"),
    ],
)
def test_production_takes_only_a_public_https_url(url: str, reason: str) -> None:
    with pytest.raises(EndpointProblem) as refused:
        checked_url(url, "production")
    assert (refused.value.field, refused.value.reason) == ("url", reason)


def test_local_and_test_runs_take_a_plain_http_receiver_on_this_machine() -> None:
    assert checked_url(" http://127.0.0.1:8080/crm ", "test") == "http://127.0.0.1:8080/crm"
    assert checked_url("https://crm.example/hooks?tenant=代理", "production").startswith("https://crm.example/hooks?")


def test_event_types_are_a_known_non_empty_choice_in_canonical_order() -> None:
    assert checked_event_types(["case.status_changed", "case.opened", "case.opened"]) == [
        "case.opened",
        "case.status_changed",
    ]
    for bad in ([], ["  "], ["case.closed"], ["case.opened", "CASE.OPENED"]):
        with pytest.raises(EndpointProblem) as refused:
            checked_event_types(bad)
        assert refused.value.field == "event_type"


def test_a_secret_is_whsec_and_24_to_64_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert 24 <= len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) <= 64
    assert new_secret() != secret


def test_signed_headers_verify_with_each_live_secret_and_no_other() -> None:
    first, second, stranger = new_secret(), new_secret(), new_secret()
    body = events.body("case.opened", utc_now(), {"case_id": "x", "reference": "A-测试"})
    headers = signed_headers("msg_1", utc_now(), body, [first, second])
    assert len(headers["webhook-signature"].split(" ")) == 2
    for secret in (first, second):
        assert Webhook(secret).verify(body.encode(), headers)["data"]["reference"] == "A-测试"
    with pytest.raises(WebhookVerificationError):
        Webhook(stranger).verify(body.encode(), headers)
    with pytest.raises(WebhookVerificationError):  # a body changed on the way
        Webhook(first).verify(body.replace("测试", "x").encode(), headers)


def test_rotation_keeps_the_old_secret_for_the_grace_period_then_drops_it() -> None:
    endpoint = new_endpoint("https://crm.example/hooks", ["case.opened"], NOW)
    old = endpoint.secrets[0].secret
    turned, new = rotated(endpoint, NOW, timedelta(hours=24))
    assert turned.signing_secrets(NOW) == [new, old]
    assert turned.signing_secrets(NOW + timedelta(hours=23, minutes=59)) == [new, old]
    assert turned.signing_secrets(NOW + timedelta(hours=24)) == [new]
    # Rotating again drops what is past its grace, and ends none early.
    again, newest = rotated(turned, NOW + timedelta(hours=30), timedelta(hours=24))
    assert again.signing_secrets(NOW + timedelta(hours=30)) == [newest, new]
    without_grace, only = rotated(endpoint, NOW, timedelta(0))
    assert without_grace.signing_secrets(NOW) == [only]


def _delivery(retries: int) -> Delivery:
    return Delivery("d", "e", "msg_1", "case.opened", "{}", "pending", NOW, NOW, retries=retries)


def test_each_answer_decides_what_follows() -> None:
    assert decide(_delivery(0), Sent(204, 5), NOW).state == "delivered"
    gone = decide(_delivery(0), Sent(410, 5), NOW)
    assert (gone.state, gone.disable) == ("failed", True)
    for answer in (Sent(500, 5), Sent(301, 5), Sent(None, 10_000, error="ReadTimeout")):
        retry = decide(_delivery(3), answer, NOW)
        assert (retry.state, retry.next_attempt_at) == ("pending", NOW + RETRY_SCHEDULE[3])
    assert decide(_delivery(len(RETRY_SCHEDULE)), Sent(500, 5), NOW).state == "failed"
    assert decide(_delivery(0), Sent(500, 5), NOW, scale=0.001).next_attempt_at == NOW + timedelta(milliseconds=5)


def test_a_retry_schedule_of_about_three_days() -> None:
    assert timedelta(days=2, hours=20) <= sum(RETRY_SCHEDULE, timedelta()) <= timedelta(days=3, hours=4)


def test_a_status_change_s_payload_has_no_personal_data_and_a_stable_id() -> None:
    event = CaseStatusChanged(
        event_id=uuid.uuid4(),
        correlation_id="c",
        data=CaseStatusChangedData(
            case_id=uuid.uuid4(), enquiry_id=uuid.uuid4(), previous="new", current="contacted",
            action="mark_contacted", reason="客户要求回电\r\n<b>", staff_member="op@agency.example",
            changed_at=NOW, locale="zh-CN", client=CaseClient(name="张三", email="zhang@example.cn"),
            consultant="李四", account_name="某某公众号",
        ),
    )  # fmt: skip
    message_id, event_type, body = events.case_status_changed(event)
    assert (message_id, event_type, body) == events.case_status_changed(event)  # a redelivery: the same
    payload = json.loads(body)
    assert payload["type"] == "case.status_changed"
    assert payload["timestamp"] == "2026-12-06T09:00:00Z"
    assert payload["data"]["reference"].startswith("E-")
    for personal in ("张三", "zhang@example.cn", "客户要求回电", "李四", "某某公众号", "op@agency.example"):
        assert personal not in body


def test_a_lease_shorter_than_a_request_is_refused() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_LEASE_SECONDS"):
        CaseworkSettings(environment="test", webhook_lease_seconds=5, webhook_timeout_seconds=10)


@pytest.mark.parametrize(
    "host", ["2130706433", "127.1", "0x7f000001", "0x7F.0.0.1", "127.0.0.1.", "0", "10.1", "crm.0x10"]
)
@pytest.mark.parametrize("environment", ["production", "test"])
def test_a_numeric_host_not_written_as_four_decimal_numbers_is_refused(host: str, environment: str) -> None:
    with pytest.raises(EndpointProblem) as refused:
        checked_url(f"https://{host}/hooks", environment)
    assert (refused.value.field, refused.value.reason) == ("url", "url_numeric_host")


def test_a_canonical_address_or_a_name_with_digits_is_an_endpoint_url() -> None:
    for url in ("https://8.8.8.8/hooks", "https://1e100.net/hooks", "https://123.crm.example/hooks"):
        assert checked_url(url, "production") == url


@pytest.mark.parametrize(
    ("addresses", "refused"),
    [
        (["8.8.8.8", "2001:4860:4860::8888"], None),
        (["8.8.8.8", "127.0.0.1"], "127.0.0.1"),
        (["10.0.0.1"], "10.0.0.1"),
        (["100.64.0.1"], "100.64.0.1"),
        (["169.254.169.254"], "169.254.169.254"),
        (["0.0.0.0"], "0.0.0.0"),
        (["224.0.0.1"], "224.0.0.1"),
        (["240.0.0.1"], "240.0.0.1"),
        (["::1"], "::1"),
        (["::ffff:127.0.0.1"], "::ffff:127.0.0.1"),
        (["fe80::1%eth0"], "fe80::1%eth0"),
        (["not-an-address"], "not-an-address"),
        # IPv6 addresses that carry an internal IPv4 address: NAT64 (both prefixes), 6to4, Teredo.
        (["64:ff9b::a00:1"], "64:ff9b::a00:1"),
        (["64:ff9b::a9fe:a9fe"], "64:ff9b::a9fe:a9fe"),
        (["64:ff9b:1::a00:1"], "64:ff9b:1::a00:1"),
        (["64:ff9b:1:a00:1:0:808:808"], "64:ff9b:1:a00:1:0:808:808"),  # local-use NAT64: refused whole
        (["::a00:1"], "::a00:1"),  # IPv4-compatible
        (["::ffff:0:a00:1"], "::ffff:0:a00:1"),  # SIIT's IPv4-translated
        (["2002:a00:1::1"], "2002:a00:1::1"),
        (["2001:0:4136:e378:8000:63bf:f5ff:fffe"], "2001:0:4136:e378:8000:63bf:f5ff:fffe"),  # client 10.0.0.1
        (["64:ff9b::808:808"], None),  # NAT64 to 8.8.8.8: public
    ],
)
def test_only_global_addresses_pass_the_send_time_guard(addresses: list[str], refused: str | None) -> None:
    assert refused_address(addresses) == refused


@pytest.mark.parametrize(
    ("url", "recorded"),
    [
        ("https://hooks.zapier.com/hooks/catch/123456/aBc9xYz/", "https://hooks.zapier.com/…"),
        ("https://crm.example/?token=s3cr3t", "https://crm.example/…"),
        ("https://crm.example:8443/in", "https://crm.example:8443/…"),
        ("https://crm.example", "https://crm.example/"),
        ("https://[2606:4700::1111]/h", "https://[2606:4700::1111]/…"),
    ],
)
def test_the_audit_log_keeps_an_endpoints_origin_only(url: str, recorded: str) -> None:
    assert recorded_url(checked_url(url, "production")) == recorded
