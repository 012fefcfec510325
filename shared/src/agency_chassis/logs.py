"""Log set-up shared by the services: one JSON object per line (or plain text for local reading).

Every line names its ``service`` and, while a request or message is handled, its
``correlation_id`` (and ``application_id`` where known): FastStream's and uvicorn's
lines too, since their loggers are routed to the same handler.
"""

import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO
from urllib.parse import urlsplit

from pythonjsonlogger.json import JsonFormatter

from agency_chassis.correlation import log_context

LogFormat = Literal["json", "text"]

# FastStream and uvicorn give these loggers handlers and levels of their own; ours replace them.
_FOREIGN_LOGGERS = ("faststream", "faststream.access", "uvicorn", "uvicorn.error", "uvicorn.access")
# The logger the brokers write their "Received"/"Processed" lines to (passed as ``logger=``);
# not FastStream's default one, which gets a handler of its own on first use.
BROKER_LOGGER = logging.getLogger("faststream.access")

_TEXT_FORMAT = "%(asctime)s %(service)s %(levelname)s %(name)s [%(correlation_id)s]: %(message)s"


class LogContextFilter(logging.Filter):
    """Adds ``service``, ``correlation_id`` and ``application_id`` to a record, unless it has them already."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def filter(self, record: logging.LogRecord) -> bool:
        context = log_context()
        if not hasattr(record, "service"):
            record.service = context.service or self.service
        if context.correlation_id is not None and not hasattr(record, "correlation_id"):
            record.correlation_id = context.correlation_id
        if context.application_id is not None and not hasattr(record, "application_id"):
            record.application_id = context.application_id
        return True


def url_origin(url: str) -> str:
    """``url`` as logs and the audit log keep it: its origin, and ``/…`` if it goes further.

    An outgoing URL often carries a credential in its path or query (a CRM's hook
    ``/hooks/catch/123/aBc9/``, a chat robot's ``?access_token=``, Slack's ``/services/T…/B…/secret``)
    or in its user info; none of that is kept.
    """
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "[a URL]"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    further = parts.path not in ("", "/") or bool(parts.query) or bool(parts.fragment)
    return f"{parts.scheme}://{host}{'' if port is None else f':{port}'}" + ("/…" if further else "/")


class _ArgumentFilter(logging.Filter):
    """Rewrites each argument of a record (``rewrite``) before its message is formatted."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self.rewrite(arg) for arg in record.args)
        return True

    def rewrite(self, arg: object) -> object:
        raise NotImplementedError


class OutgoingUrls(_ArgumentFilter):
    """httpx logs every request's full URL at INFO ("HTTP Request: POST https://…"); this keeps its origin only."""

    def rewrite(self, arg: object) -> object:
        """An argument that prints as an absolute http(s) URL (httpx passes its ``URL``), as its origin."""
        if isinstance(arg, int | float | bytes | None):
            return arg
        text = str(arg)
        return url_origin(text) if text.startswith(("http://", "https://")) else arg


class AccessPaths(_ArgumentFilter):
    """uvicorn's access lines name the request's path with its query string; the query may hold a credential (the
    portal's ``/portal/open?t=<token>``) or a search for a person: the path is kept, the query shown as ``?…``."""

    def rewrite(self, arg: object) -> object:
        return arg.split("?", 1)[0] + "?…" if isinstance(arg, str) and arg.startswith("/") and "?" in arg else arg


class JsonLineFormatter(JsonFormatter):
    """``{"timestamp", "level", "service", "logger", "event", ...extra fields}`` on one line."""

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(service)s %(name)s %(message)s",
            rename_fields={"levelname": "level", "name": "logger", "message": "event"},
            json_ensure_ascii=False,
        )

    def add_fields(self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]) -> None:
        log_data["timestamp"] = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        super().add_fields(log_data, record, message_dict)


class ServiceLogHandler(logging.StreamHandler[TextIO]):
    """The root handler ``configure_logging`` installs (and replaces when called again)."""


def formatter(log_format: LogFormat) -> logging.Formatter:
    if log_format == "text":
        return logging.Formatter(_TEXT_FORMAT, defaults={"correlation_id": "-"})
    return JsonLineFormatter()


def configure_logging(service: str, level: str, log_format: LogFormat = "json", stream: TextIO | None = None) -> None:
    """Send every log line, ours and the libraries', through one handler on the root logger.

    Handlers others put on the root logger (a test runner's) stay; only ours is replaced,
    so creating several apps in one process leaves one handler.
    """
    handler = ServiceLogHandler(stream or sys.stderr)
    handler.setFormatter(formatter(log_format))
    handler.addFilter(LogContextFilter(service))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, ServiceLogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn started with access_log=False (intake) leaves its access logger without
    # handlers and not propagating; it stays off (uvicorn then skips the line altogether).
    access = logging.getLogger("uvicorn.access")
    access_off = not access.propagate and not access.handlers
    for name in _FOREIGN_LOGGERS:
        foreign = logging.getLogger(name)
        foreign.handlers.clear()
        foreign.propagate = True
        foreign.setLevel(logging.NOTSET)  # LOG_LEVEL decides for them too
    access.propagate = not access_off
    # Outgoing requests (webhooks, chat robots, single sign-on) are logged by httpx with their URL: origin only.
    # Incoming ones by uvicorn with their path: without its query.
    for name, kind in (("httpx", OutgoingUrls), ("uvicorn.access", AccessPaths)):
        logger = logging.getLogger(name)
        for earlier in [f for f in logger.filters if isinstance(f, kind)]:
            logger.removeFilter(earlier)
        logger.addFilter(kind())
