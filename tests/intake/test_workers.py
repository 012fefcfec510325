"""INTAKE_WORKERS: several intake processes answer on one port, and any of them answers /metrics for all."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector

from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED
from tests.support import broker
from tests.support.data import application
from tests.support.metrics import parse, samples_of, value
from tests.support.servers import free_port

ACCEPTED = {"form": "application", "outcome": "accepted"}


def workers_of(pid: int) -> list[int]:
    """The server processes uvicorn spawned (not multiprocessing's resource tracker beside them)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(child) for child in children if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


@pytest.fixture
def two_workers(
    amqp_url: str, mongo_url: str, mongo_db: str, tmp_path: Path
) -> Iterator[tuple[str, Path, subprocess.Popen[bytes]]]:
    port, metrics_dir = free_port(), tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"left by an earlier run")  # must be cleared at start
    env = {
        **os.environ,
        "ENVIRONMENT": "test",
        "AMQP_URL": amqp_url,
        "MONGODB_URL": mongo_url,
        "MONGODB_DB": mongo_db,
        "INTAKE_PORT": str(port),
        "INTAKE_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        "TRUSTED_PROXIES": "127.0.0.1/32",  # X-Forwarded-For names the client: one rate limit each
    }
    with (tmp_path / "intake.log").open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "intake"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not (workers_ready(port) and len(workers_of(process.pid)) == 2):
            assert process.poll() is None, (tmp_path / "intake.log").read_text()
            assert time.monotonic() < deadline, "intake's workers did not get ready"
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}", metrics_dir, process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)


def workers_ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def accepted_by_worker(metrics_dir: Path) -> dict[str, float]:
    """Each worker's own count of accepted applications, from the files it writes its metrics to."""
    counts = {}
    for file in metrics_dir.glob("counter_*.db"):
        samples = samples_of(MultiProcessCollector.merge([str(file)], accumulate=True))  # type: ignore[no-untyped-call]
        counts[file.stem] = value(samples, "intake_submissions_total", **ACCEPTED)
    return counts


async def submit(base_url: str, number: int) -> int:
    # A connection of its own, so the kernel may hand it to either worker.
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        headers = {"X-Forwarded-For": f"198.51.100.{number % 250}", "Idempotency-Key": f"workers-test-{number:08d}"}
        return (await http.post("/v1/applications", json=application(), headers=headers)).status_code


async def test_two_workers_answer_on_one_port_and_each_counts_all_in_metrics(
    two_workers: tuple[str, Path, subprocess.Popen[bytes]], amqp_url: str
) -> None:
    base_url, metrics_dir, _ = two_workers
    assert not (metrics_dir / "counter_1.db").exists()
    statuses: list[int] = []
    # Batches at once until both workers have taken some (the kernel spreads connections, not evenly).
    while len(statuses) < 200 and sum(count > 0 for count in accepted_by_worker(metrics_dir).values()) < 2:
        statuses += await asyncio.gather(*(submit(base_url, len(statuses) + n) for n in range(20)))
    assert set(statuses) == {202}
    per_worker = accepted_by_worker(metrics_dir)
    assert sum(count > 0 for count in per_worker.values()) == 2, per_worker
    assert sum(per_worker.values()) == len(statuses)
    # Whichever worker answers a scrape, it reports every worker's submissions.
    for _ in range(6):
        async with httpx.AsyncClient(base_url=base_url) as http:
            samples = parse((await http.get("/metrics")).text)
        assert value(samples, "intake_submissions_total", **ACCEPTED) == len(statuses)
    assert len(await broker.take(amqp_url, AGREEMENTS_APPLICATION_SUBMITTED.name, len(statuses))) == len(statuses)


def test_stopping_the_server_stops_every_worker(two_workers: tuple[str, Path, subprocess.Popen[bytes]]) -> None:
    _, _, process = two_workers
    workers = workers_of(process.pid)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)
