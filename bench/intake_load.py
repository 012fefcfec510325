"""Intake throughput and latency under wrk: intake, the straightforward reference and the no-publish ceiling.

Intake runs as deployed on a machine of its own: ``INTAKE_WORKERS`` processes, one per
core. It is measured as a single process too, so what the code gains and what the
second process gains read apart. The reference is one process, as written.
"""

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path
from statistics import median
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agency_shared.topology import AGREEMENTS_APPLICATION_SUBMITTED
from bench.stack import ROOT, CpuMeter, Process, Stack, peak_rss_mib
from tests.support.data import application
from tests.support.servers import free_port

LUA = ROOT / "bench" / "application.lua"


def application_body() -> bytes:
    """A realistic application of about 3 KB: English and Chinese in every free-text field."""
    body = application(
        {
            "account.description": (
                "Canadian maple tea and syrup gift sets for customers in China, sold through our Mini Program. "
                "加拿大枫叶茶和枫糖浆礼盒，小程序销售。"
            ),
            "notes": (
                "We would like to start with a Service Account and add WeChat Pay once verified. "
                "Our marketing team in Vancouver will manage the content; our partner in Shanghai handles "
                "customer service in Chinese. Please tell us which documents you need for verification.\n"
                "希望尽快开通服务号，认证后开通微信支付。温哥华的市场团队负责内容运营，上海的合作伙伴负责中文客服。"
                "请告知认证所需的全部材料，以及大概需要多长时间。我们已经准备好营业执照的中文翻译件。\n"
                "Timeline: launch before the Mid-Autumn Festival. 目标：中秋节前上线。" * 4
            ),
        }
    )
    return json.dumps(body, ensure_ascii=False).encode()


def wrk(url: str, body_file: Path, connections: int, seconds: int) -> dict[str, Any]:
    """One bounded wrk run (2 threads, keep-alive connections); the Lua script prints one JSON line."""
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "5s", "-s", str(LUA), url],
        env={**os.environ, "BENCH_BODY": str(body_file)},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    [line] = [line for line in out.splitlines() if line.startswith("BENCH_JSON ")]
    figures: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    seconds_taken = figures["duration_us"] / 1e6
    figures["accepted_per_s"] = round(figures["accepted"] / seconds_taken, 1)
    figures["errors"] = figures["requests"] - figures["accepted"] + figures["socket_errors"]
    return figures


def run(stack: Stack, runs: int, seconds: int, connections: int, workers: int) -> dict[str, Any]:
    body_file = stack.folder / "application.json"
    body_file.write_bytes(application_body())
    servers = start_servers(stack, workers)
    queues = (AGREEMENTS_APPLICATION_SUBMITTED.name,)
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in servers}
    for process in servers.values():  # warm-up
        wrk(f"http://127.0.0.1:{process.port}/v1/applications", body_file, connections, 2)
    for number in range(runs):
        # Interleaved, so drift on a shared machine touches every contender alike.
        for name, process in servers.items():
            asyncio.run(stack.purge(*queues))
            meter = CpuMeter.serving(process.pid).start()
            confirms = confirm_buckets(process) if name in CONFIRMING else {}
            figures = wrk(f"http://127.0.0.1:{process.port}/v1/applications", body_file, connections, seconds)
            figures.update(meter.stop(figures["requests"]))
            if confirms:
                figures.update(confirm_quantiles(confirms, confirm_buckets(process)))
            figures["peak_rss_mib"] = peak_rss_mib(process.pid)
            rounds[name].append(figures)
            print(f"  intake run {number + 1}/{runs} {name:13}: {summary(figures)}", file=sys.stderr, flush=True)
            time.sleep(1)
    asyncio.run(stack.purge(*queues))
    result: dict[str, Any] = {name: {"runs": runs_, "median": medians(runs_)} for name, runs_ in rounds.items()}
    reference = result["reference"]["median"]["accepted_per_s"]
    for name in ("intake", "intake_single", "ceiling"):
        result[f"ratio_{name}_to_reference"] = round(result[name]["median"]["accepted_per_s"] / reference, 2)
    result["body_bytes"] = body_file.stat().st_size
    result["connections"], result["seconds"], result["intake_workers"] = connections, seconds, workers
    return result


def start_servers(stack: Stack, workers: int) -> dict[str, Process]:
    """The reference, intake with ``workers`` processes and with one, and the ceiling with ``workers``."""
    # Intake first: it declares the topology the reference publishes into.
    intake = stack.service("intake", "bench_intake", RATE_LIMIT="10/minute", INTAKE_WORKERS=str(workers))
    intake.wait_ready()
    single = stack.service("intake", "bench_intake", RATE_LIMIT="10/minute", INTAKE_WORKERS="1")
    reference_port = free_port()
    reference = stack.launch(
        "reference",
        [sys.executable, "bench/reference_intake.py", "--port", str(reference_port), "--amqp-url", stack.amqp_url],
        stack.env("bench_intake"),
        reference_port,
    )
    ceiling_port = free_port()
    ceiling = stack.launch(
        "ceiling",
        [sys.executable, "-m", "bench.ceiling_intake"],
        stack.env("bench_intake", INTAKE_PORT=str(ceiling_port), RATE_LIMIT="10/minute", INTAKE_WORKERS=str(workers)),
        ceiling_port,
    )
    single.wait_ready()
    reference.wait_ready(path="/docs")
    ceiling.wait_ready()
    return {"reference": reference, "intake": intake, "intake_single": single, "ceiling": ceiling}


# The contenders that publish and count the broker's confirm times (wechat_publish_confirm_seconds).
CONFIRMING = ("intake", "intake_single")


def confirm_buckets(process: Process) -> dict[float, float]:
    """The cumulative buckets of intake's confirm-time histogram, as its /metrics says now (all workers)."""
    text = httpx.get(f"http://127.0.0.1:{process.port}/metrics", timeout=10).text
    return {
        float(sample.labels["le"]): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "wechat_publish_confirm_seconds_bucket" and sample.labels.get("service") == "intake"
    }


def confirm_quantiles(before: dict[float, float], after: dict[float, float]) -> dict[str, float]:
    """The bucket bounds (ms) under which half and 99 % of the run's publishes had their confirm."""
    delta = {bound: after[bound] - before.get(bound, 0.0) for bound in sorted(after)}
    total = delta[math.inf]
    figures = {}
    for name, share in (("confirm_p50_le_ms", 0.5), ("confirm_p99_le_ms", 0.99)):
        bound = next(bound for bound, count in delta.items() if count >= share * total)
        figures[name] = bound * 1000
    return figures


def medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    keys = ("accepted_per_s", "p50_ms", "p99_ms", "errors", "peak_rss_mib", "server_cpu_ms_per_request",
            "broker_cpu_ms_per_request", "load_generator_cpu_ms_per_request", "machine_busy_pct",
            "confirm_p50_le_ms", "confirm_p99_le_ms")  # fmt: skip
    return {key: round(median(run[key] for run in runs), 2) for key in keys if key in runs[0]}


def summary(figures: dict[str, Any]) -> str:
    return (
        f"{figures['accepted_per_s']:8.1f}/s  p50 {figures['p50_ms']:6.1f} ms  p99 {figures['p99_ms']:6.1f} ms  "
        f"errors {figures['errors']}  statuses {figures['statuses']}  CPU ms/request: server "
        f"{figures['server_cpu_ms_per_request']:.3f}, broker {figures['broker_cpu_ms_per_request']:.3f}, wrk "
        f"{figures['load_generator_cpu_ms_per_request']:.3f}; machine {figures['machine_busy_pct']:.0f}% busy"
        + (
            f"; confirms p50 <= {figures['confirm_p50_le_ms']:g} ms, p99 <= {figures['confirm_p99_le_ms']:g} ms"
            if "confirm_p99_le_ms" in figures
            else ""
        )
    )
