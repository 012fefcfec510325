"""The queues' tunable limits as RabbitMQ policies: length, overflow, delivery limit, dead-letter target, retention.

Queue arguments are fixed when a queue is first declared: a service that declares the queue
with other values fails to start (``PRECONDITION_FAILED``). Policies change in place, so the
services declare their queues with nothing but their type and put every limit here:

- one policy per consumer queue (``wechat.<queue>``): ``max-length`` (``QUEUE_MAX_LENGTH``)
  with ``overflow: reject-publish`` (intake answers 503 instead of the queue growing), the
  quorum ``delivery-limit``, and at-least-once dead-lettering into ``<queue>.dlq``;
- one for the dead-letter queues (``wechat.dead-letters``, those of retired queues too):
  ``message-ttl`` of ``DEAD_LETTER_RETENTION_DAYS`` (the retention of what they hold, personal
  data included) and a delivery limit no listing reaches (4.x gives quorum queues one of 20 by
  default, and a DLQ that dropped a message each time it was listed would lose it; ``-1``,
  4.x's "no limit", is not accepted in a policy, and 3.x knows no ``-1`` at all).

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
from dataclasses import dataclass
from typing import Any

from agency_shared.topology import CONSUMER_QUEUES, DEAD_LETTER_EXCHANGE, DELIVERY_LIMIT, RETIRED_QUEUES

logger = logging.getLogger(__name__)

# Above a policy an operator adds without a priority (0), so ours apply unless one means to override them.
PRIORITY = 10
DEAD_LETTERS_POLICY = "wechat.dead-letters"
DAY_MS = 86_400_000
# The DLQs' delivery limit: a dead letter is fetched and returned each time it is listed.
DEAD_LETTER_DELIVERY_LIMIT = 1_000_000_000


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
    dead_letters: dict[str, Any] = {
        "message-ttl": max(1, round(limits.dead_letter_retention_days * DAY_MS)),
        "delivery-limit": DEAD_LETTER_DELIVERY_LIMIT,
    }
    queues = [queue.dead_letter_queue.name for queue in CONSUMER_QUEUES]
    queues += [f"{retired.name}.dlq" for retired in RETIRED_QUEUES]
    names = "|".join(re.escape(name) for name in queues)
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

    async def apply(self, chosen: Sequence[Policy]) -> int:
        """Put the policies the vhost does not hold as chosen; how many were put.

        Read first, so a replica starting next to others puts none: each PUT makes RabbitMQ apply the policy to
        every queue it matches, a change to each quorum queue's state machine, even when nothing changed (a full
        test run on the 2-core machine, four services starting per test, stalled the broker for minutes).
        """
        vhost = urllib.parse.quote(self.vhost, safe="")
        held = {policy["name"]: policy for policy in await self.call("GET", f"/policies/{vhost}") or []}
        put = 0
        for policy in chosen:
            current = held.get(policy.name, {})
            if all(current.get(key) == value for key, value in policy.body().items()):
                continue
            await self.call("PUT", f"/policies/{vhost}/{urllib.parse.quote(policy.name, safe='')}", policy.body())
            put += 1
        return put


async def apply_policies_or_warn(
    management_url: str, amqp_url: str, max_length: int, dead_letter_retention_days: float, attempts: int = 4
) -> bool:
    """``apply_policies``, tried again with backoff (the management listener may come up after AMQP's); if it
    still cannot, an ERROR and the start goes on: the deployment's own policies may be in place."""
    for attempt in range(1, attempts + 1):
        try:
            await apply_policies(management_url, amqp_url, max_length, dead_letter_retention_days)
            return True
        except (OSError, ValueError, KeyError) as exc:  # URLError and HTTPError are OSErrors
            if attempt == attempts:
                logger.error(
                    "the queue policies could not be put through %s (%r): without them the queues have no length "
                    "limit and no dead-letter target (README, Queue policies)", management_url, exc,
                )  # fmt: skip
                return False
            await asyncio.sleep(2 ** (attempt - 1))
    return False


async def apply_policies(
    management_url: str, amqp_url: str, max_length: int, dead_letter_retention_days: float
) -> None:
    """Put the queues' policies in place (idempotent; every replica may do it at start-up)."""
    management = Management.of(management_url, amqp_url)
    put = await management.apply(policies(Limits(max_length, dead_letter_retention_days)))
    logger.info("queue policies in place in vhost %s (max-length %d; %d put now)", management.vhost, max_length, put)


def main(argv: Sequence[str], max_length: int, dead_letter_retention_days: float) -> int:
    """``python -m <service> policies``: the policies as JSON lines (name plus the management API's body)."""
    for policy in policies(Limits(max_length, dead_letter_retention_days)):
        print(json.dumps({"name": policy.name, **policy.body()}, sort_keys=True))
    return 0
