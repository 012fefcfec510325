"""Correlation ids: taken from an HTTP request (``X-Correlation-ID``) or an incoming message, kept for the log lines.

An HTTP id is kept when it is a plain token, else made up, and echoed on the response.
While a request or a message is handled, ``log_context()`` says which service handles it
and for which correlation id (and application, when the message names one).
"""

import contextvars
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace

from aio_pika import IncomingMessage
from faststream import BaseMiddleware, ContextRepo
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agency_shared.events import Event

HEADER = "X-Correlation-ID"
_RAW_HEADER = HEADER.lower().encode("latin-1")
_TOKEN = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class LogContext:
    service: str | None = None
    correlation_id: str | None = None
    application_id: str | None = None


_NOTHING = LogContext()
_current: ContextVar[LogContext] = ContextVar("agency_log_context", default=_NOTHING)


def log_context() -> LogContext:
    """What the request or message being handled in this task is about (all ``None`` outside one)."""
    return _current.get()


def correlation_id_from(value: str | None) -> str:
    # Only a plain token is kept, so it can go into logs and message headers as it is.
    return value if value and _TOKEN.match(value) else uuid.uuid4().hex


class CorrelationIdMiddleware:
    """Puts the id in ``request.state.correlation_id``, the log context and every response (plain ASGI: cheap)."""

    def __init__(self, app: ASGIApp, service: str | None = None) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"x-correlation-id"), None)
        correlation_id = correlation_id_from(incoming)
        scope.setdefault("state", {})["correlation_id"] = correlation_id
        raw_id = correlation_id.encode("latin-1")

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                # The raw ASGI header list, as starlette's MutableHeaders would leave it (an earlier value replaced),
                # without building a headers object per response.
                headers = [header for header in message.get("headers", ()) if header[0] != _RAW_HEADER]
                headers.append((_RAW_HEADER, raw_id))
                message["headers"] = headers
            await send(message)

        token = _current.set(LogContext(self.service, correlation_id))
        try:
            await self.app(scope, receive, send_with_header)
        finally:
            _current.reset(token)


class MessageContext:
    """A broker middleware: the log context (service, correlation id) of each delivery, from its AMQP properties.

    The application the message is about is added by the runner (``about_application``)
    once FastStream has parsed the typed event: the body is never parsed twice.
    """

    def __init__(self, service: str) -> None:
        self.service = service

    def __call__(self, msg: IncomingMessage | None, /, *, context: ContextRepo) -> "_MessageScope":
        return _MessageScope(msg, context=context, service=self.service)


class _MessageScope(BaseMiddleware):
    def __init__(self, msg: IncomingMessage | None, /, *, context: ContextRepo, service: str) -> None:
        super().__init__(msg, context=context)
        self.service = service

    async def on_receive(self) -> None:
        # Set before FastStream's own "Received" line and never reset, so its "Processed"
        # line (written after the middlewares exit) carries it too: every delivery runs in
        # a task of its own (aiormq), so the value ends with it.
        if self.msg is not None:
            _current.set(LogContext(self.service, self.msg.correlation_id))


def about_application(application_id: object | None) -> None:
    """Name the application the delivery being handled is about, for the rest of its log lines."""
    if application_id is not None:
        _current.set(replace(_current.get(), application_id=str(application_id)))


def batch_context() -> contextvars.Context:
    """A context for work on many messages at once: the service's, about none of them (not the first one's)."""
    context = contextvars.copy_context()
    context.run(_current.set, LogContext(_current.get().service))
    return context


@contextmanager
def about_event(event: Event) -> Iterator[None]:
    """Within a batch, the lines about one of its messages: its correlation id and application."""
    application_id = event.about_application()
    token = _current.set(
        replace(
            _current.get(),
            correlation_id=event.correlation_id,
            application_id=None if application_id is None else str(application_id),
        )
    )
    try:
        yield
    finally:
        _current.reset(token)
