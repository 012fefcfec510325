"""Looking into RabbitMQ queues from tests with aio-pika, independent of the services' own code."""

import asyncio
import warnings
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from urllib.parse import quote

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage

from agency_chassis.retries import DEAD_LETTER_REASON_HEADER, DEAD_LETTERED_AT_HEADER, DEAD_LETTERED_FROM_HEADER
from agency_shared.events import Event
from tests.support import servers


@asynccontextmanager
async def channel(amqp_url: str) -> AsyncIterator[AbstractChannel]:
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        yield await connection.channel()


async def take(amqp_url: str, queue: str, count: int = 1, timeout: float = 15) -> list[AbstractIncomingMessage]:
    """Wait for ``count`` messages on ``queue`` and take them off it (acked)."""
    taken: list[AbstractIncomingMessage] = []
    async with channel(amqp_url) as ch:
        q = await ch.get_queue(queue, ensure=True)
        async with asyncio.timeout(timeout), q.iterator() as messages:
            async for message in messages:
                await message.ack()
                taken.append(message)
                if len(taken) == count:
                    break
    return taken


async def depth(amqp_url: str, queue: str) -> int:
    async with channel(amqp_url) as ch:
        declared = await ch.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        return count or 0


# How often RabbitMQ refreshes the message counts it reports for quorum queues
# (collect_statistics_interval, 5 s by default), with a margin.
STATISTICS_INTERVAL_SECONDS = 6.0


async def queued_messages(vhost: str, prefix: str = "") -> int | None:
    """Messages (ready + unacked) in the vhost's queues named ``prefix…``, as RabbitMQ last counted them: the queues
    someone consumes and the delay queues (what they park comes back); not the DLQs, nor the queues of a service
    the test does not run (nobody consumes them: what they hold waits for nothing the test does)."""
    if await asyncio.to_thread(servers.api_available):
        queues = await asyncio.to_thread(
            servers.management_get, f"/queues/{quote(vhost, safe='')}?columns=name,messages,consumers"
        )
        if not isinstance(queues, list) or any("messages" not in queue for queue in queues):
            return None  # not answered, or a queue not counted yet
        rows = [(q["name"], int(q["messages"]), int(q.get("consumers") or 0)) for q in queues]
    else:
        process = await asyncio.create_subprocess_exec(
            "rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "messages", "consumers",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()
        if process.returncode != 0:
            return None
        lines = [line.split("\t") for line in out.decode().splitlines()[1:] if line.strip()]
        rows = [(name, int(count), int(consumers)) for name, count, consumers in lines]
    return sum(count for name, count, consumers in rows if name.startswith(prefix) and counted(name, consumers))


def counted(queue: str, consumers: int) -> bool:
    """Whether a queue's messages are still on their way: consumed, or parked in a delay queue."""
    return not queue.endswith(".dlq") and (consumers > 0 or ".retry." in queue)


async def wait_settled(amqp_url: str, prefix: str = "", timeout: float = 45) -> None:
    """Wait until every message published so far is acked (or dead-lettered): no queue holds one, retries included.

    ``prefix`` limits the wait to one service's queues (``"notifications."``) when the others have no consumer.

    A passive declare counts only ready messages, so a copy a consumer holds unacked would
    pass for settled; ``rabbitmqctl list_queues messages`` counts ready + unacked, but for
    quorum queues only as of its last statistics refresh. So the count must read zero twice,
    a refresh interval apart: the second reading then describes a moment after the first,
    which came after every publish of the caller.
    """
    vhost = amqp_url.rsplit("/", 1)[1]
    async with asyncio.timeout(timeout):
        while True:
            if await queued_messages(vhost, prefix) == 0:
                await asyncio.sleep(STATISTICS_INTERVAL_SECONDS)
                if await queued_messages(vhost, prefix) == 0:
                    return
            await asyncio.sleep(0.2)


async def publish_event(amqp_url: str, event: Event) -> None:
    """One event's JSON, published as any client could (``publish_raw``)."""
    await publish_raw(amqp_url, event.model_dump_json().encode(), event.routing_key, str(event.event_id))


async def publish_raw(
    amqp_url: str, body: bytes, routing_key: str, message_id: str, exchange: str = "wechat_agency.events"
) -> None:
    """Publish bytes as any client could, to put malformed or repeated messages in front of a consumer."""
    async with channel(amqp_url) as ch:
        await ch.set_qos(0)
        target = await ch.get_exchange(exchange)
        await target.publish(
            aio_pika.Message(
                body,
                message_id=message_id,
                content_type="application/json",
                delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
            ),
            routing_key=routing_key,
            mandatory=True,
        )


def death_cause(message: AbstractIncomingMessage) -> str:
    """Why the runner dead-lettered ``message`` (``DeathCause``), having checked that it says where from and when."""
    reason = message.headers.get(DEAD_LETTER_REASON_HEADER)
    assert isinstance(reason, str), f"{message.message_id} was not dead-lettered by the runner"
    assert isinstance(message.headers.get(DEAD_LETTERED_FROM_HEADER), str)
    assert isinstance(message.headers.get(DEAD_LETTERED_AT_HEADER), str)
    return reason.partition(": ")[0]


# How long a test's publish waits for the broker's confirm before it publishes again on a new connection.
CONFIRM_SECONDS = 20
PUBLISH_ATTEMPTS = 3


async def publish_events(amqp_url: str, events: Sequence[Event]) -> None:
    """Publish many events on one confirmed channel, as intake would.

    A publish that does not complete within ``CONFIRM_SECONDS`` (seen in a few full runs on this 2-core machine: a
    test waited for ever) is repeated on a new connection, as intake's publisher would: the events carry their ids,
    so the consumers take a repeat as the redelivery it is. After ``PUBLISH_ATTEMPTS`` the test fails, saying at
    which step each attempt stopped (connecting, the exchange, the confirm) and how busy the event loop's thread
    pool was (connecting to ``localhost`` resolves the name there), also as a warning. (Connecting is where a RabbitMQ
    3.x whose count of open files its quorum queues had filled kept new connections waiting: README, Tests.)"""
    stopped: list[str] = []
    for attempt in range(1, PUBLISH_ATTEMPTS + 1):
        step = ["connecting"]
        try:
            async with asyncio.timeout(CONFIRM_SECONDS):
                await _publish_confirmed(amqp_url, events, step)
            return
        except TimeoutError:
            stopped.append(f"attempt {attempt}: {step[0]}, {thread_pool_state()}")
    diagnosis = f"the broker confirmed no publish in {PUBLISH_ATTEMPTS} attempts ({'; '.join(stopped)})"
    warnings.warn(diagnosis, stacklevel=2)
    raise AssertionError(diagnosis)


def thread_pool_state() -> str:
    """The running loop's default thread pool: its threads and the work waiting for one."""
    pool = getattr(asyncio.get_running_loop(), "_default_executor", None)
    if not isinstance(pool, ThreadPoolExecutor):
        return "no thread pool yet"
    return f"thread pool {len(pool._threads)}/{pool._max_workers} threads, {pool._work_queue.qsize()} jobs waiting"


async def _publish_confirmed(amqp_url: str, events: Sequence[Event], step: list[str]) -> None:
    async with channel(amqp_url) as ch:
        step[0] = "declaring the exchange"
        exchange = await ch.get_exchange("wechat_agency.events")
        for number, event in enumerate(events, 1):
            step[0] = f"awaiting the confirm of event {number} of {len(events)}"
            await exchange.publish(
                aio_pika.Message(
                    event.model_dump_json().encode(),
                    message_id=str(event.event_id),
                    correlation_id=event.correlation_id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                ),
                routing_key=event.routing_key,
                mandatory=True,
            )
