"""Fault-test harness: the services as real processes, a steady load, and an accounting of every submission.

Like RabbitMQ's Jepsen tests, every submission is classified at the end: refused (not
accepted: nothing owed), or accepted (202) and then recorded, emailed to staff and
emailed to the client: or lost (some of that never happened) or duplicated.

"Emailed to the client" means the client got the email the system owes after a 202 by
itself: the verification link. The confirmation with the receipt waits for a person to
press the link's button, which nobody does under the fault load (and no other email goes to
a client), so every email to a client here is a verification email, counted once per client.
"""

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
from pymongo import AsyncMongoClient

from agency_shared.topology import DEFAULT_MAX_LENGTH
from tests.support.broker import STATISTICS_INTERVAL_SECONDS, queued_messages
from tests.support.data import application
from tests.support.servers import Inbox, apply_queue_policies, free_port, management_url, wait_for_port
from tests.support.verification import is_verification

SERVICES = ("intake", "agreements", "notifications", "casework")
# casework's own token for agreements' staff API (the system is whole: casework consumes its queues too).
CASEWORK_TOKEN = "casework-faults-token-0123456789abcdef"
STAFF = "staff@agency.example"
RESULTS = Path(__file__).resolve().parents[2] / "var" / "faults"
_APPLICATION_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


async def rabbitmqctl(*args: str) -> str:
    """Run rabbitmqctl without blocking the event loop (the load keeps running meanwhile)."""
    process = await asyncio.create_subprocess_exec(
        "rabbitmqctl", "-q", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode or 1, ["rabbitmqctl", *args], out, err)
    return out.decode()


class Service:
    """One service (or one replica of it) as `python -m <name>`, with its output in a log file."""

    def __init__(self, name: str, port: int, env: dict[str, str], logs: Path, label: str | None = None) -> None:
        self.name, self.port, self.env = name, port, env
        self.label = label or name
        self.log_path = logs / f"{self.label}.log"
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, ready: bool = True) -> None:
        """Start the process and, if ``ready``, wait until it says it is ready."""
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", self.name, env=self.env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        if ready:
            await self.wait_ready()

    async def wait_ready(self, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout), httpx.AsyncClient() as http:
            while True:
                assert self.process is not None, self.name
                assert self.process.returncode is None, self.tail()
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2)).status_code == 200:
                        return
                await asyncio.sleep(0.1)

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = 30) -> int:
        """Send ``signum`` and wait for the exit; return the exit code."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.send_signal(signum)
        async with asyncio.timeout(timeout):
            return await self.process.wait()

    def tail(self, lines: int = 40) -> str:
        return (
            "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:]) if self.log_path.exists() else ""
        )


class Database:
    """The harness's own SecantusDB, so a test can kill it and bring it back on the same data."""

    def __init__(self, storage: Path) -> None:
        self.storage, self.port = storage, free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}"

    def start(self) -> None:
        executable = Path(sys.executable).parent / "secantusd-py"
        self.process = subprocess.Popen(
            [str(executable), "--host", "127.0.0.1", "--port", str(self.port), "--storage-path", str(self.storage),
             "--log-level", "WARNING", "--sync-on-commit"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        wait_for_port(self.port, timeout=30, process=self.process)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


@dataclass
class Submission:
    number: int
    client: str
    status: int | None = None  # None: no answer (connection refused, timeout)
    application_id: str | None = None
    started: float = 0.0
    latency: float = 0.0


def submission_body(submission: Submission) -> dict[str, Any]:
    """The application the load generator posts for ``submission`` (the same every time: a repeat is a repeat)."""
    return application({"operator.email": submission.client, "account.name": f"Fault {submission.number:05d}"})


@dataclass
class Accounting:
    fault: str
    submitted: int
    accepted: int
    refused: int
    recorded: int
    staff_emailed: int
    client_emailed: int
    lost: list[str] = field(default_factory=list)
    duplicate_records: int = 0
    duplicate_emails: int = 0
    duplicated: list[str] = field(default_factory=list)
    # Recorded although the client was not told 202 (a 503 or no answer after the broker had
    # taken it): not a loss and not a duplicate, as Jepsen's "recovered".
    recovered: int = 0
    # Messages in the dead-letter queues when the accounting ended (poison is meant to land there; an
    # outage never should).
    dead_lettered: int = 0
    # Records that belong to no submission of this run at all, and emails to clients other than
    # the verification link (nobody verified an address): must never happen.
    unexpected: int = 0
    notes: dict[str, Any] = field(default_factory=dict)
    # One row per submission: what the client was told, and what became of it.
    submissions: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        return (
            f"{self.fault}: submitted {self.submitted}, accepted {self.accepted}, refused {self.refused}; "
            f"recorded {self.recorded}, staff-emailed {self.staff_emailed}, client-emailed {self.client_emailed}; "
            f"lost {len(self.lost)}, duplicate records {self.duplicate_records}, "
            f"duplicate emails {self.duplicate_emails}, recovered {self.recovered}, unexpected {self.unexpected}, "
            f"dead-lettered {self.dead_lettered}" + (f"; {self.notes}" if self.notes else "")
        )

    def save(self) -> None:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{self.fault}.json").write_text(json.dumps(asdict(self), indent=2), encoding="utf-8")
        print("\n" + self.line())


class System:
    """The four services, their database and an SMTP inbox, in one RabbitMQ vhost.

    ``replicas`` (fifth, positional) runs more than one process of a service
    (``{"agreements": 3}``), each on its own HTTP port and log file (``agreements-1.log``...),
    all competing on the same queues; ``services[name]`` is the first of them.
    """

    def __init__(
        self,
        amqp_url: str,
        workdir: Path,
        smtp_port: int,
        inbox: Inbox,
        replicas: Mapping[str, int] | None = None,
        /,  # positional, so no setting passed as **settings can land in it
        **settings: str,
    ) -> None:
        self.amqp_url, self.inbox = amqp_url, inbox
        self.env_settings = dict(settings)
        self.vhost = amqp_url.rsplit("/", 1)[1]
        self.database = Database(workdir / "mongo")
        counts = {name: (replicas or {}).get(name, 1) for name in SERVICES}
        ports = {name: [free_port() for _ in range(counts[name])] for name in SERVICES}
        env = {
            **os.environ,
            "AMQP_URL": amqp_url, "MONGODB_URL": self.database.url, "MONGODB_DB": "faults",
            "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port), "STAFF_EMAILS": STAFF,
            "INTAKE_PORT": str(ports["intake"][0]), "AGREEMENTS_PORT": str(ports["agreements"][0]),
            "NOTIFICATIONS_PORT": str(ports["notifications"][0]), "RATE_LIMIT": "1000000/minute",
            "CASEWORK_PORT": str(ports["casework"][0]), "AGREEMENTS_URL": f"http://127.0.0.1:{ports['agreements'][0]}",
            "AGREEMENTS_API_TOKEN": CASEWORK_TOKEN, "STAFF_API_TOKENS": f"casework={CASEWORK_TOKEN}",
            "RETRY_BASE_SECONDS": "0.5", "RETRY_MAX_SECONDS": "2", "MAX_ATTEMPTS": "40",
            "SEND_LEASE_SECONDS": "10", "LOG_LEVEL": "INFO", "ENVIRONMENT": "test", "CAPTCHA": "off",
            **({"RABBITMQ_MANAGEMENT_URL": url} if (url := management_url()) else {}),
            **settings,
        }  # fmt: skip
        self.replicas = {
            name: [
                Service(
                    name,
                    port,
                    {**env, f"{name.upper()}_PORT": str(port)},
                    workdir,
                    label=name if counts[name] == 1 else f"{name}-{number}",
                )
                for number, port in enumerate(ports[name], start=1)
            ]
            for name in SERVICES
        }
        self.services = {name: group[0] for name, group in self.replicas.items()}
        self.intake_url = f"http://127.0.0.1:{ports['intake'][0]}"
        self.submissions: list[Submission] = []

    async def start(self) -> None:
        # The queues' limits as the services put them (they do too, where the management API answers).
        apply_queue_policies(self.vhost, int(self.env_settings.get("QUEUE_MAX_LENGTH", DEFAULT_MAX_LENGTH)))
        self.database.start()
        # All at once: each declares the whole topology, so none waits for another.
        await asyncio.gather(*(replica.start() for replicas in self.replicas.values() for replica in replicas))

    async def stop(self) -> None:
        for replicas in self.replicas.values():
            for service in replicas:
                if service.process is not None and service.process.returncode is None:
                    with contextlib.suppress(TimeoutError, ProcessLookupError):
                        await service.stop(signal.SIGKILL)
        self.database.stop()

    @contextlib.asynccontextmanager
    async def load(self, rate: float = 20.0) -> AsyncIterator[list[Submission]]:
        """Post applications at ``rate`` a second until the block ends; every outcome is kept."""
        stop = asyncio.Event()
        pending: set[asyncio.Task[None]] = set()

        async def post(http: httpx.AsyncClient, submission: Submission) -> None:
            body = submission_body(submission)
            submission.started = time.monotonic()
            try:
                response = await http.post(
                    "/v1/applications", json=body, headers={"Idempotency-Key": submission.client}
                )
                submission.status = response.status_code
                if response.status_code == 202:
                    submission.application_id = response.json()["application_id"]
            except httpx.HTTPError:
                submission.status = None
            submission.latency = time.monotonic() - submission.started

        async def drive() -> None:
            async with httpx.AsyncClient(base_url=self.intake_url, timeout=10) as http:
                start = time.monotonic()
                while not stop.is_set():
                    submission = Submission(len(self.submissions), f"client-{len(self.submissions):05d}@faults.example")
                    self.submissions.append(submission)
                    task = asyncio.create_task(post(http, submission))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    next_at = start + len(self.submissions) / rate
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(max(0.0, next_at - time.monotonic())):
                            await stop.wait()
                if pending:
                    await asyncio.gather(*pending)

        driver = asyncio.create_task(drive())
        try:
            yield self.submissions
        finally:
            stop.set()
            await driver

    async def accepted(self, count: int, timeout: float = 60) -> list[Submission]:
        """Wait (under load) until ``count`` submissions were answered 202; returns them."""
        async with asyncio.timeout(timeout):
            while len(accepted := [s for s in self.submissions if s.status == 202]) < count:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        return accepted

    async def queue_depths(self) -> dict[str, int]:
        listing = await rabbitmqctl("list_queues", "-p", self.vhost, "name", "messages")
        rows = [line.split("\t") for line in listing.splitlines()[1:] if line.strip()]
        return {name: int(count) for name, count in rows}

    async def dead_letters(self) -> int:
        """How many messages the dead-letter queues hold."""
        return sum(depth for name, depth in (await self.queue_depths()).items() if name.endswith(".dlq"))

    async def queues_empty(self) -> bool:
        return await queued_messages(self.vhost) == 0  # None (rabbitmqctl failed) is not empty

    async def account(self, fault: str, timeout: float = 120, **notes: Any) -> Accounting:
        """Wait until every accepted submission is settled and the queues are empty, then count."""
        mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(self.database.url, serverSelectionTimeoutMS=5000)
        try:
            deadline = time.monotonic() + timeout
            settled_once = False
            while True:
                accounting = await self._count(fault, mongo, notes)
                settled = not accounting.lost and await self.queues_empty()
                # RabbitMQ refreshes quorum queues' counts only now and then: settled means empty
                # twice, a refresh apart, so late copies (duplicates in the making) are counted too.
                if (settled and settled_once) or time.monotonic() > deadline:
                    accounting.dead_lettered = await self.dead_letters()
                    accounting.save()
                    return accounting
                settled_once = settled
                await asyncio.sleep(STATISTICS_INTERVAL_SECONDS if settled else 0.5)
        finally:
            await mongo.close()

    async def _count(self, fault: str, mongo: AsyncMongoClient[dict[str, Any]], notes: dict[str, Any]) -> Accounting:
        db = mongo["faults"]
        accepted = [s for s in self.submissions if s.status == 202]
        # Records are counted per submission (its client address), not per application_id: that
        # id has a unique index, so a second record of one submission would carry another id.
        records = Counter(
            [d["application"]["operator"]["email"] async for d in db["applications"].find({}, {"application": 1})]
        )
        links = Counter([d["application_id"] async for d in db["acceptance_ledger"].find({}, {"application_id": 1})])
        recorded_ids = {d["application_id"] async for d in db["applications"].find({}, {"application_id": 1})}
        to_clients = [m for m in self.inbox.messages if m["To"] and STAFF not in str(m["To"])]
        client_emails = Counter(str(m["To"].addresses[0].addr_spec) for m in to_clients if is_verification(m))
        # Anything else to a client (there should be nothing) shows up as unexpected, not as emailed.
        unexpected_client_emails = sum(1 for m in to_clients if not is_verification(m))
        staff_emails: Counter[str] = Counter()
        for message in self.inbox.to(STAFF):
            body = message.get_body(("plain",))
            found = _APPLICATION_ID.search(body.get_content() if body is not None else "")
            if found:
                staff_emails[found.group(0)] += 1
        lost = [
            s.application_id or ""
            for s in accepted
            if s.application_id not in recorded_ids
            or not staff_emails[s.application_id or ""]
            or not client_emails[s.client]
        ]
        clients = {s.client for s in self.submissions}
        rows = [
            {**asdict(s), "recorded": records[s.client], "staff_emails": staff_emails[s.application_id or ""],
             "client_emails": client_emails[s.client]}
            for s in self.submissions
        ]  # fmt: skip
        return Accounting(
            fault=fault,
            submitted=len(self.submissions),
            accepted=len(accepted),
            refused=len(self.submissions) - len(accepted),
            recorded=sum(1 for s in accepted if s.application_id in recorded_ids),
            staff_emailed=sum(1 for s in accepted if staff_emails[s.application_id or ""]),
            client_emailed=sum(1 for s in accepted if client_emails[s.client]),
            lost=lost,
            duplicate_records=sum(count - 1 for count in [*records.values(), *links.values()] if count > 1),
            duplicate_emails=sum(c - 1 for c in [*client_emails.values(), *staff_emails.values()] if c > 1),
            duplicated=[key for key, c in [*client_emails.items(), *staff_emails.items()] if c > 1],
            recovered=sum(1 for s in self.submissions if s.status != 202 and records[s.client]),
            unexpected=sum(count for client, count in records.items() if client not in clients)
            + unexpected_client_emails,
            notes=dict(notes),
            submissions=rows,
        )


# The ``make_system`` fixture of tests/faults: starts a System with some settings changed, stops it after the test.
MakeSystem = Callable[..., Awaitable[System]]
