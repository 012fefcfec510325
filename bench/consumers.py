"""Consumer throughput: agreements and notifications draining a backlog, beside the raw driver and SMTP rates."""

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from statistics import median
from typing import Any

import aio_pika
import aiosmtplib
import httpx
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from agency_shared.application_status import Status
from agency_shared.events import AgreementRecorded, Event
from agency_shared.topology import (
    AGREEMENTS_NOTIFICATION_SETTLED,
    NOTIFICATIONS_AGREEMENT_RECORDED,
    NOTIFICATIONS_ENQUIRY_RECEIVED,
)
from agreements.recording import record_from_event
from bench.stack import CpuMeter, Process, Stack, peak_rss_mib
from notifications.emails import email_verification
from tests.support.events import agreement_recorded_event, application_submitted

Mongo = AsyncMongoClient[dict[str, Any]]
CONCURRENCY = 16  # the services' prefetch: the raw references get the same number of writes in flight


async def publish_backlog(stack: Stack, events: list[Event]) -> None:
    connection = await aio_pika.connect(stack.amqp_url)
    async with connection:
        channel = await connection.channel(publisher_confirms=True)
        exchange = await channel.get_exchange("wechat_agency.events")
        semaphore = asyncio.Semaphore(64)

        async def one(event: Event) -> None:
            async with semaphore:
                message = aio_pika.Message(
                    event.model_dump_json().encode(),
                    message_id=str(event.event_id),
                    correlation_id=event.correlation_id,
                    content_type="application/json",
                    delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
                )
                await exchange.publish(message, routing_key=event.routing_key, mandatory=True)

        await asyncio.gather(*(one(event) for event in events))


def mongodb_commands(service: Process) -> dict[str, float]:
    """The MongoDB commands ``service`` sent so far, by command (its ``wechat_mongodb_commands_total``)."""
    text = httpx.get(f"http://127.0.0.1:{service.port}/metrics", timeout=10).text
    sent: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "wechat_mongodb_commands_total":
                sent[sample.labels["command"]] = sent.get(sample.labels["command"], 0.0) + sample.value
    return sent


async def drain_rate(
    count: Any, total: int, meter: CpuMeter, service: Process, unit: str, timeout: float = 600
) -> tuple[float, float, dict[str, Any]]:
    """Poll ``count()`` until it reaches ``total``.

    The rate from the first item done to the last, the time, and per item meanwhile: the CPU each
    of ``meter``'s parties spent and the MongoDB commands ``service`` sent (its start-up not counted).
    """
    async with asyncio.timeout(timeout):
        while (first := await count()) == 0:
            await asyncio.sleep(0.05)
        started = time.perf_counter()
        meter.start()
        commands_before = mongodb_commands(service)
        while (done := await count()) < total:
            await asyncio.sleep(0.1)
    seconds = time.perf_counter() - started
    commands_after = mongodb_commands(service)
    items = done - first
    by_command = {
        name: round((sent - commands_before.get(name, 0.0)) / items, 2)
        for name, sent in sorted(commands_after.items())
        if sent > commands_before.get(name, 0.0)
    }
    per_item = {f"mongodb_commands_per_{unit}": round(sum(by_command.values()), 2), "mongodb_commands": by_command}
    return items / seconds, seconds, meter.stop(items, unit="message") | per_item


async def on_fresh_database(stack: Stack, measure: Callable[[Mongo], Awaitable[float]]) -> float:
    stack.start_database()
    mongo: Mongo = AsyncMongoClient(stack.mongo_url)
    try:
        return await measure(mongo)
    finally:
        await mongo.close()


async def agreements_round(stack: Stack, backlog: int, number: int) -> dict[str, Any]:
    database = f"bench_agreements_{number}"
    events = [application_submitted() for _ in range(backlog)]
    raw = await on_fresh_database(stack, lambda mongo: raw_inserts(mongo, f"bench_raw_{number}", events))
    stack.stop_database()
    stack.start_database()
    mongo: Mongo = AsyncMongoClient(stack.mongo_url)
    await publish_backlog(stack, list(events))
    await stack.purge(NOTIFICATIONS_AGREEMENT_RECORDED.name)
    service = stack.service("agreements", database)
    heads = mongo[database]["acceptance_ledger_head"]

    async def linked() -> int:  # a point lookup: counting documents would load the database being measured
        head = await heads.find_one({"_id": "head"})
        return int(head["sequence"]) if head else 0

    rate, seconds, cpu = await drain_rate(linked, backlog, CpuMeter.consuming(stack, service), service, "application")
    peak = peak_rss_mib(service.pid)
    service.stop()
    # What agreements announced is not the notifications benchmark's backlog.
    await stack.purge(NOTIFICATIONS_AGREEMENT_RECORDED.name)
    await mongo.close()
    stack.stop_database()
    return {"service_per_s": round(rate, 1), "seconds": round(seconds, 1), "raw_per_s": round(raw, 1),
            "ratio": round(rate / raw, 2), "peak_rss_mib": peak} | cpu  # fmt: skip


async def raw_inserts(mongo: Mongo, database: str, events: list[Any]) -> float:
    """The same writes agreements makes per application, straight through the driver, ``CONCURRENCY`` at a time.

    An application document, its ledger link, the head, and the status update: the
    documents are built before the clock starts, so only the database work is timed.
    """
    db = mongo[database]
    await db["applications"].create_index("application_id", unique=True)
    await db["acceptance_ledger"].create_index("application_id", unique=True)
    documents = []
    for sequence, event in enumerate(events, start=1):
        record = record_from_event(event, event.occurred_at)
        application = record.model_dump(mode="json") | {"received_at": record.received_at, "status": Status.RECEIVED}
        link = {"_id": sequence, "sequence": sequence, "application_id": str(record.application_id),
                "record_hash": uuid.uuid4().hex * 2, "record": {"sequence": sequence}}  # fmt: skip
        documents.append((application, link))
    semaphore = asyncio.Semaphore(CONCURRENCY)

    async def one(application: dict[str, Any], link: dict[str, Any]) -> None:
        async with semaphore:
            await db["applications"].insert_one(application)
            await db["acceptance_ledger"].insert_one(link)
            with contextlib.suppress(DuplicateKeyError):  # a later link moved the head already
                await db["acceptance_ledger_head"].update_one(
                    {"_id": "head", "sequence": {"$lt": link["sequence"]}},
                    {"$set": {"sequence": link["sequence"], "record_hash": link["record_hash"]}},
                    upsert=True,
                )
            await db["applications"].update_one(
                {"application_id": application["application_id"]}, {"$set": {"status": Status.RECORDED}}
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(application, link) for application, link in documents))
    return len(documents) / (time.perf_counter() - started)


async def notifications_round(stack: Stack, backlog: int, number: int) -> dict[str, Any]:
    database = f"bench_notifications_{number}"
    events: list[Event] = [agreement_recorded_event() for _ in range(backlog)]
    await publish_backlog(stack, events)
    await stack.purge(NOTIFICATIONS_ENQUIRY_RECEIVED.name)
    before = sum(1 for _ in stack.mail_dir.iterdir())
    stack.start_database()
    service = stack.service("notifications", database)

    async def sent() -> int:
        return sum(1 for _ in stack.mail_dir.iterdir()) - before

    # Each agreement.recorded causes the staff's email (one address here) and the applicant's verification email.
    emails = backlog * 2
    rate, seconds, cpu = await drain_rate(sent, emails, CpuMeter.consuming(stack, service), service, "email")
    peak = peak_rss_mib(service.pid)
    service.stop()
    stack.stop_database()
    await stack.purge(AGREEMENTS_NOTIFICATION_SETTLED.name, NOTIFICATIONS_AGREEMENT_RECORDED.name)
    first = events[0]
    assert isinstance(first, AgreementRecorded)
    # What the service sends for agreement.recorded: the applicant's verification email.
    email = email_verification(
        first, "http://localhost:8000/verify/token", 7, "WeChat Agency <no-reply@agency.example>"
    )
    raw = await raw_sends(stack, email, min(backlog, 2000))
    return {"service_per_s": round(rate, 1), "seconds": round(seconds, 1), "raw_per_s": round(raw, 1),
            "ratio": round(rate / raw, 2), "peak_rss_mib": peak} | cpu  # fmt: skip


async def raw_sends(stack: Stack, message: Any, count: int) -> float:
    """The same email sent ``count`` times with aiosmtplib over one reused connection to the same sink."""
    smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=stack.smtp_port)
    await smtp.connect()
    started = time.perf_counter()
    for _ in range(count):
        await smtp.send_message(message)
    rate = count / (time.perf_counter() - started)
    await smtp.quit()
    return rate


async def run(stack: Stack, runs: int, backlog: int) -> dict[str, Any]:
    rounds: dict[str, list[dict[str, Any]]] = {"agreements": [], "notifications": []}
    for number in range(runs):
        rounds["agreements"].append(await agreements_round(stack, backlog, number))
        print(f"  consumers run {number + 1}/{runs} agreements   : {rounds['agreements'][-1]}", file=sys.stderr)
        rounds["notifications"].append(await notifications_round(stack, backlog, number))
        print(f"  consumers run {number + 1}/{runs} notifications: {rounds['notifications'][-1]}", file=sys.stderr)
    stack.start_database()  # for what runs next
    return {
        name: {
            "runs": figures,
            "median": {
                key: median(r[key] for r in figures) for key, v in figures[0].items() if not isinstance(v, dict)
            },
        }
        for name, figures in rounds.items()
    } | {"backlog": backlog, "raw_concurrency": CONCURRENCY}
