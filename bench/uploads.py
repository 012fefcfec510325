"""Document uploads: casework's resident memory while 1, 5 and 20 uploads of 5 MiB run at once through the portal's
route, and its MiB/s beside the same bytes written straight to GridFS (PyMongo's ``upload_from_stream``).

Each round (one count, one repetition) starts a fresh SecantusDB and a fresh ``python -m casework``: a process's
heap does not shrink back after a round, so a second round in the same process would start from the first one's
peak. The process is warmed with one small upload first (imports, the database's connection, the first request's
lazy set-up), then its peak is reset (``/proc/<pid>/clear_refs``) and the growth is its ``VmHWM`` after the round
minus its ``VmRSS`` before it. Memory bounded per upload keeps growth(20) / growth(1) near 1; an upload that held
its file would make it near 20."""

import asyncio
import contextlib
import os
import secrets
import shutil
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from gridfs import AsyncGridFSBucket
from pymongo import AsyncMongoClient

from agency_chassis.portal_links import PortalLinks
from agency_shared.events import utc_now
from bench.stack import CpuMeter, Process, Stack, rss_kib
from casework.documents.checklists import known_items
from casework.documents.store import CaseDocuments
from casework.handlers import application_case
from casework.portal.session import COOKIE
from casework.settings import DEFAULT_TIME_LIMITS
from casework.storage import MongoCases
from casework.workflow import due_at
from tests.support.documents import multipart, pdf
from tests.support.events import agreement_recorded_event

Mongo = AsyncMongoClient[dict[str, Any]]
MIB = 1024 * 1024
SIZE = 5 * MIB
COUNTS = (1, 5, 20)
ITEM = "application_letter"
# The cap of one round: 20 uploads of 5 MiB take seconds here; a wedged server should not hold the bench.
ROUND_TIMEOUT = 300


def five_mib_pdf() -> bytes:
    """A well-formed PDF of exactly ``SIZE`` bytes (a comment pads it), as casework's content checks accept it."""
    padding = SIZE - len(pdf(padding=1)) + 1
    content = pdf(padding=padding)
    return content if len(content) == SIZE else pdf(padding=padding + SIZE - len(content))


async def seed_cases(mongo: Mongo, database: str, links: PortalLinks, count: int) -> list[tuple[str, str]]:
    """``count`` application cases awaiting ``ITEM``, as staff's request leaves them: each portal session's token
    and the CSRF token its upload form carries."""
    cases, documents = MongoCases(mongo, database), CaseDocuments(mongo, database)
    item = known_items()[ITEM]
    sessions = []
    for _ in range(count):
        now = utc_now()
        case = application_case(agreement_recorded_event().data, DEFAULT_TIME_LIMITS, now)
        status = "awaiting_documents"
        case = case.model_copy(update={"status": status, "due_at": due_at(status, now, DEFAULT_TIME_LIMITS)})
        assert await cases.open(case)
        await documents.request(case.id, [item], None, "bench@agency.example", now)
        token = links.issue(case.id, 0, "en", now)
        sessions.append((token, links.csrf_token(token)))
    return sessions


async def upload_all(port: int, bodies: list[tuple[bytes, dict[str, str]]], tokens: list[str]) -> float:
    """POST every body at once, each with its own session and connection, as clients' browsers do; the seconds
    from the first request to the last answer (each must be 201: a refused upload would measure nothing)."""
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits, timeout=ROUND_TIMEOUT) as http:

        async def one(body: bytes, headers: dict[str, str], token: str) -> httpx.Response:
            headers = {**headers, "Accept": "application/json", "Cookie": f"{COOKIE}={token}"}
            return await http.post(f"/portal/documents/{ITEM}", content=body, headers=headers)

        started = time.perf_counter()
        answers = await asyncio.gather(
            *(one(body, headers, token) for (body, headers), token in zip(bodies, tokens, strict=True))
        )
        seconds = time.perf_counter() - started
    refused = [(answer.status_code, answer.text[:200]) for answer in answers if answer.status_code != 201]
    if refused:
        raise RuntimeError(f"{len(refused)} of {len(answers)} uploads refused: {refused[0]}")
    return seconds


class PeakMemory:
    """A process's peak resident memory over a stretch: its ``VmHWM`` reset at the start, where the kernel lets us
    (``clear_refs``, Linux 4.0+), else the largest ``VmRSS`` sampled every 5 ms."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.baseline_kib = rss_kib(pid)
        self.sampled_kib = self.baseline_kib
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # proc(5): "5" resets the peak (VmHWM) to now
            self.reset = True
        except OSError:
            self.reset = False
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            with contextlib.suppress(FileNotFoundError, LookupError):
                self.sampled_kib = max(self.sampled_kib, rss_kib(self.pid))

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._sampler.join()
        self.sampled_kib = max(self.sampled_kib, rss_kib(self.pid))
        peak = max(rss_kib(self.pid, "VmHWM"), self.sampled_kib) if self.reset else self.sampled_kib
        return {
            "baseline_mib": round(self.baseline_kib / 1024, 1),
            "peak_mib": round(peak / 1024, 1),
            "growth_mib": round((peak - self.baseline_kib) / 1024, 1),
            "peak_from": "VmHWM" if self.reset else "VmRSS sampled every 5 ms",
        }


async def reference_upload(mongo: Mongo, database: str, content: bytes, count: int) -> float:
    """The same files written straight to GridFS, ``count`` at once, with PyMongo's own upload (same chunk size):
    the seconds from the first to the last."""
    bucket = AsyncGridFSBucket(mongo[database], bucket_name="reference_files", chunk_size_bytes=255 * 1024)
    started = time.perf_counter()
    await asyncio.gather(*(bucket.upload_from_stream(f"reference-{n}.pdf", content) for n in range(count)))
    return time.perf_counter() - started


def start_casework(stack: Stack, database: str, secret: str) -> Process:
    casework = stack.service("casework", database, PORTAL_LINK_SECRET=secret, REMINDER_SCAN_SECONDS="0")
    casework.wait_ready()
    return casework


async def one_round(stack: Stack, content: bytes, count: int, number: int) -> dict[str, Any]:
    """One count, one repetition, on a fresh SecantusDB and a fresh casework; casework and the reference take
    turns going first (even repetitions casework first), so neither always meets the fuller database."""
    stack.start_database()
    mongo: Mongo = AsyncMongoClient(stack.mongo_url)
    database = f"bench_uploads_{count}_{number}"
    secret = secrets.token_hex(32)
    links = PortalLinks(secret, timedelta(days=30))
    casework = start_casework(stack, database, secret)
    try:
        warm_up, *sessions = await seed_cases(mongo, database, links, count + 1)
        await upload_all(casework.port or 0, [multipart(pdf(), "warm-up.pdf", "application/pdf", warm_up[1])],
                         [warm_up[0]])  # fmt: skip
        # The bodies exist before measuring: the bench's own memory and CPU building them are not measured.
        bodies = [multipart(content, "certificate.pdf", "application/pdf", csrf) for _, csrf in sessions]
        tokens = [token for token, _ in sessions]
        figures: dict[str, Any] = {"count": count}

        async def through_casework() -> None:
            meter = CpuMeter({"casework": lambda: [casework.pid], "database": stack.database_pids,
                              "bench": lambda: [os.getpid()]}).start()  # fmt: skip
            memory = PeakMemory(casework.pid)
            seconds = await upload_all(casework.port or 0, bodies, tokens)
            figures.update(memory.stop())
            figures["casework_mib_per_s"] = round(count * SIZE / MIB / seconds, 1)
            figures["casework_seconds"] = round(seconds, 2)
            figures.update({f"casework_run_{k}": v for k, v in meter.stop(count, unit="upload").items()})

        async def through_gridfs() -> None:
            meter = CpuMeter({"database": stack.database_pids, "bench": lambda: [os.getpid()]}).start()
            seconds = await reference_upload(mongo, f"{database}_reference", content, count)
            figures["reference_mib_per_s"] = round(count * SIZE / MIB / seconds, 1)
            figures["reference_seconds"] = round(seconds, 2)
            figures.update({f"reference_run_{k}": v for k, v in meter.stop(count, unit="upload").items()})

        order = (through_casework, through_gridfs) if number % 2 == 0 else (through_gridfs, through_casework)
        async with asyncio.timeout(ROUND_TIMEOUT):
            for measure in order:
                await measure()
        figures["ratio"] = round(figures["casework_mib_per_s"] / figures["reference_mib_per_s"], 2)
        return figures
    finally:
        casework.stop()
        await mongo.close()
        stack.stop_database()
        shutil.rmtree(stack.folder / f"mongo-{stack.mongo_port}", ignore_errors=True)  # up to 200 MiB a round


def summary(figures: dict[str, Any]) -> str:
    return (
        f"RSS {figures['baseline_mib']} -> {figures['peak_mib']} MiB (growth {figures['growth_mib']}), "
        f"{figures['casework_mib_per_s']} MiB/s vs GridFS {figures['reference_mib_per_s']} MiB/s "
        f"(ratio {figures['ratio']})"
    )


def medians(figures: list[dict[str, Any]]) -> dict[str, float]:
    return {key: median(r[key] for r in figures) for key, value in figures[0].items() if isinstance(value, int | float)}


async def run(stack: Stack, runs: int, counts: tuple[int, ...] = COUNTS) -> dict[str, Any]:
    content = five_mib_pdf()
    rounds: dict[int, list[dict[str, Any]]] = {count: [] for count in counts}
    for number in range(runs):
        for count in counts:
            rounds[count].append(await one_round(stack, content, count, number))
            print(f"  uploads run {number + 1}/{runs}, {count:2} at once: {summary(rounds[count][-1])}",
                  file=sys.stderr, flush=True)  # fmt: skip
    stack.start_database()  # for what runs next
    result: dict[str, Any] = {
        "size_bytes": SIZE,
        "by_count": {str(count): {"runs": figures, "median": medians(figures)} for count, figures in rounds.items()},
    }
    low, high = min(counts), max(counts)
    if low != high:
        ratios = [
            round(big["growth_mib"] / small["growth_mib"], 2) if small["growth_mib"] > 0 else None
            for small, big in zip(rounds[low], rounds[high], strict=True)
        ]
        known = [ratio for ratio in ratios if ratio is not None]
        result["growth_ratio"] = {
            "of": f"growth({high}) / growth({low})",
            "runs": ratios,
            "median": median(known) if known else None,
            "of_medians": round(
                median(r["growth_mib"] for r in rounds[high]) / max(median(r["growth_mib"] for r in rounds[low]), 0.1),
                2,
            ),
        }
    return result
