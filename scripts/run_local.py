"""Run the whole system on this machine (``make run``): RabbitMQ check, SecantusDB and a mail sink unless named
elsewhere (``MONGODB_URL``, ``SMTP_HOST``), four services."""

import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Child:
    name: str
    process: "subprocess.Popen[bytes]"


def log(message: str) -> None:
    print(f"[run] {message}", flush=True)


def port_open(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {timeout:.0f}s")
        time.sleep(0.2)


AMQP_PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
BROKER_TOOL_SECONDS = 120  # a rabbitmqctl / rabbitmq-plugins call against a node in a bad state can wait for ever


HANDSHAKE_ATTEMPTS = 3


def amqp_answers(host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether the broker begins the AMQP handshake: an open port alone can be a broker that has stopped answering."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(AMQP_PROTOCOL_HEADER)
            frame = b""
            while len(frame) < 7:  # the frame header of connection.start: type 1 (method), channel 0, size
                if not (chunk := sock.recv(7 - len(frame))):
                    return False
                frame += chunk
            return frame[0] == 1 and frame[1:3] == b"\x00\x00"
    except OSError:
        return False


def broker_tool(*command: str) -> int:
    """Run rabbitmqctl / rabbitmq-plugins, bounded in time; its exit code (124 when it timed out or could not run)."""
    ran = run_broker_tool(command, BROKER_TOOL_SECONDS)
    return 124 if ran is None else ran.returncode


def run_broker_tool(command: Sequence[str], seconds: float) -> "subprocess.CompletedProcess[str] | None":
    """``command`` run to its end within ``seconds`` (its output kept), or None, said in a line, if it was not."""
    try:
        return subprocess.run(command, check=False, capture_output=True, text=True, timeout=seconds)
    except subprocess.TimeoutExpired:
        log(f"`{' '.join(command)}` did not finish in {seconds:.0f}s")
    except OSError as exc:
        log(f"`{command[0]}` could not run: {exc}")
    return None


def ensure_rabbitmq(amqp_url: str) -> None:
    """A broker that answers AMQP at ``amqp_url``; a local one that is down, stopped or wedged is (re)started."""
    parts = urlsplit(amqp_url)
    host, port = parts.hostname or "localhost", parts.port or 5672
    # A broker on a busy machine may take a while to answer: asked three times before it is taken for wedged.
    if any(amqp_answers(host, port) for _ in range(HANDSHAKE_ATTEMPTS)):
        return
    what_to_do = (
        "Install it (Debian: apt-get install rabbitmq-server, then rabbitmq-server -detached), "
        "point AMQP_URL at a running broker, or run `docker compose up`."
    )
    if host not in ("localhost", "127.0.0.1") or not shutil.which("rabbitmq-server"):
        sys.exit(f"RabbitMQ is not reachable at {host}:{port}. {what_to_do}")
    try:
        if port_open(host, port):
            # It accepts connections and says nothing (seen after a run was killed mid-restart): stop it first.
            log(f"RabbitMQ at {host}:{port} accepts connections but does not answer AMQP; restarting it")
            broker_tool("rabbitmqctl", "-q", "stop")
            try:
                wait_until(lambda: not port_open(host, port), 30, "RabbitMQ's stop")
            except TimeoutError:
                sys.exit(f"RabbitMQ at {host}:{port} does not answer AMQP and did not stop; restart it by hand.")
        elif broker_tool("rabbitmqctl", "-q", "start_app") == 0:
            # The node was running with its application stopped (`rabbitmqctl stop_app`, a fault test cut short).
            log("RabbitMQ's node was running with the broker stopped; started it with `rabbitmqctl start_app`")
            wait_until(lambda: amqp_answers(host, port), 90, "RabbitMQ")
            return
        log("RabbitMQ is not running; starting it with `rabbitmq-server -detached`")
        started = subprocess.run(["rabbitmq-server", "-detached"], check=False)
        if started.returncode != 0:
            raise TimeoutError(f"`rabbitmq-server -detached` failed with exit code {started.returncode}")
        wait_until(lambda: amqp_answers(host, port), 90, "RabbitMQ")
    except TimeoutError as problem:
        sys.exit(f"RabbitMQ could not be started at {host}:{port} ({problem}). {what_to_do}")


# RabbitMQ 3.x counts each quorum queue as 3 open files in its file handle cache, and each new connection must
# obtain one more from the same count, whose limit follows the open-files limit the node started with (927 under
# the usual 1024). Once the queues fill it, every new AMQP connection waits, with nothing in the broker's log,
# until queues are deleted, and a test run keeps up to three vhosts of the services' quorum queues (README,
# Tests). This lifts the count, not the open-files limit (raising that takes a restart outside `su`'s PAM
# limits): the node keeps its 1,024 descriptors, of which a test run opens about 50; were they all used,
# connections and queue files would fail with `emfile` in its log instead of waiting. The count holds until the
# node or its app restarts (the fault tests restart the app; `make pytest` asks again). 4.x is left alone.
FILE_HANDLES_NEEDED = 8192
COUNT_IF_3X = 'case rabbit_misc:version() of "3." ++ _ -> file_handle_cache:get_limit(); _ -> none end.'
BROKER_EVAL_SECONDS = 30


def broker_eval(expression: str) -> str | None:
    """What the local node answers to ``rabbitmqctl eval``; None, said in a line, if it did not answer."""
    asked = run_broker_tool(["rabbitmqctl", "-q", "eval", expression], BROKER_EVAL_SECONDS)
    if asked is None:
        return None
    if asked.returncode != 0:
        said = (asked.stderr or asked.stdout).strip().splitlines()
        log(f"`rabbitmqctl eval {expression}` failed (exit code {asked.returncode}): {said[0] if said else ''}")
        return None
    return asked.stdout.strip()


def room_for_queues(amqp_url: str) -> None:
    """A local RabbitMQ 3.x counting fewer than ``FILE_HANDLES_NEEDED`` open files is told to count that many."""
    local = (urlsplit(amqp_url).hostname or "localhost") in ("localhost", "127.0.0.1")
    if not local or not shutil.which("rabbitmqctl"):
        return
    limit = broker_eval(COUNT_IF_3X)
    if limit is None or limit == "none":
        return
    if not re.fullmatch(r"[0-9]+", limit):
        log(f"RabbitMQ answered {limit!r} when asked how many open files it counts; left as it is")
        return
    if int(limit) >= FILE_HANDLES_NEEDED:
        return
    if broker_eval(f"file_handle_cache:set_limit({FILE_HANDLES_NEEDED}).") != "ok":
        log(f"RabbitMQ counts at most {limit} open files and did not take more: a test run may stall (README)")
        return
    log(
        f"RabbitMQ counted at most {limit} open files, 3 for each quorum queue, and new connections wait once the "
        f"queues fill that: it counts {FILE_HANDLES_NEEDED} now, until the node or its app restarts"
    )


def local_management_api(amqp_url: str) -> str | None:
    """The local broker's management API (the plugin enabled if need be), or None if it does not answer."""
    host = urlsplit(amqp_url).hostname or "localhost"
    if host not in ("localhost", "127.0.0.1"):
        return None
    if not port_open(host, 15672) and shutil.which("rabbitmq-plugins"):
        log("enabling RabbitMQ's management plugin (the queues' policies are set through it)")
        broker_tool("rabbitmq-plugins", "-q", "enable", "rabbitmq_management")
    try:
        wait_until(lambda: port_open(host, 15672), 30, "RabbitMQ's management API")
    except TimeoutError:
        log("RabbitMQ's management API does not answer: the queues run without their limits (see README, policies)")
        return None
    return f"http://{host}:15672"


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - a fixed local URL
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def main() -> int:
    env = dict(os.environ)
    if sys.argv[1:] == ["--check-broker"]:
        amqp_url = env.get("AMQP_URL", "amqp://guest:guest@localhost:5672/")
        ensure_rabbitmq(amqp_url)
        room_for_queues(amqp_url)  # a test run keeps up to three vhosts of quorum queues at once
        # The tests make and delete a vhost each through the management API (milliseconds; each rabbitmqctl call
        # boots an Erlang VM); without it they fall back to rabbitmqctl.
        local_management_api(amqp_url)
        return 0
    var = Path(env.get("VAR_DIR", ROOT / "var"))
    # Development rules: the local defaults and placeholders below are accepted (the default is production).
    env.setdefault("ENVIRONMENT", "local")
    amqp_url = env.setdefault("AMQP_URL", "amqp://guest:guest@localhost:5672/")
    env.setdefault("STAFF_EMAILS", "staff@localhost")
    env.setdefault("STAFF_API_TOKEN", "local-development-token")
    ports = {
        "intake": int(env.get("INTAKE_PORT", "8000")),
        "agreements": int(env.get("AGREEMENTS_PORT", "8001")),
        "notifications": int(env.get("NOTIFICATIONS_PORT", "8002")),
        "casework": int(env.get("CASEWORK_PORT", "8003")),
    }
    env.setdefault("STATUS_BASE_URL", f"http://127.0.0.1:{ports['agreements']}")
    # Verification links in the emails open the intake this run serves.
    env.setdefault("INTAKE_BASE_URL", f"http://127.0.0.1:{ports['intake']}")
    # casework's console over plain HTTP on this machine (so no Secure cookies), its first admin (casework prints
    # the password it generates once), and agreements' staff API with a token made for this run, known to both.
    env.setdefault("CONSOLE_URL", f"http://127.0.0.1:{ports['casework']}")
    env.setdefault("SESSION_COOKIE_SECURE", "false")
    env.setdefault("CONSOLE_ADMIN_EMAIL", "admin@localhost")
    env.setdefault("AGREEMENTS_URL", f"http://127.0.0.1:{ports['agreements']}")
    casework_token = env.setdefault("AGREEMENTS_API_TOKEN", secrets.token_urlsafe(32))
    env.setdefault("STAFF_API_TOKENS", f"casework={casework_token}")
    children: list[Child] = []

    def start(name: str, *command: str) -> None:
        children.append(Child(name, subprocess.Popen(command, env=env, cwd=ROOT)))

    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        ensure_rabbitmq(amqp_url)
        if "RABBITMQ_MANAGEMENT_URL" not in env and (api := local_management_api(amqp_url)):
            env["RABBITMQ_MANAGEMENT_URL"] = api  # the services put the queues' policies there
        if "MONGODB_URL" not in env:
            mongo_port = int(env.get("LOCAL_MONGO_PORT", "27017"))
            (var / "mongo").mkdir(parents=True, exist_ok=True)
            start(
                "secantusdb",
                str(BIN / "secantusd-py"), "--host", "127.0.0.1", "--port", str(mongo_port),
                "--storage-path", str(var / "mongo"), "--log-level", "WARNING", "--sync-on-commit",
                # Room in the cache and a short oplog (nothing reads it): SecantusDB can deadlock on a full cache.
                "--cache-size", "4G", "--oplog-max-entries", "10000",
            )  # fmt: skip
            env["MONGODB_URL"] = f"mongodb://127.0.0.1:{mongo_port}"
            wait_until(lambda: port_open("127.0.0.1", mongo_port), 60, "SecantusDB")
        # Like the database: a named SMTP server (a real one, a test server) is used as it is.
        if "SMTP_HOST" not in env:
            smtp_port = int(env.setdefault("SMTP_PORT", "1025"))
            start("mail-sink", sys.executable, str(ROOT / "scripts" / "mail_sink.py"), "--port", str(smtp_port),
                  "--dir", str(var / "mail"))  # fmt: skip
            wait_until(lambda: port_open("127.0.0.1", smtp_port), 30, "mail sink")
            emails = f"{var / 'mail'}/*.eml"
        else:
            emails = f"sent to {env['SMTP_HOST']}:{env.get('SMTP_PORT', '1025')}"
        for service in ports:
            start(service, sys.executable, "-m", service)

        def exited() -> Child | None:
            return next((c for c in children if c.process.poll() is not None), None)

        def answers_ready(port: int) -> Callable[[], bool]:
            # A service that exits while starting (a missing setting, an import error) ends the wait at once.
            return lambda: stopping or exited() is not None or ready(f"http://127.0.0.1:{port}/readyz")

        for service, port in ports.items():
            wait_until(answers_ready(port), 60, service)
        if not stopping and exited() is None:
            log("all services ready")
            log(f"intake:        http://127.0.0.1:{ports['intake']}  (POST /v1/applications, docs at /docs)")
            log(f"agreements:    http://127.0.0.1:{ports['agreements']}/readyz")
            log(f"notifications: http://127.0.0.1:{ports['notifications']}/readyz")
            admin = env["CONSOLE_ADMIN_EMAIL"]
            log(f"casework:      http://127.0.0.1:{ports['casework']}/console  (staff console; admin {admin})")
            log(f"database:      {env['MONGODB_URL']}   emails: {emails}")
            log("Ctrl-C stops everything")
        while not stopping:
            if (child := exited()) is not None:
                log(f"{child.name} exited with {child.process.returncode}; stopping everything")
                return 1
            time.sleep(0.3)
        return 0
    except TimeoutError as exc:
        log(str(exc))
        return 1
    finally:
        shutdown(children)


def shutdown(children: list[Child]) -> None:
    # Services first (they finish in-flight messages), the servers they use last.
    for child in reversed(children):
        if child.process.poll() is None:
            child.process.terminate()
            try:
                child.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                log(f"{child.name} did not stop in time; killing it")
                child.process.kill()
                child.process.wait()
    log("stopped")


if __name__ == "__main__":
    sys.exit(main())
