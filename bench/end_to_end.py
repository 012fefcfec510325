"""End to end at a fixed offered rate: POST → record stored and POST → client email received; and memory over time."""

import asyncio
import sys
import time
from datetime import UTC, datetime
from email.parser import BytesHeaderParser
from pathlib import Path
from statistics import median, quantiles
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from bench.intake_load import application_body
from bench.stack import Process, Stack, rss_kib

CLIENT = "li.wei@mapletea.example"


async def offer(url: str, rate: float, seconds: float, tag: str) -> dict[str, float]:
    """POST at ``rate`` per second for ``seconds`` (open loop: a slow answer never delays the next POST).

    Returns each accepted submission's correlation id with the wall-clock time its POST started.
    """
    body = application_body()
    started: dict[str, float] = {}
    refused = 0
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits, timeout=30) as http:

        async def post(number: int) -> None:
            nonlocal refused
            correlation_id = f"{tag}-{number}"
            headers = {
                "Content-Type": "application/json",
                "X-Correlation-ID": correlation_id,
                "X-Forwarded-For": f"10.{number // 65536 % 256}.{number // 256 % 256}.{number % 256}",
            }
            at = time.time()
            response = await http.post(url, content=body, headers=headers)
            if response.status_code == 202:
                started[correlation_id] = at
            else:
                refused += 1

        tasks = []
        origin = time.perf_counter()
        for number in range(int(rate * seconds)):
            delay = origin + number / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(post(number)))
        await asyncio.gather(*tasks)
    if refused:
        print(f"  warning: {refused} submissions not accepted", file=sys.stderr)
    return started


def client_emails(folder: Path, tag: str) -> dict[str, float]:
    """Correlation id → time the SMTP sink received the client's email (from the sink's file name)."""
    received = {}
    parser = BytesHeaderParser()
    for path in folder.glob(f"*{CLIENT}*.eml"):
        with path.open("rb") as file:
            correlation_id = parser.parse(file)["X-Correlation-ID"] or ""
        if correlation_id.startswith(tag + "-"):
            stamp = datetime.strptime(path.name.split("-", 1)[0], "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=UTC)
            received[correlation_id] = stamp.timestamp()
    return received


def distribution(latencies: list[float]) -> dict[str, float]:
    cuts = quantiles(latencies, n=100, method="inclusive")
    return {"p50_ms": round(cuts[49] * 1000, 1), "p95_ms": round(cuts[94] * 1000, 1),
            "p99_ms": round(cuts[98] * 1000, 1), "max_ms": round(max(latencies) * 1000, 1)}  # fmt: skip


async def one_run(
    stack: Stack, intake: Process, database: str, rate: float, seconds: float, tag: str, drain_timeout: float = 600
) -> dict[str, Any]:
    started = await offer(f"http://127.0.0.1:{intake.port}/v1/applications", rate, seconds, tag)
    # Wait on the sink's files (cheap); query the database once at the end, so the
    # measurement does not load the database it measures.
    emailed: dict[str, float] = {}
    async with asyncio.timeout(drain_timeout):
        while len(emailed) < len(started):
            await asyncio.sleep(1)
            emailed = client_emails(stack.mail_dir, tag)
    drained_after = time.time() - max(started.values())
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.mongo_url, tz_aware=True)
    try:
        query = {"correlation_id": {"$regex": f"^{tag}-"}}
        documents = mongo[database]["applications"].find(query, {"correlation_id": 1, "recorded_at": 1})
        stored = {d["correlation_id"]: d["recorded_at"].timestamp() async for d in documents}
    finally:
        await mongo.close()
    return {
        "offered_per_s": rate, "seconds": seconds, "accepted": len(started),
        "last_email_after_last_post_s": round(drained_after, 1),
        "stored": distribution([stored[c] - at for c, at in started.items()]),
        "emailed": distribution([emailed[c] - at for c, at in started.items()]),
    }  # fmt: skip


def start_services(stack: Stack, database: str) -> dict[str, Process]:
    services = {name: stack.service(name, database) for name in ("intake", "agreements", "notifications")}
    for service in services.values():
        service.wait_ready()
    return services


async def run(stack: Stack, runs: int, rate: float, seconds: float) -> dict[str, Any]:
    results = []
    for number in range(runs):
        # Each run on a fresh SecantusDB (it slows down several-fold after ~10,000 writes; a
        # run at 100/s makes ~30,000), so the runs measure the same thing.
        stack.stop_database()
        stack.start_database()
        services = start_services(stack, "bench_e2e")
        try:
            results.append(await one_run(stack, services["intake"], "bench_e2e", rate, seconds, f"e2e{number}"))
        finally:
            for service in services.values():
                service.stop()
        print(f"  e2e run {number + 1}/{runs}: stored {results[-1]['stored']} emailed {results[-1]['emailed']}",
              file=sys.stderr)  # fmt: skip
    keys = ("p50_ms", "p95_ms", "p99_ms")
    return {
        "runs": results,
        "median": {
            what: {key: median(r[what][key] for r in results) for key in keys} for what in ("stored", "emailed")
        },
    }


async def memory(stack: Stack, rate: float, seconds: float) -> dict[str, Any]:
    """Resident memory of each service, sampled every 2 s while the whole system takes ``rate`` per second."""
    services = start_services(stack, "bench_memory")
    samples: dict[str, list[int]] = {name: [] for name in services}

    async def sample() -> None:
        while True:
            for name, service in services.items():
                samples[name].append(rss_kib(service.pid))
            await asyncio.sleep(2)

    sampler = asyncio.create_task(sample())
    try:
        await offer(f"http://127.0.0.1:{services['intake'].port}/v1/applications", rate, seconds, "memory")
    finally:
        sampler.cancel()
        for service in services.values():
            service.stop()
    report = {}
    for name, values in samples.items():
        settled = values[len(values) // 6]  # after the first sixth: imports, pools and caches are warm
        report[name] = {
            "start_mib": round(values[0] / 1024, 1), "settled_mib": round(settled / 1024, 1),
            "end_mib": round(values[-1] / 1024, 1), "max_mib": round(max(values) / 1024, 1),
            "growth_after_settling_mib": round((values[-1] - settled) / 1024, 1),
        }  # fmt: skip
    return {"offered_per_s": rate, "seconds": seconds, "services": report}
