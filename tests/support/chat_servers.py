"""Local stand-ins for the four chat APIs, written from their documentation: each reads its API's request shape,
checks DingTalk's and Feishu's signatures, enforces its documented rate limit per robot (answering with the API's
own rate-limit error beyond it), and records every request it got and what it answered."""

import base64
import hashlib
import hmac
import json
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

# Each API's limit per robot: (messages, seconds), all windows at once; DingTalk then throttles for 10 minutes.
LIMITS: dict[str, tuple[tuple[int, float], ...]] = {
    "wecom": ((20, 60.0),),
    "dingtalk": ((20, 60.0),),
    "feishu": ((100, 60.0), (5, 1.0)),
    "slack": ((1, 1.0),),
}
DINGTALK_THROTTLE_SECONDS = 600.0
WECOM_MAX_TEXT_BYTES = 2048
FEISHU_MAX_BODY_BYTES = 20 * 1024


@dataclass
class Received:
    channel: str
    robot: str  # the channel and the robot's key or token
    at: float  # epoch seconds, when the request was read
    body: bytes
    query: dict[str, str]
    answer: str  # ok, rate_limited, injected_500, injected_rate_limit, bad_signature, bad_request

    @property
    def text(self) -> str:
        """The message's text as the chat app would show it."""
        payload: Any = json.loads(self.body)
        if self.channel in ("wecom", "dingtalk"):
            return str(payload["text"]["content"])
        if self.channel == "feishu":
            return str(payload["content"]["text"])
        return str(payload["text"])


@dataclass
class ChatServers:
    """The four APIs on one local server; ``scale`` shortens every window as CHAT_TIME_SCALE does."""

    scale: float = 1.0
    dingtalk_secret: str | None = None
    feishu_secret: str | None = None
    url: str = ""  # set once served
    received: list[Received] = field(default_factory=list)
    _accepted: dict[str, deque[float]] = field(default_factory=lambda: defaultdict(deque))
    _throttled_until: dict[str, float] = field(default_factory=dict)
    _faults: dict[str, deque[str]] = field(default_factory=lambda: defaultdict(deque))

    def fail_next(self, robot: str, *faults: str) -> None:
        """Answer ``robot``'s next requests with these faults in turn: ``500`` or ``rate_limit``."""
        self._faults[robot].extend(faults)

    def delivered(self, channel: str | None = None) -> list[Received]:
        return [r for r in self.received if r.answer == "ok" and channel in (None, r.channel)]

    def over_limit(self) -> list[Received]:
        """Requests refused because they really were beyond the API's limit (not an injected fault)."""
        return [r for r in self.received if r.answer == "rate_limited"]

    def most_in_any_window(self, robot: str, count: int, seconds: float) -> int:
        """The most messages ``robot`` accepted within any ``seconds`` (scaled), by arrival."""
        times = sorted(r.at for r in self.received if r.robot == robot and r.answer == "ok")
        window = seconds * self.scale
        return max((sum(1 for t in times if start <= t < start + window) for start in times), default=0)

    def wecom_url(self, key: str) -> str:
        return f"{self.url}/cgi-bin/webhook/send?key={key}"

    def dingtalk_url(self, token: str) -> str:
        return f"{self.url}/robot/send?access_token={token}"

    def feishu_url(self, token: str) -> str:
        return f"{self.url}/open-apis/bot/v2/hook/{token}"

    def slack_url(self, path: str) -> str:
        return f"{self.url}/services/{path}"

    def _admit(self, channel: str, robot: str, now: float) -> str:
        """``ok`` if one more message from ``robot`` keeps to its API's limit, else why not."""
        faults = self._faults.get(robot)
        if faults:
            fault = faults.popleft()
            return "injected_500" if fault == "500" else "injected_rate_limit"
        if self._throttled_until.get(robot, 0.0) > now:
            return "rate_limited"
        accepted = self._accepted[robot]
        for count, seconds in LIMITS[channel]:
            if sum(1 for t in accepted if t > now - seconds * self.scale) >= count:
                if channel == "dingtalk":
                    self._throttled_until[robot] = now + DINGTALK_THROTTLE_SECONDS * self.scale
                return "rate_limited"
        accepted.append(now)
        return "ok"

    def _record(self, channel: str, robot: str, now: float, body: bytes, query: dict[str, str], answer: str) -> str:
        """Keep the request and the answer given; return the answer."""
        self.received.append(Received(channel, robot, now, body, query, answer))
        return answer

    def _answer(
        self, channel: str, robot: str, now: float, body: bytes, query: dict[str, str], limited: Response, ok: Response
    ) -> Response:
        """Admit the well-formed request (or not) and record it; the channel's answer: ``ok``, ``limited``, or the
        500 a test injected."""
        answer = self._record(channel, robot, now, body, query, self._admit(channel, robot, now))
        if answer == "injected_500":
            return PlainTextResponse("internal error", status_code=500)
        return ok if answer == "ok" else limited

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/cgi-bin/webhook/send")
        async def wecom(request: Request) -> Response:
            now, body, query = time.time(), await request.body(), dict(request.query_params)
            robot = f"wecom:{query.get('key', '')}"
            if not query.get("key"):
                self._record("wecom", robot, now, body, query, "bad_request")
                return _errcode(93000, "invalid webhook url")
            content = _text_content(body)
            if content is None or len(content.encode()) > WECOM_MAX_TEXT_BYTES:
                self._record("wecom", robot, now, body, query, "bad_request")
                return _errcode(40058, "invalid text content")
            limited, ok = _errcode(45009, "api freq out of limit"), _errcode(0, "ok")
            return self._answer("wecom", robot, now, body, query, limited, ok)

        @app.post("/robot/send")
        async def dingtalk(request: Request) -> Response:
            now, body, query = time.time(), await request.body(), dict(request.query_params)
            robot = f"dingtalk:{query.get('access_token', '')}"
            if self.dingtalk_secret and not _dingtalk_signed(self.dingtalk_secret, query, now):
                self._record("dingtalk", robot, now, body, query, "bad_signature")
                return _errcode(310000, "sign not match")
            if _text_content(body) is None:
                self._record("dingtalk", robot, now, body, query, "bad_request")
                return _errcode(40035, "missing parameter")
            limited, ok = _errcode(130101, "send too fast, exceed 20 times per minute"), _errcode(0, "ok")
            return self._answer("dingtalk", robot, now, body, query, limited, ok)

        @app.post("/open-apis/bot/v2/hook/{token}")
        async def feishu(token: str, request: Request) -> Response:
            now, body = time.time(), await request.body()
            robot = f"feishu:{token}"
            payload = _json_object(body)
            if len(body) > FEISHU_MAX_BODY_BYTES or payload is None or payload.get("msg_type") != "text":
                self._record("feishu", robot, now, body, {}, "bad_request")
                return JSONResponse({"code": 9499, "msg": "Bad Request", "data": {}})
            if not isinstance(payload.get("content"), dict) or not isinstance(payload["content"].get("text"), str):
                self._record("feishu", robot, now, body, {}, "bad_request")
                return JSONResponse({"code": 9499, "msg": "Bad Request", "data": {}})
            if self.feishu_secret and not _feishu_signed(self.feishu_secret, payload, now):
                self._record("feishu", robot, now, body, {}, "bad_signature")
                msg = "sign match fail or timestamp is not within one hour from current time"
                return JSONResponse({"code": 19021, "msg": msg, "data": {}})
            limited, ok = (
                JSONResponse({"code": 11232, "msg": "frequency limited", "data": {}}),
                JSONResponse({"code": 0, "msg": "success", "data": {}}),
            )
            return self._answer("feishu", robot, now, body, {}, limited, ok)

        @app.post("/services/{team}/{bot}/{secret}")
        async def slack(team: str, bot: str, secret: str, request: Request) -> Response:
            now, body = time.time(), await request.body()
            robot = f"slack:{team}/{bot}/{secret}"
            payload = _json_object(body)
            if payload is None or not isinstance(payload.get("text"), str) or not payload["text"]:
                self._record("slack", robot, now, body, {}, "bad_request")
                return PlainTextResponse("invalid_payload", status_code=400)
            limited, ok = (
                PlainTextResponse("rate_limited", status_code=429, headers={"Retry-After": "1"}),
                PlainTextResponse("ok"),
            )
            return self._answer("slack", robot, now, body, {}, limited, ok)

        return app


def _errcode(code: int, message: str) -> JSONResponse:
    return JSONResponse({"errcode": code, "errmsg": message})


def _json_object(body: bytes) -> dict[str, Any] | None:
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    return payload if isinstance(payload, dict) else None


def _text_content(body: bytes) -> str | None:
    """``text.content`` of a ``{"msgtype": "text", ...}`` body (WeCom's and DingTalk's shape), else None."""
    payload = _json_object(body)
    if payload is None or payload.get("msgtype") != "text" or not isinstance(payload.get("text"), dict):
        return None
    content = payload["text"].get("content")
    return content if isinstance(content, str) and content else None


def _dingtalk_signed(secret: str, query: dict[str, str], now: float) -> bool:
    """DingTalk's check: ``timestamp`` (ms) within an hour, ``sign`` = base64 HMAC-SHA256(secret, ts\\nsecret)."""
    timestamp = query.get("timestamp", "")
    if not timestamp.isdigit() or abs(int(timestamp) / 1000 - now) > 3600:
        return False
    expected = base64.b64encode(hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256).digest())
    return hmac.compare_digest(expected.decode(), query.get("sign", ""))


def _feishu_signed(secret: str, payload: dict[str, Any], now: float) -> bool:
    """Feishu's check: ``timestamp`` (s) within an hour, ``sign`` = base64 HMAC-SHA256(key=ts\\nsecret, "")."""
    timestamp = str(payload.get("timestamp", ""))
    if not timestamp.isdigit() or abs(int(timestamp) - now) > 3600:
        return False
    expected = base64.b64encode(hmac.new(f"{timestamp}\n{secret}".encode(), b"", hashlib.sha256).digest())
    return hmac.compare_digest(expected.decode(), str(payload.get("sign", "")))
