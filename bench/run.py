"""``make bench``: every benchmark, each figure the median of several runs beside its reference.

python -m bench.run [--only intake,consumers,e2e,memory,uploads] [--runs 3] [--seconds 10] [--upload-counts 1,5,20]
"""

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import consumers, end_to_end, intake_load, uploads
from bench.stack import ROOT, Stack, write_results

SECTIONS = ("intake", "consumers", "e2e", "memory", "uploads")


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}


def table(results: dict[str, Any]) -> str:
    """The figures as a plain-text table (medians; the JSON file has every run)."""
    rows = [("what", "median", "reference", "ratio", "peak RSS MiB", "CPU ms per item: ours / broker / database")]
    if intake := results.get("intake"):
        workers = intake["intake_workers"]
        names = {
            "reference": "reference (1 process)",
            "intake": f"intake ({workers} workers)",
            "intake_single": "intake (1 process)",
            "ceiling": f"ceiling ({workers} workers, no publish)",
        }
        reference = intake["reference"]["median"]["accepted_per_s"]
        for name, label in names.items():
            m = intake[name]["median"]
            ratio = "" if name == "reference" else f"{intake[f'ratio_{name}_to_reference']}"
            confirms = f", confirm p99 <= {m['confirm_p99_le_ms']:g} ms" if "confirm_p99_le_ms" in m else ""
            rows.append((f"{label} accepted/s (p50 {m['p50_ms']} ms, p99 {m['p99_ms']} ms{confirms}, "
                         f"errors {m['errors']:.0f})", f"{m['accepted_per_s']}", f"{reference}", ratio,
                         f"{m['peak_rss_mib']}",
                         f"{m['server_cpu_ms_per_request']} / {m['broker_cpu_ms_per_request']} / -"))  # fmt: skip
    if consumers := results.get("consumers"):
        for name, unit in (("agreements", "application"), ("notifications", "email")):
            m = consumers[name]["median"]
            cpu = " / ".join(f"{m[f'{party}_cpu_ms_per_message']:.2f}" for party in ("service", "broker", "database"))
            commands = m[f"mongodb_commands_per_{unit}"]
            rows.append((f"{name} drain/s ({commands:g} MongoDB commands per {unit})", f"{m['service_per_s']}",
                         f"{m['raw_per_s']}", f"{m['ratio']}", f"{m['peak_rss_mib']}", cpu))  # fmt: skip
    if e2e := results.get("e2e"):
        for what in ("stored", "emailed"):
            m = e2e["median"][what]
            rows.append(
                (f"POST -> {what} p50/p95/p99 ms", f"{m['p50_ms']}/{m['p95_ms']}/{m['p99_ms']}", "", "", "", "")
            )
    if memory := results.get("memory"):
        for name, m in memory["services"].items():
            rows.append((f"{name} RSS over 60 s (settled -> end)", f"{m['settled_mib']} -> {m['end_mib']}", "", "",
                         f"{m['max_mib']}", ""))  # fmt: skip
    if upload := results.get("uploads"):
        rows += upload_rows(upload)
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)


def upload_rows(upload: dict[str, Any]) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    for count, figures in upload["by_count"].items():
        m = figures["median"]
        cpu = f"{m['casework_run_casework_cpu_ms_per_upload']:g} / - / {m['casework_run_database_cpu_ms_per_upload']:g}"
        rows.append((f"casework uploads MiB/s, {count} x 5 MiB at once (RSS growth {m['growth_mib']} MiB)",
                     f"{m['casework_mib_per_s']}", f"{m['reference_mib_per_s']}", f"{m['ratio']}",
                     f"{m['peak_mib']}", cpu))  # fmt: skip
    if ratio := upload.get("growth_ratio"):
        runs = ", ".join("-" if r is None else f"{r:g}" for r in ratio["runs"])
        rows.append((f"upload RSS {ratio['of']} (runs {runs}; of medians {ratio['of_medians']})",
                     f"{ratio['median']}", "", "", "", ""))  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default=",".join(SECTIONS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--intake-workers", type=int, default=os.cpu_count() or 1, help="default: one per core")
    parser.add_argument("--backlog", type=int, default=5000)
    parser.add_argument("--e2e-rate", type=float, default=100, help="submissions per second offered end to end")
    parser.add_argument("--upload-counts", default=",".join(map(str, uploads.COUNTS)), help="uploads at once")
    args = parser.parse_args()
    sections = args.only.split(",")
    results: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "machine": machine()}
    # Written after every section, so a section that fails leaves the others' figures.
    path = ROOT / "bench" / "results" / time.strftime("%Y%m%dT%H%M%SZ.json", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="bench-") as folder, Stack(Path(folder)).running() as stack:
        if "intake" in sections:
            print("intake: reference, intake and ceiling under wrk", file=sys.stderr, flush=True)
            results["intake"] = intake_load.run(stack, args.runs, args.seconds, args.connections, args.intake_workers)
            write_results(results, path)
        if "consumers" in sections:
            print(f"consumers: a backlog of {args.backlog} events each, beside the raw rates", file=sys.stderr)
            results["consumers"] = asyncio.run(consumers.run(stack, args.runs, args.backlog))
            write_results(results, path)
        if "e2e" in sections:
            print(f"e2e: {args.e2e_rate:g} submissions/s through all three services", file=sys.stderr)
            results["e2e"] = asyncio.run(end_to_end.run(stack, args.runs, rate=args.e2e_rate, seconds=30))
            write_results(results, path)
        if "memory" in sections:
            print("memory: all three services for 60 s at 100 submissions/s", file=sys.stderr)
            results["memory"] = asyncio.run(end_to_end.memory(stack, rate=100, seconds=60))
            write_results(results, path)
        if "uploads" in sections:
            counts = tuple(int(count) for count in args.upload_counts.split(","))
            print(f"uploads: casework's memory and MiB/s with {counts} uploads of 5 MiB at once", file=sys.stderr)
            results["uploads"] = asyncio.run(uploads.run(stack, args.runs, counts))
            write_results(results, path)
    print(table(results))
    print(f"written to {path.relative_to(ROOT)}", file=sys.stderr)


if __name__ == "__main__":
    main()
