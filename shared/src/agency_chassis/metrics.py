"""The Prometheus metrics of every service, defined once per process (several apps may share one in tests).

Message counts and handler latency by queue come from FastStream's own middleware
(``faststream_*``, labelled ``app_name`` = service and ``handler`` = exchange.routing_key);
this module adds what only our code knows.
"""

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from aio_pika.exceptions import DeliveryError, PublishError
from faststream.rabbit.prometheus import RabbitPrometheusMiddleware
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HTTP_REQUESTS = Counter(
    "wechat_http_requests_total",
    "HTTP requests by route template, method and status",
    ["service", "route", "method", "status"],
)
HTTP_DURATION = Histogram(
    "wechat_http_request_duration_seconds", "Time to answer an HTTP request", ["service", "route", "method"]
)
DEAD_LETTERED = Counter(
    "wechat_dead_lettered_total",
    "Messages our code sent to their dead-letter queue (unreadable, given up, out of attempts or redeliveries)",
    ["queue"],
)
EMAILS = Counter(
    "wechat_emails_total", "Email attempts by template and outcome (sent, retried, failed)", ["template", "outcome"]
)
LEDGER_LENGTH = Gauge("wechat_ledger_length", "Links in the acceptance ledger (the sequence of its last link)")
PUBLISH_CONFIRM = Histogram(
    "wechat_publish_confirm_seconds",
    "Time from publishing an event to the broker's confirm",
    ["service"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
DATABASE_COMMANDS = Counter(
    "wechat_mongodb_commands_total",
    "MongoDB commands this process sent, by command (each one a round trip: what a message costs)",
    ["command"],
)
PUBLISH_FAILURES = Counter(
    "wechat_publish_failures_total", "Events the broker did not confirm, by reason", ["service", "reason"]
)
CASES_OPENED = Counter("wechat_cases_opened_total", "Cases casework opened, by kind (application, enquiry)", ["kind"])
CASE_STATUS_CHANGES = Counter(
    "wechat_case_status_changes_total", "Staff actions applied to cases, by action and new status", ["action", "status"]
)
CASE_ANNOUNCEMENTS_PENDING = Gauge(
    "wechat_case_announcements_pending",
    "case.status-changed events written to a case's outbox but not yet confirmed by the broker (at the last sweep)",
    multiprocess_mode="max",
)

# prometheus_client's multiprocess mode: set, every process of a service writes its
# metrics to files in this folder, and /metrics sums them.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

# Any other method (a client may send anything) shares one label value, so it cannot grow the series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def broker_metrics(service: str) -> RabbitPrometheusMiddleware:
    """FastStream's consume/publish metrics for one service's broker.

    Every broker in a process registers the same ``faststream_*`` collectors once in the
    default registry and reuses them; ``app_name`` keeps the services apart.
    """
    return RabbitPrometheusMiddleware(registry=REGISTRY, app_name=service)


def publish_failure_reason(exc: BaseException) -> str:
    if isinstance(exc, PublishError):  # returned: no queue is bound for it
        return "unroutable"
    if isinstance(exc, DeliveryError):  # nacked: e.g. a full queue refusing publishes
        return "nacked"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return "unavailable"


class HttpMetricsMiddleware:
    """Counts and times every HTTP request by its route template (a plain ASGI middleware: cheap).

    The label is the matched route's path (``/v1/applications/{application_id}``), never the
    raw path; requests no route matched share ``unmatched``.
    """

    def __init__(self, app: ASGIApp, service: str) -> None:
        self.app = app
        self.service = service
        self._series: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts, the server answers 500

        async def send_noting_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        start = time.perf_counter()
        try:
            await self.app(scope, receive, send_noting_status)
        finally:
            self._observe(scope, status, time.perf_counter() - start)

    def _observe(self, scope: Scope, status: int, seconds: float) -> None:
        route = getattr(scope.get("route"), "path", None) or "unmatched"
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                HTTP_REQUESTS.labels(self.service, route, method, str(status)),
                HTTP_DURATION.labels(self.service, route, method),
            )
        series[0].inc()
        series[1].observe(seconds)


def exposition() -> bytes:
    """The text /metrics answers: this process's metrics, or every worker's when several serve one port."""
    if os.environ.get(MULTIPROCESS_DIR):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


@contextlib.contextmanager
def shared_by_workers() -> Iterator[Path]:
    """Around starting several worker processes: one metrics folder for all of them, emptied first.

    The workers must be new interpreters (uvicorn spawns them), because prometheus_client
    reads ``PROMETHEUS_MULTIPROC_DIR`` when it is imported. A folder the operator names
    (e.g. a Kubernetes ``emptyDir``) is used and emptied; otherwise a temporary one is
    made and removed afterwards.
    """
    named = os.environ.get(MULTIPROCESS_DIR)
    folder = Path(named) if named else Path(tempfile.mkdtemp(prefix="metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):  # left by processes of an earlier run: they would count twice
        stale.unlink()
    os.environ[MULTIPROCESS_DIR] = str(folder)
    try:
        yield folder
    finally:
        if not named:
            del os.environ[MULTIPROCESS_DIR]
            shutil.rmtree(folder, ignore_errors=True)
