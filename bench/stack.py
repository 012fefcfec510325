"""The servers a benchmark runs against: a RabbitMQ vhost of its own, SecantusDB, an SMTP sink, and the services."""

import asyncio
import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
from faststream.rabbit import RabbitBroker

from agency_chassis.service import declare_topology
from tests.support.servers import apply_queue_policies, free_port, management_url, rabbitmqctl, wait_for_port

ROOT = Path(__file__).resolve().parents[1]
STAFF = "staff@agency.example"
# Room for every backlog the benchmarks build (the queues refuse publishes beyond it).
QUEUE_MAX_LENGTH = 1_000_000


def rss_kib(pid: int, key: str = "VmRSS") -> int:
    """Resident memory of a process in KiB (``VmHWM`` is its peak since it started)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise LookupError(f"{key} of {pid}")


def process_tree(pid: int) -> list[int]:
    """The process and all its descendants (a server's worker processes)."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        with contextlib.suppress(FileNotFoundError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return tree


def peak_rss_mib(pid: int) -> float:
    """The largest peak resident memory of any process of a server (its supervisor or one of its workers)."""
    peaks = []
    for member in process_tree(pid):
        with contextlib.suppress(FileNotFoundError):
            peaks.append(rss_kib(member, "VmHWM"))
    return round(max(peaks) / 1024, 1)


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (those gone since count nothing)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of proc(5))
    return total / CLOCK_TICKS


def broker_pids() -> list[int]:
    """The Erlang VM(s) running RabbitMQ on this machine."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                if (entry / "comm").read_text().strip() == "beam.smp":
                    pids.append(int(entry.name))
    return pids


def machine_busy_and_total() -> tuple[int, int]:
    """Jiffies the machine's CPUs spent busy, and in all (first line of /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


@dataclass
class CpuMeter:
    """CPU time each party used between ``start`` and ``stop``, per item done, and how busy the machine was.

    A party is a name and a function giving its processes' ids now (a server's workers come
    and go with it). ``children=True`` adds the load generator: our own children that ended
    in between (``wrk``).
    """

    parties: dict[str, Callable[[], list[int]]]
    children: bool = False
    started: dict[str, float] = field(default_factory=dict)

    @classmethod
    def serving(cls, server_pid: int) -> "CpuMeter":
        """An HTTP server under wrk: the server's processes, RabbitMQ, and wrk."""
        return cls({"server": lambda: process_tree(server_pid), "broker": broker_pids}, children=True)

    @classmethod
    def consuming(cls, stack: "Stack", service: "Process") -> "CpuMeter":
        """A consumer draining a backlog: the service's processes, the stack's SecantusDB, and RabbitMQ."""
        return cls({"service": lambda: process_tree(service.pid), "database": stack.database_pids,
                    "broker": broker_pids})  # fmt: skip

    def _read(self) -> dict[str, float]:
        reading = {name: cpu_seconds(pids()) for name, pids in self.parties.items()}
        if self.children:
            ended = resource.getrusage(resource.RUSAGE_CHILDREN)
            reading["load_generator"] = ended.ru_utime + ended.ru_stime
        reading["busy"], reading["total"] = machine_busy_and_total()
        return reading

    def start(self) -> "CpuMeter":
        self.started = self._read()
        return self

    def stop(self, items: int, unit: str = "request") -> dict[str, float]:
        """``<party>_cpu_ms_per_<unit>`` for each party, and ``machine_busy_pct`` (percent of all cores)."""
        now = self._read()
        spent = {key: now[key] - self.started[key] for key in now}
        figures = {
            f"{key}_cpu_ms_per_{unit}": round(1000 * spent[key] / max(items, 1), 3)
            for key in spent
            if key not in ("busy", "total")
        }
        figures["machine_busy_pct"] = round(100 * spent["busy"] / max(spent["total"], 1), 1)
        return figures


@dataclass
class Process:
    """A server process with its output in a log file under the run's folder."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> "Process":
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, env=self.env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def wait_ready(self, path: str = "/readyz", timeout: float = 60) -> None:
        assert self.port is not None
        assert self.popen is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.popen.returncode}; see {self.log}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=2).status_code == 200:
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{self.name} not ready after {timeout}s; see {self.log}")

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Stack:
    """Everything one benchmark run uses, torn down at the end (the vhost is deleted)."""

    folder: Path
    vhost: str = field(default_factory=lambda: f"bench-{uuid.uuid4().hex[:8]}")
    mongo_port: int = field(default_factory=free_port)
    smtp_port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:5672/{self.vhost}"

    @property
    def mongo_url(self) -> str:
        return f"mongodb://127.0.0.1:{self.mongo_port}"

    @property
    def mail_dir(self) -> Path:
        return self.folder / "mail"

    def env(self, database: str, **extra: str) -> dict[str, str]:
        """The services' settings for this stack (local development mode, limits out of the way of the load)."""
        return {
            **os.environ,
            "ENVIRONMENT": "local",
            "AMQP_URL": self.amqp_url,
            "MONGODB_URL": self.mongo_url,
            "MONGODB_DB": database,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.smtp_port),
            "STAFF_EMAILS": STAFF,
            "STAFF_API_TOKEN": uuid.uuid4().hex,
            "MAIL_FROM": "WeChat Agency <no-reply@agency.example>",
            "QUEUE_MAX_LENGTH": str(QUEUE_MAX_LENGTH),
            **({"RABBITMQ_MANAGEMENT_URL": url} if (url := management_url()) else {}),
            "LOG_LEVEL": "WARNING",
            # The load comes from one address; X-Forwarded-For from the load generator spreads
            # it over many clients, as a public site's traffic is, so the limiter works as in production.
            "TRUSTED_PROXIES": "127.0.0.1/32",
            # The load posts no ALTCHA solutions (nor Idempotency-Keys): the check is not what is measured.
            "CAPTCHA": "off",
            # The load's applications all name one applicant: the daily cap of client emails would hold them back.
            "CLIENT_EMAILS_PER_DAY": "100000000",
            **extra,
        }

    def launch(self, name: str, argv: list[str], env: dict[str, str], port: int | None = None) -> Process:
        process = Process(name, argv, env, self.folder / f"{name}.log", port).start()
        self.processes.append(process)
        return process

    def service(self, name: str, database: str, port: int | None = None, **extra: str) -> Process:
        port = port or free_port()
        env = self.env(database, **{f"{name.upper()}_PORT": str(port), **extra})
        return self.launch(name, [sys.executable, "-m", name], env, port)

    def start_database(self) -> None:
        """A new SecantusDB on a new port and folder; services started afterwards use it.

        Each consumer measurement gets a fresh server: SecantusDB 0.7.0b3 slows down
        several-fold once a server has taken about 10,000 writes, so the service and its raw
        reference must start from the same state to be compared.
        """
        self.mongo_port = free_port()
        secantus = str(Path(sys.executable).parent / "secantusd-py")
        mongo = self.launch(
            f"secantusdb-{self.mongo_port}",
            [secantus, "--host", "127.0.0.1", "--port", str(self.mongo_port), "--storage-path",
             str(self.folder / f"mongo-{self.mongo_port}"), "--log-level", "WARNING", "--sync-on-commit"],
            dict(os.environ),
        )  # fmt: skip
        wait_for_port(self.mongo_port, timeout=30, process=mongo.popen)

    def database_pids(self) -> list[int]:
        """The current SecantusDB server's process."""
        name = f"secantusdb-{self.mongo_port}"
        return [p.pid for p in self.processes if p.name == name and p.popen is not None and p.popen.poll() is None]

    def stop_database(self) -> None:
        """Stop the current SecantusDB (a later ``start_database`` replaces it)."""
        for process in self.processes:
            if process.name == f"secantusdb-{self.mongo_port}":
                process.stop()

    @contextlib.contextmanager
    def running(self) -> Iterator["Stack"]:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.mail_dir.mkdir(exist_ok=True)
        rabbitmqctl("add_vhost", self.vhost)
        try:
            rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
            asyncio.run(self.declare_topology())
            self.start_database()
            sink = self.launch(
                "mail-sink",
                [sys.executable, "scripts/mail_sink.py", "--port", str(self.smtp_port), "--dir", str(self.mail_dir)],
                dict(os.environ),
            )
            wait_for_port(self.smtp_port, timeout=30, process=sink.popen)
            yield self
        finally:
            for process in reversed(self.processes):
                process.stop()
            rabbitmqctl("delete_vhost", self.vhost)

    async def declare_topology(self) -> None:
        apply_queue_policies(self.vhost, QUEUE_MAX_LENGTH)
        broker = RabbitBroker(self.amqp_url)
        await broker.connect()
        try:
            await declare_topology(broker, self.amqp_url)
        finally:
            await broker.stop()

    async def purge(self, *queues: str) -> None:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            for name in queues:
                queue = await channel.get_queue(name, ensure=True)
                await queue.purge()

    async def depth(self, queue: str) -> int:
        connection = await aio_pika.connect(self.amqp_url)
        async with connection:
            channel = await connection.channel()
            declared = await channel.declare_queue(queue, passive=True)
            count = declared.declaration_result.message_count
            return int(count or 0)


def write_results(results: dict[str, object], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
