"""The queues' tunable limits as RabbitMQ policies: length, overflow, delivery limit, dead-letter target, retention.

Queue arguments are fixed when a queue is first declared: a service that declares the queue
with other values fails to start (``PRECONDITION_FAILED``). Policies change in place, so the
services declare their queues with nothing but their type and put every limit here:

- one policy per consumer queue (``wechat.<queue>``): ``max-length`` (``QUEUE_MAX_LENGTH``)
  with ``overflow: reject-publish`` (intake answers 503 instead of the queue growing), the
  quorum ``delivery-limit``, and at-least-once dead-lettering into ``<queue>.dlq``;
- one for the dead-letter queues (``wechat.dead-letters``): ``message-ttl`` of
  ``DEAD_LETTER_RETENTION_DAYS`` (the retention of what they hold, personal data included)
  and, on RabbitMQ 4, no delivery limit (4.x gives quorum queues one of 20 by default; a DLQ
  that dropped a message each time it was listed would lose it).

A service applies them at start-up through the management API when ``RABBITMQ_MANAGEMENT_URL``
is set (its user needs the ``policymaker`` tag); otherwise the deployment does (compose's
definitions, the Kubernetes ``Policy`` objects: ``python -m <service> policies`` prints them).
"""

import asyncio
import base64
import json
import logging
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from agency_shared.topology import CONSUMER_QUEUES, DEAD_LETTER_EXCHANGE, DELIVERY_LIMIT

logger = logging.getLogger(__name__)

# Above a policy an operator adds without a priority (0), so ours apply unless one means to override them.
PRIORITY = 10
DEAD_LETTERS_POLICY = "wechat.dead-letters"
DAY_MS = 86_400_000


@dataclass(frozen=True)
class Policy:
    name: str
    pattern: str
    definition: dict[str, Any]
    priority: int = PRIORITY
    apply_to: str = "queues"

    def body(self) -> dict[str, Any]:
        """As the management API's ``PUT /api/policies/<vhost>/<name>`` takes it."""
        return {"pattern": self.pattern, "definition": self.definition, "priority": self.priority,
                "apply-to": self.apply_to}  # fmt: skip


@dataclass(frozen=True)
class Limits:
    """What the policies are made from (the services' settings)."""

    max_length: int
    dead_letter_retention_days: float
    # The broker's major version: 4 and later know an unlimited delivery limit (-1).
    broker_major: int = 3
    extra: dict[str, Any] = field(default_factory=dict)


def policies(limits: Limits) -> list[Policy]:
    consumers = [
        Policy(
            f"wechat.{queue.name}",
            f"^{re.escape(queue.name)}$",
            {
                "max-length": limits.max_length,
                "overflow": "reject-publish",
                "delivery-limit": DELIVERY_LIMIT,
                "dead-letter-exchange": DEAD_LETTER_EXCHANGE.name,
                "dead-letter-routing-key": queue.name,
                # The message leaves the queue only once its DLQ has it (needs reject-publish, above).
                "dead-letter-strategy": "at-least-once",
            },
        )
        for queue in CONSUMER_QUEUES
    ]
    dead_letters: dict[str, Any] = {"message-ttl": max(1, round(limits.dead_letter_retention_days * DAY_MS))}
    if limits.broker_major >= 4:
        dead_letters["delivery-limit"] = -1
    names = "|".join(re.escape(queue.dead_letter_queue.name) for queue in CONSUMER_QUEUES)
    return [*consumers, Policy(DEAD_LETTERS_POLICY, f"^({names})$", dead_letters)]


@dataclass(frozen=True)
class Management:
    """RabbitMQ's management API for one vhost (the AMQP URL's), with the AMQP URL's user unless the URL names one."""

    base_url: str
    vhost: str
    username: str
    password: str

    @classmethod
    def of(cls, management_url: str, amqp_url: str) -> "Management":
        amqp = urllib.parse.urlsplit(amqp_url)
        api = urllib.parse.urlsplit(management_url)
        vhost = urllib.parse.unquote(amqp.path[1:]) if len(amqp.path) > 1 else "/"
        netloc = (api.hostname or "localhost") + (f":{api.port}" if api.port else "")
        return cls(
            base_url=f"{api.scheme}://{netloc}{api.path.rstrip('/')}",
            vhost=vhost,
            username=urllib.parse.unquote(api.username or amqp.username or "guest"),
            password=urllib.parse.unquote(api.password or amqp.password or "guest"),
        )

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        credentials = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        request = urllib.request.Request(  # noqa: S310 - the operator's configured URL
            f"{self.base_url}/api{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Basic {credentials}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            payload = response.read()
        return json.loads(payload) if payload else None

    async def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return await asyncio.to_thread(self.request, method, path, body)

    async def broker_major(self) -> int:
        overview = await self.call("GET", "/overview")
        return int(str(overview["rabbitmq_version"]).split(".")[0])

    async def apply(self, chosen: Sequence[Policy]) -> None:
        vhost = urllib.parse.quote(self.vhost, safe="")
        for policy in chosen:
            await self.call("PUT", f"/policies/{vhost}/{urllib.parse.quote(policy.name, safe='')}", policy.body())


async def apply_policies(
    management_url: str, amqp_url: str, max_length: int, dead_letter_retention_days: float
) -> None:
    """Put the queues' policies in place (idempotent; every replica may do it at start-up)."""
    management = Management.of(management_url, amqp_url)
    limits = Limits(max_length, dead_letter_retention_days, await management.broker_major())
    await management.apply(policies(limits))
    logger.info("queue policies applied to vhost %s (max-length %d)", management.vhost, max_length)


def main(argv: Sequence[str], max_length: int, dead_letter_retention_days: float) -> int:
    """``python -m <service> policies [--rabbitmq 4]``: the policies as JSON lines (name plus the API's body)."""
    major = int(argv[argv.index("--rabbitmq") + 1]) if "--rabbitmq" in argv else 4
    for policy in policies(Limits(max_length, dead_letter_retention_days, major)):
        print(json.dumps({"name": policy.name, **policy.body()}, sort_keys=True))
    return 0
