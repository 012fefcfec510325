"""Each chat API as a robot's sender uses it: the request for a text (signed where the robot asks for it), what an
answer means (delivered, rate-limited, worth a retry, refused), and the API's documented rate limit."""

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Protocol

import httpx

from casework.chat.limiter import Window
from casework.chat.messages import fit_bytes


class Verdict(Enum):
    DELIVERED = "delivered"
    RATE_LIMITED = "rate_limited"  # over the API's limit: the robot pauses, the message is tried again
    RETRY = "retry"  # a network error, a 5xx, a busy server: tried again after a backoff
    REFUSED = "refused"  # a bad URL, key or signature, a message refused: trying again will not help


@dataclass(frozen=True)
class Answer:
    verdict: Verdict
    detail: str  # for the log: a status and an error code, never the URL
    retry_after: float | None = None  # seconds, where the API said (Slack's Retry-After)


@dataclass(frozen=True)
class Request:
    url: str
    body: bytes


class Channel(Protocol):
    """One chat API. ``throttle_seconds``: how long a robot over the limit is held back (then tried again)."""

    name: str
    windows: tuple[Window, ...]
    throttle_seconds: float

    def request(self, url: str, text: str, now: float) -> Request: ...

    def read(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer: ...


def _json(payload: object) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode()


def _coded_answer(
    status: int, body: bytes, field: str, rate_codes: frozenset[int], busy_codes: frozenset[int]
) -> Answer:
    """The answer of an API that reports in a JSON code field (0: delivered), whatever the HTTP status."""
    if status == 429:
        return Answer(Verdict.RATE_LIMITED, "HTTP 429")
    if status >= 500:
        return Answer(Verdict.RETRY, f"HTTP {status}")
    try:
        code = json.loads(body).get(field)
    except (ValueError, AttributeError):
        return Answer(Verdict.RETRY if status == 200 else Verdict.REFUSED, f"HTTP {status}, no JSON answer")
    if status == 200 and code == 0:
        return Answer(Verdict.DELIVERED, "ok")
    if code in rate_codes:
        return Answer(Verdict.RATE_LIMITED, f"HTTP {status}, {field} {code}")
    if code in busy_codes:
        return Answer(Verdict.RETRY, f"HTTP {status}, {field} {code}")
    return Answer(Verdict.REFUSED, f"HTTP {status}, {field} {code!r}"[:120])


def dingtalk_signature(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign``: base64 of HMAC-SHA256 keyed by the secret over ``timestamp + "\\n" + secret``."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_signature(secret: str, timestamp_s: int) -> str:
    """Feishu's ``sign``: base64 of HMAC-SHA256 keyed by ``timestamp + "\\n" + secret`` over nothing."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class WeCom:
    """企业微信 group robot: ``POST …/cgi-bin/webhook/send?key=KEY``, text at most 2048 bytes, 20 a minute."""

    name: str = "wecom"
    windows: tuple[Window, ...] = (Window(20, 60.0),)
    throttle_seconds: float = 60.0
    max_text_bytes = 2048
    # 45009: api freq out of limit; 130101 as the agency's notes name it; -1: system busy.
    rate_codes = frozenset({45009, 45033, 130101})
    busy_codes = frozenset({-1})

    def request(self, url: str, text: str, now: float) -> Request:
        body = {"msgtype": "text", "text": {"content": fit_bytes(text, self.max_text_bytes)}}
        return Request(url, _json(body))

    def read(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        return _coded_answer(status, body, "errcode", self.rate_codes, self.busy_codes)


class DingTalk:
    """DingTalk custom robot: ``POST …/robot/send?access_token=…`` (+ ``timestamp`` and ``sign`` when the robot
    signs), 20 a minute, then throttled for 10 minutes."""

    name: str = "dingtalk"
    windows: tuple[Window, ...] = (Window(20, 60.0),)
    throttle_seconds: float = 600.0
    max_text_bytes = 20_000
    # 130101: send too fast, exceed 20 times per minute; 410100: throttled; -1: system busy.
    rate_codes = frozenset({130101, 410100, 90030})
    busy_codes = frozenset({-1})

    def __init__(self, secret: str | None = None) -> None:
        self._secret = secret

    def request(self, url: str, text: str, now: float) -> Request:
        body = _json({"msgtype": "text", "text": {"content": fit_bytes(text, self.max_text_bytes)}})
        if self._secret:
            timestamp = int(now * 1000)
            signed = httpx.URL(url).copy_merge_params(
                {"timestamp": str(timestamp), "sign": dingtalk_signature(self._secret, timestamp)}
            )
            url = str(signed)
        return Request(url, body)

    def read(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        if 300 <= status < 400:  # what a throttled robot is answered with
            return Answer(Verdict.RATE_LIMITED, f"HTTP {status}")
        return _coded_answer(status, body, "errcode", self.rate_codes, self.busy_codes)


class Feishu:
    """Feishu / Lark custom bot: ``POST …/open-apis/bot/v2/hook/…`` (``timestamp`` + ``sign`` in the body when the
    bot signs), body at most 20 KB, 100 a minute and 5 a second."""

    name: str = "feishu"
    windows: tuple[Window, ...] = (Window(100, 60.0), Window(5, 1.0))
    throttle_seconds: float = 60.0
    max_body_bytes = 20 * 1024
    # 11232: frequency limited; 99991400: request trigger frequency limit.
    rate_codes = frozenset({11232, 99991400})
    busy_codes: frozenset[int] = frozenset()

    def __init__(self, secret: str | None = None) -> None:
        self._secret = secret

    def request(self, url: str, text: str, now: float) -> Request:
        body: dict[str, object] = {"msg_type": "text", "content": {"text": text}}
        if self._secret:
            timestamp = int(now)
            body = {"timestamp": str(timestamp), "sign": feishu_signature(self._secret, timestamp), **body}
        overhead = len(_json({**body, "content": {"text": ""}}))
        # JSON escapes may lengthen the text (a CR becomes \r): fit, then check the body as sent.
        room = self.max_body_bytes - overhead
        while len(encoded := _json({**body, "content": {"text": fit_bytes(text, room)}})) > self.max_body_bytes:
            room -= len(encoded) - self.max_body_bytes
        return Request(url, encoded)

    def read(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        return _coded_answer(status, body, "code", self.rate_codes, self.busy_codes)


class Slack:
    """Slack incoming webhook: ``POST https://hooks.slack.com/services/…`` with ``{"text": …}``, about one a
    second; over it, HTTP 429 with ``Retry-After``."""

    name: str = "slack"
    windows: tuple[Window, ...] = (Window(1, 1.0),)
    throttle_seconds: float = 30.0
    max_text_bytes = 40_000

    def request(self, url: str, text: str, now: float) -> Request:
        # Slack reads &, < and > as markup (links, @channel): escaped, they show as typed.
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        return Request(url, _json({"text": fit_bytes(escaped, self.max_text_bytes)}))

    def read(self, status: int, headers: Mapping[str, str], body: bytes) -> Answer:
        if status == 200:
            return Answer(Verdict.DELIVERED, "ok")
        if status == 429:
            retry_after = headers.get("retry-after", "")
            seconds = float(retry_after) if retry_after.isdigit() else None
            return Answer(Verdict.RATE_LIMITED, "HTTP 429", seconds)
        if status >= 500:
            return Answer(Verdict.RETRY, f"HTTP {status}")
        # Slack's answers name the problem (invalid_payload, no_service, channel_is_archived...), never the URL.
        reason = body[:60].decode(errors="replace").strip()
        return Answer(Verdict.REFUSED, f"HTTP {status}, {reason}")
