"""A CRM's webhook endpoint in tests: an ASGI app served by uvicorn on 127.0.0.1 (port 0, the system picks), which
checks every request as a real receiver does (``standardwebhooks.Webhook(secret).verify``, once per secret it
knows), records it, and answers the statuses a test scripts (then 200)."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.support.servers import uvicorn_serving

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    # The known secrets this request verified with (each checked on its own).
    verified_by: frozenset[str]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]


@dataclass
class Receiver:
    # The secrets this CRM holds (set by a test once the console showed them).
    secrets: list[str] = field(default_factory=list)
    # Statuses to answer next, in order; 200 once they are used up (or 401 when no known secret verifies).
    answers: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> None:
        assert scope["type"] == "http"
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        verified = frozenset(secret for secret in self.secrets if _verifies(secret, body, headers))
        self.received.append(Received(scope["path"], headers, body, verified))
        status = self.answers.pop(0) if self.answers else (200 if verified else 401)
        reply = json.dumps({"status": status, "note": "收到 " + "x" * 5000}, ensure_ascii=False).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json")]})  # fmt: skip
        await send({"type": "http.response.body", "body": reply})

    async def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        async with asyncio.timeout(timeout):
            while len(self.received) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        return self.received


def _verifies(secret: str, body: bytes, headers: dict[str, str]) -> bool:
    try:
        Webhook(secret).verify(body, headers)
    except WebhookVerificationError:
        return False
    return True


@asynccontextmanager
async def receiving(receiver: Receiver) -> AsyncIterator[str]:
    """Serve ``receiver`` on 127.0.0.1, on the port the system picks; yield its URL."""
    async with uvicorn_serving(receiver, lifespan="off") as served:
        yield f"{served}/crm/hooks"
