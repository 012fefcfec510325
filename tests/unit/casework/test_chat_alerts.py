"""The pure decisions of chat alerts: what an alert may carry and how it reads, each API's request within its size
limit and signed as its documentation says, what each API's answer means, the rate limiter and the backoff."""

import json
import uuid
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from agency_chassis.startup import effective_configuration, invalid_settings
from casework.cases import reference_of
from casework.chat.channels import DingTalk, Feishu, Slack, Verdict, WeCom, dingtalk_signature, feishu_signature
from casework.chat.limiter import Window, still_counting, wait_before_next
from casework.chat.messages import Alert, alert_text, fit_bytes
from casework.chat.sender import Pacing
from casework.settings import CaseworkSettings
from casework.workflow import CaseKind

CASE_ID = uuid.UUID("6f1c1d2e-3b4a-4c5d-8e9f-0a1b2c3d4e5f")
REFERENCE = reference_of(CASE_ID, CaseKind.APPLICATION)
CONSOLE = "https://console.agency.example/"
NAUGHTY = "王小明\r\n@all <@all> <!channel> &amp; \u2028\x00" + "长" * 500


def alert(**fields: object) -> Alert:
    values: dict[str, object] = {
        "kind": "overdue",
        "key": "overdue:1",
        "case_id": CASE_ID,
        "reference": REFERENCE,
        "status": "triage",
        "owner": "Anna",
    }
    return Alert.model_validate(values | fields)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("client_email", "li.wei@mapletea.example"),  # a field it does not have: refused, not dropped
        ("company", "Maple Tea 枫茶"),
        ("reference", "li.wei@mapletea.example"),
        ("reference", "A-7KQ2M4XD\nLi Wei"),
        ("status", "triage: Li Wei called"),
        ("status", "审核中"),
        ("kind", "anything"),
        ("key", ""),
    ],
)
def test_an_alert_refuses_anything_but_a_reference_kind_status_and_owner(field: str, value: str) -> None:
    with pytest.raises(ValidationError) as refused:
        alert(**{field: value})
    assert refused.value.errors()[0]["loc"] == (field,)


def test_the_owner_s_handle_loses_line_breaks_mentions_and_markup_and_is_cut_to_64_characters() -> None:
    owner = alert(owner=NAUGHTY).owner
    assert owner is not None
    assert len(owner) == 64
    assert not any(c in owner for c in "\r\n<>\x00\u2028")
    assert owner.startswith("王小明 @all @all !channel &amp;")
    assert alert(owner=" \r\n ").owner is None


@pytest.mark.parametrize(
    ("kind", "locale", "headline"),
    [
        ("new_application", "en", f"New application {REFERENCE}"),
        ("overdue", "en", f"Case {REFERENCE} is overdue"),
        ("deadline", "en", f"Deadline approaching for case {REFERENCE}"),
        ("email_failed", "en", f"An email to the client of case {REFERENCE} failed"),
        ("new_application", "zh-CN", f"新申请 {REFERENCE}"),
        ("overdue", "zh-CN", f"案件 {REFERENCE} 已超时"),
        ("deadline", "zh-CN", f"案件 {REFERENCE} 即将到期"),
        ("email_failed", "zh-CN", f"案件 {REFERENCE} 的客户邮件发送失败"),
    ],
)
def test_each_kind_of_alert_reads_in_both_languages_with_status_owner_and_console_link(
    kind: str, locale: str, headline: str
) -> None:
    text = alert_text(alert(kind=kind, owner=None), CONSOLE, locale)  # type: ignore[arg-type]
    status, owner = {"en": ("Status: Triage", "Owner: nobody yet"), "zh-CN": ("状态：", "负责人：尚未分配")}[locale]
    lines = text.split("\n")
    assert lines[0] == headline
    assert lines[1].startswith(status)
    assert lines[1] != "状态：triage"  # the status's translated name, not its code
    assert lines[2] == owner
    assert lines[3] == f"https://console.agency.example/console/cases/{CASE_ID}"


def test_an_unknown_status_shows_as_its_code() -> None:
    assert alert_text(alert(status="made_up"), CONSOLE, "en").split("\n")[1] == "Status: made_up"


def test_fitting_cuts_utf8_between_characters_and_marks_the_cut() -> None:
    assert fit_bytes("短", 3) == "短"
    fitted = fit_bytes("长" * 1000, 2048)
    assert len(fitted.encode()) <= 2048
    assert fitted.endswith("…")
    assert fitted.rstrip("…") == "长" * len(fitted.rstrip("…"))


def test_wecom_sends_text_of_at_most_2048_bytes() -> None:
    request = WeCom().request("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K", "长" * 5000, 0)
    body = json.loads(request.body)
    assert body["msgtype"] == "text"
    assert len(body["text"]["content"].encode()) <= 2048
    assert request.url == "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=K"


def test_dingtalk_signs_with_timestamp_and_sign_in_the_query_when_it_has_a_secret() -> None:
    # Reference values from `openssl dgst -sha256 -hmac`, not from this code.
    assert dingtalk_signature("SECtest-secret", 1700000000000) == "LC7hxZ4wslL+P7j7gu1hoQ+wzByekL+yWgiUMekZs0g="
    url = "https://oapi.dingtalk.com/robot/send?access_token=T"
    request = DingTalk("SECtest-secret").request(url, "hi", 1700000000.0)
    query = parse_qs(urlsplit(request.url).query)
    assert query == {
        "access_token": ["T"],
        "timestamp": ["1700000000000"],
        "sign": ["LC7hxZ4wslL+P7j7gu1hoQ+wzByekL+yWgiUMekZs0g="],
    }
    assert DingTalk().request(url, "hi", 0).url == url
    assert json.loads(request.body) == {"msgtype": "text", "text": {"content": "hi"}}


def test_feishu_signs_in_the_body_and_keeps_the_body_within_20_kb_whatever_the_text() -> None:
    assert feishu_signature("feishu-secret", 1700000000) == "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU="
    request = Feishu("feishu-secret").request("https://open.feishu.cn/open-apis/bot/v2/hook/H", "hi", 1700000000.9)
    assert json.loads(request.body) == {
        "timestamp": "1700000000",
        "sign": "OrBzY1Y01Gq+HgJsl+7OfWcMVwc7YocohQm5iiZwjhU=",
        "msg_type": "text",
        "content": {"text": "hi"},
    }
    # JSON escapes lengthen CR, LF, quotes and backslashes: the body as sent still fits.
    hostile = ('"\\\r\n\x01' * 20_000) + "长" * 20_000
    body = Feishu().request("https://open.feishu.cn/open-apis/bot/v2/hook/H", hostile, 0).body
    assert len(body) <= 20 * 1024
    assert json.loads(body)["content"]["text"].endswith("…")


def test_slack_escapes_its_markup_so_text_shows_as_typed() -> None:
    body = json.loads(Slack().request("https://hooks.slack.com/services/T/B/X", "<!channel> & <@U1>", 0).body)
    assert body == {"text": "&lt;!channel&gt; &amp; &lt;@U1&gt;"}


@pytest.mark.parametrize(
    ("channel", "status", "body", "verdict"),
    [
        (WeCom(), 200, b'{"errcode":0,"errmsg":"ok"}', Verdict.DELIVERED),
        (WeCom(), 200, b'{"errcode":45009,"errmsg":"api freq out of limit"}', Verdict.RATE_LIMITED),
        (WeCom(), 200, b'{"errcode":130101,"errmsg":"send too fast"}', Verdict.RATE_LIMITED),
        (WeCom(), 200, b'{"errcode":-1,"errmsg":"system busy"}', Verdict.RETRY),
        (WeCom(), 200, b'{"errcode":93000,"errmsg":"invalid webhook url"}', Verdict.REFUSED),
        (WeCom(), 502, b"<html>bad gateway</html>", Verdict.RETRY),
        (WeCom(), 200, b"<html>a proxy's page</html>", Verdict.RETRY),
        (WeCom(), 404, b"not found", Verdict.REFUSED),
        (
            DingTalk(),
            200,
            b'{"errcode":130101,"errmsg":"send too fast"}',
            Verdict.RATE_LIMITED,
        ),
        (DingTalk(), 302, b"", Verdict.RATE_LIMITED),
        (DingTalk(), 200, b'{"errcode":310000,"errmsg":"sign not match"}', Verdict.REFUSED),
        (Feishu(), 200, b'{"code":0,"msg":"success","data":{}}', Verdict.DELIVERED),
        (Feishu(), 200, b'{"code":11232,"msg":"frequency limited"}', Verdict.RATE_LIMITED),
        (Feishu(), 429, b'{"code":99991400,"msg":"request trigger frequency limit"}', Verdict.RATE_LIMITED),
        (Feishu(), 400, b'{"code":99991400,"msg":"request trigger frequency limit"}', Verdict.RATE_LIMITED),
        (Feishu(), 200, b'{"code":19021,"msg":"sign match fail"}', Verdict.REFUSED),
        (Slack(), 200, b"ok", Verdict.DELIVERED),
        (Slack(), 429, b"rate_limited", Verdict.RATE_LIMITED),
        (Slack(), 500, b"", Verdict.RETRY),
        (Slack(), 410, b"channel_is_archived", Verdict.REFUSED),
    ],
)
def test_each_api_s_answer_is_read_as_documented(channel: object, status: int, body: bytes, verdict: Verdict) -> None:
    assert channel.read(status, {}, body).verdict is verdict  # type: ignore[attr-defined]


def test_slack_s_retry_after_is_kept() -> None:
    assert Slack().read(429, {"retry-after": "7"}, b"rate_limited").retry_after == 7.0


MINUTE = (Window(20, 60.0),)


def test_the_limiter_lets_20_through_in_a_minute_and_the_21st_once_the_first_left_the_window() -> None:
    sent = [100.0 + n for n in range(19)]
    assert wait_before_next(sent, MINUTE, 120.0) == 0.0
    sent.append(119.0)
    assert wait_before_next(sent, MINUTE, 120.0) == pytest.approx(40.0)  # 100 + 60 - 120
    assert wait_before_next(sent, MINUTE, 160.0) == 0.0
    assert wait_before_next([], MINUTE, 0.0) == 0.0


def test_the_limiter_keeps_both_of_feishu_s_windows() -> None:
    windows = Feishu.windows
    burst = [10.0, 10.1, 10.2, 10.3, 10.4]
    assert wait_before_next(burst, windows, 10.5) == pytest.approx(0.5)  # 5 a second
    steady = [50.0 + n / 2 for n in range(100)]  # two a second from 50 s: by 100 s the minute's 100 are used
    assert wait_before_next(steady, windows, 100.0) == pytest.approx(10.0)  # the one at 50 s leaves at 110 s
    assert wait_before_next(steady, (Window(20, 60.0).scaled(0.05),), 100.0) == pytest.approx(0.0)


def test_only_the_ends_still_in_a_window_are_kept() -> None:
    assert still_counting([1.0, 50.0, 70.0, 65.0], MINUTE, 111.0) == [65.0, 70.0]


def test_backoff_doubles_from_the_base_up_to_the_maximum_scaled_and_jittered() -> None:
    pacing = Pacing(max_attempts=8, retry_base=2.0, retry_max=600.0, lease=30.0, scale=0.5)
    for attempt, nominal in ((1, 2.0), (2, 4.0), (5, 32.0), (20, 600.0)):
        assert 0.8 * nominal * 0.5 <= pacing.backoff(attempt) <= 1.2 * nominal * 0.5


def test_robot_urls_are_read_comma_separated_and_a_bad_one_is_refused_by_name_never_shown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CHAT_SLACK_URLS", "https://hooks.slack.com/services/A/B/C1, https://h/s/2")
    settings = CaseworkSettings(_env_file=None)
    assert [url.get_secret_value() for url in settings.chat_slack_urls] == [
        "https://hooks.slack.com/services/A/B/C1",
        "https://h/s/2",
    ]
    assert "C1" not in json.dumps(effective_configuration(settings))
    monkeypatch.setenv("CHAT_WECOM_URLS", "qyapi.weixin.qq.com/cgi-bin/webhook/send?key=KEY-123")
    with pytest.raises(ValidationError) as refused:
        CaseworkSettings(_env_file=None)
    problems = invalid_settings(refused.value)
    assert [problem.variable for problem in problems] == ["CHAT_WECOM_URLS"]
    assert "KEY-123" not in repr(problems)
    monkeypatch.delenv("CHAT_WECOM_URLS")
    monkeypatch.setenv("CHAT_FEISHU_URLS", "http://open.feishu.cn/open-apis/bot/v2/hook/x")
    plain = CaseworkSettings(_env_file=None, environment="production")
    assert "CHAT_FEISHU_URLS" in {problem.variable for problem in plain.production_problems()}


def test_a_chat_lease_no_longer_than_a_message_s_deadline_is_refused() -> None:
    with pytest.raises(ValidationError) as refused:
        CaseworkSettings(_env_file=None, chat_lease_seconds=10, chat_timeout_seconds=10)
    assert "CHAT_LEASE_SECONDS must be longer than CHAT_TIMEOUT_SECONDS" in str(refused.value)
    assert CaseworkSettings(_env_file=None, chat_lease_seconds=10, chat_timeout_seconds=9.5).chat_timeout_seconds == 9.5
