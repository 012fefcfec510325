"""Real servers for the test suite: a RabbitMQ vhost per test, SecantusDB, and an SMTP inbox."""

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

import uvicorn
from aiosmtpd.smtp import SMTP, Envelope, Session

from agency_chassis.policies import Limits, policies
from agency_shared.topology import DEFAULT_MAX_LENGTH

RABBITMQ_HOST = os.environ.get("TEST_RABBITMQ_HOST", "localhost")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def uvicorn_serving(app: Callable[..., Any], lifespan: Literal["on", "off"]) -> AsyncIterator[str]:
    """Serve the ASGI ``app`` with uvicorn on 127.0.0.1 (the port the system picks), in this event loop, with or
    without its lifespan; yield its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan=lifespan))
    task = asyncio.create_task(server.serve())
    try:
        async with asyncio.timeout(30):
            while not server.started:
                if task.done():
                    task.result()
                await asyncio.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def rabbitmqctl(*args: str) -> str:
    """Run ``rabbitmqctl -q args`` and return what it printed."""
    return subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True, text=True, timeout=60).stdout


def set_queue_policy(
    vhost: str, name: str, pattern: str, definition: str, timeout: float = 30, priority: int = 0
) -> None:
    """Set a queue policy and return once RabbitMQ reports it applied (it applies asynchronously).

    Above the services' own policies (priority 10) only with a higher ``priority``.
    """
    import time

    rabbitmqctl(
        "set_policy", "-p", vhost, "--priority", str(priority), name, pattern, definition, "--apply-to", "queues"
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        listing = subprocess.run(
            ["rabbitmqctl", "-q", "list_queues", "-p", vhost, "name", "policy"],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        rows = [line.split("\t") for line in listing.splitlines()[1:]]
        applied = [row for row in rows if re.search(pattern, row[0])]  # the queue's name, as RabbitMQ matches it
        if applied and all(len(row) > 1 and row[1] == name for row in applied):
            return
        time.sleep(0.2)
    raise TimeoutError(f"policy {name} not applied to {pattern} in {vhost}")


# RabbitMQ's management HTTP API (`make test` enables the plugin): a vhost made or deleted in a few
# milliseconds, where each `rabbitmqctl` call boots an Erlang VM (about a second of CPU). Without
# the API the tests fall back to `rabbitmqctl`.
MANAGEMENT_API = os.environ.get("TEST_RABBITMQ_API", f"http://{RABBITMQ_HOST}:15672/api")
API_AUTHORIZATION = "Basic " + base64.b64encode(b"guest:guest").decode()
_api_answers: bool | None = None
# After the API failed to answer, how long this process uses `rabbitmqctl` before it asks the API again (a loaded
# broker's API may miss one call; every `rabbitmqctl` call costs a second of CPU, so not for the rest of the run).
API_RETRY_SECONDS = 30.0
_api_retry_at = 0.0


def management_api(method: str, path: str, body: dict[str, Any] | None = None) -> bool:
    """Call the management API; False if it does not answer (and for ``API_RETRY_SECONDS`` after)."""
    global _api_answers, _api_retry_at
    if _api_answers is False:
        if time.monotonic() < _api_retry_at:
            return False
        _api_answers = None  # ask again
    request = urllib.request.Request(  # noqa: S310 - a fixed local URL
        f"{MANAGEMENT_API}{path}",
        data=json.dumps(body).encode() if body is not None else None,
        method=method,
        headers={"Authorization": API_AUTHORIZATION, "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30):  # noqa: S310
            _api_answers = True
            return True
    except urllib.error.HTTPError:
        raise
    except (urllib.error.URLError, OSError):
        if _api_answers:
            raise
        _api_answers, _api_retry_at = False, time.monotonic() + API_RETRY_SECONDS
        return False


def api_available() -> bool:
    """Whether the management API answers (probed once, and again ``API_RETRY_SECONDS`` after it did not)."""
    if _api_answers is None or (_api_answers is False and time.monotonic() >= _api_retry_at):
        with contextlib.suppress(urllib.error.HTTPError):
            management_api("GET", "/overview")
    return bool(_api_answers)


def management_get(path: str) -> Any:
    """The JSON the management API answers for ``path``; None if it cannot (the broker is stopping, say)."""
    request = urllib.request.Request(  # noqa: S310 - a fixed local URL
        f"{MANAGEMENT_API}{path}", headers={"Authorization": API_AUTHORIZATION}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


MANAGEMENT_URL = MANAGEMENT_API.removesuffix("/api")


def management_url() -> str | None:
    """Where a service under test puts its queue policies (RABBITMQ_MANAGEMENT_URL); None without the API."""
    return MANAGEMENT_URL if api_available() else None


def apply_queue_policies(
    vhost: str, max_length: int = DEFAULT_MAX_LENGTH, dead_letter_retention_days: float = 30.0
) -> None:
    """The queues' policies (``agency_chassis.policies``) in ``vhost``, as a service puts them at start-up."""
    for rule in policies(Limits(max_length, dead_letter_retention_days)):
        path = f"/policies/{quote(vhost, safe='')}/{quote(rule.name, safe='')}"
        if not management_api("PUT", path, rule.body()):
            rabbitmqctl(
                "set_policy", "-p", vhost, "--priority", str(rule.priority), "--apply-to", rule.apply_to,
                rule.name, rule.pattern, json.dumps(rule.definition),
            )  # fmt: skip


# test-<pid of the test process>-<random>: a run that was killed leaves its vhosts (each with its quorum queues,
# a load on the broker); the next run deletes those whose process is gone.
ABANDONED_VHOST = re.compile(r"test-(?:(?P<pid>\d+)-)?[0-9a-f]{12}")


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_abandoned_vhosts() -> list[str]:
    """Delete the test vhosts of test processes that are gone (killed runs); the names deleted."""
    if RABBITMQ_HOST not in ("localhost", "127.0.0.1"):
        return []  # another machine's processes cannot be told apart from the dead
    listing = management_get("/vhosts")
    if listing is not None:
        names = [vhost["name"] for vhost in listing]
    else:
        try:
            names = rabbitmqctl("list_vhosts", "--no-table-headers", "name").split()
        except (subprocess.SubprocessError, OSError):
            return []
    abandoned = []
    for name in names:
        if (match := ABANDONED_VHOST.fullmatch(name)) and not (match["pid"] and process_alive(int(match["pid"]))):
            abandoned.append(name)
    for name in abandoned:
        if not management_api("DELETE", f"/vhosts/{quote(name, safe='')}"):
            rabbitmqctl("delete_vhost", name)
    return abandoned


@contextlib.contextmanager
def rabbitmq_vhost() -> Iterator[str]:
    """A fresh vhost on the local RabbitMQ, so every test sees an empty topology; deleted afterwards."""
    name = f"test-{os.getpid()}-{uuid.uuid4().hex[:12]}"
    if management_api("PUT", f"/vhosts/{name}", {}):
        try:
            management_api("PUT", f"/permissions/{name}/guest", {"configure": ".*", "write": ".*", "read": ".*"})
            apply_queue_policies(name)
            yield f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{name}"
        finally:
            management_api("DELETE", f"/vhosts/{name}")
        return
    rabbitmqctl("add_vhost", name)
    try:
        rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
        apply_queue_policies(name)
        yield f"amqp://guest:guest@{RABBITMQ_HOST}:5672/{name}"
    finally:
        rabbitmqctl("delete_vhost", name)


@contextlib.contextmanager
def secantus_server(storage: Path) -> Iterator[str]:
    """A SecantusDB (MongoDB wire protocol) server on a free port, with its data under ``storage``."""
    beside_python = Path(sys.executable).parent / "secantusd-py"
    executable = str(beside_python) if beside_python.exists() else shutil.which("secantusd-py")
    assert executable, "secantusd-py not found: run the tests through `make test`"
    port = free_port()
    process = subprocess.Popen(
        [
            executable,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--storage-path",
            str(storage),
            "--log-level",
            "WARNING",
            "--sync-on-commit",
            # A worker's server keeps every test's data. SecantusDB 1.x can deadlock once WiredTiger's cache is
            # full (a thread waiting for eviction holds the store's lock another needs to release its snapshot):
            # seen with the uploads' 100 MB at the default 1 GB and an oplog keeping all of it for an hour. Nothing
            # here reads the oplog (no change streams), so keep little of it, and give the cache room.
            "--cache-size",
            "4G",
            "--oplog-max-entries",
            "1000",
            "--oplog-retention-seconds",
            "60",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, timeout=30, process=process)
        yield f"mongodb://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def wait_for_port(port: int, timeout: float, process: subprocess.Popen[Any] | None = None) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def email_parts(raw: bytes) -> tuple[EmailMessage, str, str]:
    """The email as a reader parses the bytes the SMTP server got: the message, its plain text and its HTML."""
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None
    assert html is not None
    return message, plain.get_content(), html.get_content()


class Inbox:
    """An aiosmtpd handler that keeps every accepted message and lets tests await them."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.raw: list[bytes] = []  # the bytes as received, beside each message of ``messages``
        self.refusals: list[str] = []
        self._refuse_next = 0
        self._refusal = ""
        self._unknown_mailboxes: dict[str, str] = {}
        self.connections = 0
        self.arrivals: list[float] = []
        self._changed = asyncio.Condition()
        self._on_next_message: Callable[[], None] | None = None

    def refuse(self, count: int, reply: str) -> None:
        """Answer the next ``count`` messages with ``reply`` (e.g. "451 4.3.0 try later") instead of accepting."""
        self._refuse_next, self._refusal = count, reply

    def on_next_message(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the next message has been taken and before the server answers ``250``:
        whatever it breaks, breaks just as the client learns its message was accepted."""
        self._on_next_message = callback

    def reject_mailbox(self, address: str, reply: str = "550 5.1.1 No such user") -> None:
        """Refuse ``address`` as a recipient (at RCPT), as a server does for a mailbox that does not exist."""
        self._unknown_mailboxes[address.lower()] = reply

    def accept_mailbox(self, address: str) -> None:
        self._unknown_mailboxes.pop(address.lower(), None)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self._unknown_mailboxes.get(address.lower())
        if reply is not None:
            async with self._changed:
                self.refusals.append(reply)
                self._changed.notify_all()
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self._refuse_next > 0:
            self._refuse_next -= 1
            async with self._changed:
                self.refusals.append(self._refusal)
                self._changed.notify_all()
            return self._refusal
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        message["X-Envelope-To"] = ", ".join(envelope.rcpt_tos)
        async with self._changed:
            self.arrivals.append(asyncio.get_running_loop().time())
            self.messages.append(message)
            self.raw.append(content)
            self._changed.notify_all()
        if self._on_next_message is not None:
            callback, self._on_next_message = self._on_next_message, None
            callback()
        return "250 Message accepted for delivery"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.messages if address in m["X-Envelope-To"]]

    async def wait_for(
        self, predicate: Callable[[list[EmailMessage]], bool], timeout: float = 30
    ) -> list[EmailMessage]:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: predicate(self.messages))
        return self.messages

    async def wait_for_refusals(self, count: int, timeout: float = 15) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: len(self.refusals) >= count)


@contextlib.asynccontextmanager
async def smtp_server(inbox: Inbox, port: int | None = None, smtputf8: bool = True) -> AsyncIterator[int]:
    """An aiosmtpd SMTP server on the running event loop, delivering into ``inbox``.

    On exit it also drops the connections it accepted, as a server that goes away does
    (asyncio's ``Server.close`` leaves them open before Python 3.12).
    """
    loop = asyncio.get_running_loop()
    port = port or free_port()
    sessions: list[SMTP] = []

    def session() -> SMTP:
        sessions.append(SMTP(inbox, hostname="localhost", enable_SMTPUTF8=smtputf8))
        return sessions[-1]

    server = await loop.create_server(session, "127.0.0.1", port)
    try:
        yield port
    finally:
        server.close()
        for smtp in sessions:
            if smtp.transport is not None:
                smtp.transport.close()
        await server.wait_closed()


class FreezableRelay:
    """A TCP relay in front of a server that a test can freeze: what the server sends stops arriving.

    Frozen, the connection stays open and the client's bytes still go through, so to the
    client the server looks alive but silent (a broker that never confirms a publish).
    """

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._tasks: set[asyncio.Task[None]] = set()

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[int]:
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        try:
            yield server.sockets[0].getsockname()[1]
        finally:
            self.thaw()
            server.close()
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(*self._target)
        for task in (
            asyncio.create_task(self._pump(client_reader, server_writer, gated=False)),
            asyncio.create_task(self._pump(server_reader, client_writer, gated=True)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gated: bool) -> None:
        try:
            while data := await reader.read(65536):
                if gated:
                    await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
