"""`make run`'s runner as a new user starts it: separate processes, real ports, emails as .eml files."""

import asyncio
import os
import shlex
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path

import httpx
from pymongo import AsyncMongoClient

from tests.support.data import application
from tests.support.servers import Inbox, free_port, port_open
from tests.support.verification import is_verification, link_in

ROOT = Path(__file__).resolve().parents[2]


async def read_until(stream: asyncio.StreamReader, marker: str, seen: list[str]) -> None:
    while True:
        line = await stream.readline()
        if not line:
            raise AssertionError("runner exited before: " + marker + "\n" + "".join(seen[-40:]))
        seen.append(line.decode(errors="replace"))
        if marker in seen[-1]:
            return


@dataclass
class Run:
    """What the runner printed: before it was asked to stop (``output``), and all of it with its exit code."""

    output: list[str] = field(default_factory=list)
    log: str = ""
    code: int | None = None


@asynccontextmanager
async def running_locally(env: dict[str, str]) -> AsyncIterator[Run]:
    """``scripts/run_local.py`` as ``make run`` starts it, once ready; on exit SIGTERM, then its log and code."""
    runner = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "run_local.py"), env=env, cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert runner.stdout is not None
    run = Run()
    try:
        async with asyncio.timeout(90):
            await read_until(runner.stdout, "all services ready", run.output)
        yield run
    finally:
        if runner.returncode is None:
            runner.send_signal(signal.SIGTERM)
        async with asyncio.timeout(60):
            rest = (await runner.stdout.read()).decode(errors="replace")
            run.code = await runner.wait()
        run.log = "".join(run.output) + rest


async def submit(intake_port: int) -> str:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{intake_port}") as http:
        response = await http.post("/v1/applications", json=application())
    assert response.status_code == 202, response.text
    return str(response.json()["application_id"])


async def test_the_runner_starts_everything_serves_a_submission_and_stops_cleanly(
    amqp_url: str, tmp_path: Path
) -> None:
    ports = {
        name: free_port()
        for name in (
            "INTAKE_PORT", "AGREEMENTS_PORT", "NOTIFICATIONS_PORT", "CASEWORK_PORT", "SMTP_PORT", "LOCAL_MONGO_PORT"
        )
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k not in ("MONGODB_URL", "SMTP_HOST")}
    env.update({k: str(v) for k, v in ports.items()})
    # CAPTCHA off: the API post carries no solution, and an unchecked submission reaches the staff only once
    # its address is verified (tests/e2e/test_held_submissions.py); this test is about the runner.
    env.update(
        {"AMQP_URL": amqp_url, "VAR_DIR": str(tmp_path), "STAFF_EMAILS": "staff@agency.example", "CAPTCHA": "off"}
    )
    # casework's token for agreements' staff API, named here so the test can present it (the runner makes one up).
    env["AGREEMENTS_API_TOKEN"] = casework_token = f"casework-{uuid.uuid4().hex}"
    async with running_locally(env) as run:
        application_id = await submit(ports["INTAKE_PORT"])
        mail = tmp_path / "mail"
        async with asyncio.timeout(30):
            # Another process writes the files; there is nothing to await but the folder itself.
            while len(list(mail.glob("*.eml"))) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        emails = [message_from_bytes(p.read_bytes(), policy=policy.default) for p in sorted(mail.glob("*.eml"))]
        # The applicant's is the verification link, to the bare address, pointing at the intake this run serves.
        assert sorted(str(m["To"]) for m in emails) == ["li.wei@mapletea.example", "staff@agency.example"]
        [verification] = [m for m in emails if is_verification(m)]
        assert link_in(verification).startswith(f"http://127.0.0.1:{ports['INTAKE_PORT']}/verify/")

        mongo: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
            f"mongodb://127.0.0.1:{ports['LOCAL_MONGO_PORT']}"
        )
        try:
            record = await mongo["wechat_agency"]["applications"].find_one({"application_id": application_id})
        finally:
            await mongo.close()
        assert record is not None
        assert (tmp_path / "mongo").is_dir()
        # casework's console is served too, on its own port, ready with the same broker and database.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['CASEWORK_PORT']}") as http:
            assert (await http.get("/readyz")).status_code == 200
        # agreements accepts casework's token (STAFF_API_TOKENS=casework=<it>) and nothing else.
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['AGREEMENTS_PORT']}") as http:
            staff = await http.get("/v1/staff/applications", headers={"Authorization": f"Bearer {casework_token}"})
            refused = await http.get("/v1/staff/applications", headers={"Authorization": "Bearer not-the-token"})
        assert staff.status_code == 200, staff.text
        assert refused.status_code == 401
    assert run.code == 0, run.log
    assert "[run] stopped" in run.log
    assert f"casework:      http://127.0.0.1:{ports['CASEWORK_PORT']}/console" in run.log


async def test_the_runner_uses_the_named_smtp_server_and_database_instead_of_starting_its_own(
    amqp_url: str, mongo_url: str, smtp_port: int, inbox: Inbox, tmp_path: Path
) -> None:
    ports = {name: free_port() for name in ("INTAKE_PORT", "AGREEMENTS_PORT", "NOTIFICATIONS_PORT", "CASEWORK_PORT")}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}}
    env.update({
        "AMQP_URL": amqp_url, "VAR_DIR": str(tmp_path), "STAFF_EMAILS": "staff@agency.example", "CAPTCHA": "off",
        "MONGODB_URL": mongo_url, "MONGODB_DB": f"run_local_{uuid.uuid4().hex[:8]}",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp_port),
    })  # fmt: skip
    async with running_locally(env) as run:
        await submit(ports["INTAKE_PORT"])
        # The emails reach the SMTP server named, as that server received them.
        await inbox.wait_for(lambda _: bool(inbox.to("li.wei@mapletea.example") and inbox.to("staff@agency.example")))
    assert run.code == 0, run.log
    [verification] = inbox.to("li.wei@mapletea.example")
    assert str(verification["To"]) == "li.wei@mapletea.example"
    assert f"emails: sent to 127.0.0.1:{smtp_port}" in run.log
    assert not (tmp_path / "mail").exists()  # no mail sink ran
    assert not (tmp_path / "mongo").exists()  # nor a database


async def test_the_runner_says_what_to_do_when_rabbitmq_is_unreachable(tmp_path: Path) -> None:
    # A remote broker that does not answer: nothing to start here, so the runner must say what to do.
    env = {**os.environ, "AMQP_URL": f"amqp://guest:guest@127.0.0.2:{free_port()}/"}
    remote = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "run_local.py"), "--check-broker",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, remote_err = await asyncio.wait_for(remote.communicate(), timeout=30)
    # A local broker whose start fails (a `rabbitmq-server` on PATH that cannot start): say so at once, not after 90 s.
    failing = tmp_path / "bin" / "rabbitmq-server"
    failing.parent.mkdir()
    failing.write_text("#!/bin/sh\necho 'ERROR: node with name rabbit already running' >&2\nexit 69\n")
    failing.chmod(0o755)
    no_node = tmp_path / "bin" / "rabbitmqctl"  # no node runs there, so `start_app` cannot help
    no_node.write_text("#!/bin/sh\necho 'Error: unable to perform an operation on node' >&2\nexit 69\n")
    no_node.chmod(0o755)
    env = {
        **os.environ,
        "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{free_port()}/",
        "PATH": f"{failing.parent}:{os.environ['PATH']}",
    }
    local = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "scripts" / "run_local.py"), "--check-broker",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, local_err = await asyncio.wait_for(local.communicate(), timeout=30)
    assert remote.returncode == 1
    assert "RabbitMQ is not reachable at 127.0.0.2" in remote_err.decode()
    assert local.returncode == 1
    assert "exit code 69" in local_err.decode()
    for err in (remote_err.decode(), local_err.decode()):
        assert "apt-get install rabbitmq-server" in err
        assert "docker compose up" in err


# A broker that accepts connections and never answers, as RabbitMQ did after a run was killed while restarting it.
WEDGED_BROKER = """
import socket, sys, time
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
held = []
while True:
    held.append(server.accept()[0])
"""
# What a started RabbitMQ does first: answer the AMQP protocol header with a connection.start method frame.
ANSWERING_BROKER = """
import socket, sys
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    connection = server.accept()[0]
    if connection.recv(8) == b"AMQP\\x00\\x00\\x09\\x01":
        connection.sendall(bytes([1, 0, 0, 0, 0, 0, 4, 0, 10, 0, 10, 0xCE]))
    connection.close()
"""


async def test_the_runner_restarts_a_local_rabbitmq_that_accepts_connections_but_does_not_answer(
    tmp_path: Path,
) -> None:
    port = free_port()
    wedged = await asyncio.create_subprocess_exec(sys.executable, "-c", WEDGED_BROKER, str(port))
    answering_pid = tmp_path / "answering.pid"
    calls = tmp_path / "calls"
    tools = tmp_path / "bin"
    tools.mkdir()
    # rabbitmqctl stops the wedged node as the real one would; rabbitmq-server starts one that answers.
    (tools / "rabbitmqctl").write_text(
        f'#!/bin/sh\necho "rabbitmqctl $*" >> {calls}\n[ "$2" = stop ] && kill {wedged.pid}\nexit 0\n'
    )
    (tools / "rabbitmq-server").write_text(
        f'#!/bin/sh\necho "rabbitmq-server $*" >> {calls}\n'
        f"{sys.executable} -c '{ANSWERING_BROKER}' {port} >/dev/null 2>&1 &\necho $! > {answering_pid}\n"
    )
    for tool in tools.iterdir():
        tool.chmod(0o755)
    try:
        # Three handshakes of 10 s before it restarts.
        code, out = await check_broker(port, f"{tools}:{os.environ['PATH']}")
    finally:
        if wedged.returncode is None:
            wedged.kill()
        await wedged.wait()
        if answering_pid.exists():
            os.kill(int(answering_pid.read_text()), signal.SIGKILL)
    assert code == 0, out
    assert "accepts connections but does not answer AMQP; restarting it" in out
    # Then it asks the new broker how many open files it counts (this stand-in does not say, so nothing more).
    assert calls.read_text().splitlines() == ["rabbitmqctl -q stop", "rabbitmq-server -detached", LIMIT_ASKED]


LIMIT_ASKED = (
    'rabbitmqctl -q eval case rabbit_misc:version() of "3." ++ _ -> file_handle_cache:get_limit(); _ -> none end.'
)
LIMIT_SET = "rabbitmqctl -q eval file_handle_cache:set_limit(8192)."


@dataclass
class StandInBroker:
    """A broker that answers the AMQP handshake, with stand-ins for ``rabbitmqctl`` and ``rabbitmq-plugins`` on PATH.

    Asked for its count of open files, the ``rabbitmqctl`` stand-in prints what the file ``answer`` holds
    (``none`` for a 4.x node), or fails as a non-root user's call does on Debian where the file ``not-root``
    exists; ``…set_limit(N).`` writes N to ``answer`` and prints ``ok``, unless the file ``refuse`` exists.
    Every call is written to ``calls``.
    """

    folder: Path
    port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        tools = self.folder / "bin"
        tools.mkdir(parents=True)
        calls, answer = shlex.quote(str(self.calls)), shlex.quote(str(self.answer))
        not_root, refuse = (shlex.quote(str(self.folder / name)) for name in ("not-root", "refuse"))
        (tools / "rabbitmqctl").write_text(
            f'#!/bin/sh\necho "rabbitmqctl $*" >> {calls}\n'
            f"[ -f {not_root} ] && {{ echo 'Only root or rabbitmq should run rabbitmqctl' >&2; exit 1; }}\n"
            'case "$3" in\n'
            f"  *set_limit*) [ -f {refuse} ] && exit 2\n"
            f'    echo "$3" | tr -dc 0-9 > {answer}; echo ok ;;\n'
            f"  *get_limit*) cat {answer} ;;\n"
            "esac\nexit 0\n"
        )
        # Were the management API's port closed, the check would enable the plugin: not on this machine's broker.
        (tools / "rabbitmq-plugins").write_text("#!/bin/sh\nexit 0\n")
        for tool in tools.iterdir():
            tool.chmod(0o755)
        self.path = f"{tools}:{os.environ['PATH']}"

    @property
    def calls(self) -> Path:
        return self.folder / "calls"

    @property
    def answer(self) -> Path:
        return self.folder / "answer"

    async def check_broker(self) -> tuple[int, str]:
        """``run_local.py --check-broker`` against this broker, started for it: the code and output."""
        answering = await asyncio.create_subprocess_exec(sys.executable, "-c", ANSWERING_BROKER, str(self.port))
        try:
            return await check_broker(self.port, self.path)
        finally:
            answering.kill()
            await answering.wait()


async def check_broker(port: int, path: str) -> tuple[int, str]:
    """``run_local.py --check-broker`` (what ``make test`` runs first) with a broker on ``port`` and ``path`` as PATH,
    once that port takes connections: its exit code and output."""
    env = {**os.environ, "AMQP_URL": f"amqp://guest:guest@127.0.0.1:{port}/", "PATH": path}
    async with asyncio.timeout(120):
        while not port_open("127.0.0.1", port):  # noqa: ASYNC110 - a child process's port
            await asyncio.sleep(0.05)
        runner = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "scripts" / "run_local.py"), "--check-broker",
            env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await runner.communicate()
    assert runner.returncode is not None
    return runner.returncode, out.decode()


async def test_a_local_rabbitmq_3_that_counts_too_few_open_files_is_told_to_count_more(tmp_path: Path) -> None:
    # RabbitMQ 3.x started with the usual 1024 open files counts 927, 3 for each quorum queue: a test run's
    # queues fill that, and then every new connection waits. The tests need it to count 8192.
    broker = StandInBroker(tmp_path)
    broker.answer.write_text("927\n")
    code, out = await broker.check_broker()
    assert code == 0, out
    assert "RabbitMQ counted at most 927 open files, 3 for each quorum queue" in out
    assert "it counts 8192 now, until the node or its app restarts" in out
    assert broker.calls.read_text().splitlines() == [LIMIT_ASKED, LIMIT_SET]
    assert broker.answer.read_text() == "8192"


async def test_a_rabbitmq_that_does_not_answer_or_refuses_is_named_and_the_check_goes_on(tmp_path: Path) -> None:
    refusing, not_root, odd = (StandInBroker(tmp_path / name) for name in ("refusing", "not-root", "odd"))
    refusing.answer.write_text("927\n")
    (refusing.folder / "refuse").touch()
    (not_root.folder / "not-root").touch()
    odd.answer.write_text("infinity\n")
    said = {}
    for broker in (refusing, not_root, odd):
        code, said[broker.folder.name] = await broker.check_broker()
        assert code == 0, said[broker.folder.name]  # the broker answers AMQP: the tests run (and may stall)
    assert "RabbitMQ counts at most 927 open files and did not take more: a test run may stall" in said["refusing"]
    assert refusing.calls.read_text().splitlines() == [LIMIT_ASKED, LIMIT_SET]
    assert "failed (exit code 1): Only root or rabbitmq should run rabbitmqctl" in said["not-root"]
    assert not_root.calls.read_text().splitlines() == [LIMIT_ASKED]
    assert "RabbitMQ answered 'infinity' when asked how many open files it counts; left as it is" in said["odd"]
    assert odd.calls.read_text().splitlines() == [LIMIT_ASKED]


async def test_a_local_rabbitmq_with_room_for_the_queues_or_not_3x_is_left_as_it_is(tmp_path: Path) -> None:
    roomy, newer = StandInBroker(tmp_path / "roomy"), StandInBroker(tmp_path / "newer")
    roomy.answer.write_text("65439\n")  # started with room
    newer.answer.write_text("none\n")  # what a 4.x node answers
    for broker in (roomy, newer):
        code, out = await broker.check_broker()
        assert code == 0, out
        assert "open files" not in out
        assert broker.calls.read_text().splitlines() == [LIMIT_ASKED]
    assert roomy.answer.read_text() == "65439\n"
