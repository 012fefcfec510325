"""CoalescedWrites: what is written in one turn of the event loop leaves as one write; and uvicorn's protocol on it."""

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from agency_chassis.coalescing import FLUSH_BYTES, HTTP_PROTOCOL, CoalescedWrites, CoalescingHttpProtocol
from tests.support.coalescing import count_flushes


class RecordingWriter:
    """A StreamWriter's surface, recording what reaches the socket."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.events: list[str] = []
        self.closing = False
        self.transport = object()

    def write(self, data: bytes) -> None:
        self.sent.append(data)

    async def drain(self) -> None:
        self.events.append(f"drain after {len(self.sent)}")

    def write_eof(self) -> None:
        self.events.append(f"eof after {len(self.sent)}")

    def close(self) -> None:
        self.events.append(f"close after {len(self.sent)}")
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing


async def next_turn() -> None:
    await asyncio.sleep(0)
    await asyncio.sleep(0)


def coalesced() -> tuple[CoalescedWrites, RecordingWriter]:
    inner = RecordingWriter()
    return CoalescedWrites(inner), inner


async def test_writes_of_one_turn_leave_as_one_in_order() -> None:
    writes, inner = coalesced()
    writes.write(b"a")
    writes.writelines([b"b", b"c"])
    assert inner.sent == []  # kept until the loop's next turn
    await next_turn()
    assert inner.sent == [b"abc"]
    writes.write(b"d")
    await next_turn()
    assert inner.sent == [b"abc", b"d"]


async def test_drain_sends_what_is_kept_before_waiting() -> None:
    writes, inner = coalesced()
    writes.write(b"handshake")
    await writes.drain()
    assert (inner.sent, inner.events) == ([b"handshake"], ["drain after 1"])
    await next_turn()
    assert inner.sent == [b"handshake"]  # the scheduled flush finds nothing left


@pytest.mark.parametrize("ending", ["close", "write_eof"])
async def test_closing_sends_what_is_kept_first(ending: str) -> None:
    writes, inner = coalesced()
    writes.write(b"Connection.Close")
    getattr(writes, ending)()
    assert inner.sent == [b"Connection.Close"]
    assert inner.events == [f"{'close' if ending == 'close' else 'eof'} after 1"]


async def test_nothing_is_written_to_a_closing_connection() -> None:
    writes, inner = coalesced()
    writes.write(b"late frame")
    inner.closing = True  # the socket went away before the turn ended: its confirms fail with the connection
    await next_turn()
    assert inner.sent == []
    writes.write(b"next")  # kept frames are dropped, not sent later
    inner.closing = False
    await next_turn()
    assert inner.sent == [b"next"]


async def test_everything_else_is_the_writers_own() -> None:
    writes, inner = coalesced()
    attribute: Any = writes.transport
    assert attribute is inner.transport
    assert writes.is_closing() is False


async def test_abort_drops_what_is_kept() -> None:
    writes, inner = coalesced()
    aborted: list[bool] = []
    inner.abort = lambda: aborted.append(True)  # type: ignore[attr-defined]
    writes.write(b"never sent")
    writes.abort()
    await next_turn()
    assert (inner.sent, aborted) == ([], [True])


class Buffered:
    def get_write_buffer_size(self) -> int:
        return 5


@pytest.mark.parametrize("wrapped", ["transport", "stream writer"])
async def test_an_empty_write_schedules_nothing_and_what_waits_counts_what_is_kept(wrapped: str) -> None:
    writes, inner = coalesced()
    if wrapped == "transport":
        del inner.transport
        inner.get_write_buffer_size = Buffered().get_write_buffer_size  # type: ignore[attr-defined]
    else:
        inner.transport = Buffered()
    writes.write(b"")
    assert writes.buffered_bytes() == 5
    writes.write(b"abc")
    assert writes.buffered_bytes() == 8
    await next_turn()
    assert inner.sent == [b"abc"]


async def test_a_writer_that_never_yields_is_sent_at_the_high_water_mark() -> None:
    writes, inner = coalesced()
    chunk = b"x" * (FLUSH_BYTES // 4)
    for _ in range(4):
        writes.write(chunk)
    assert inner.sent == [chunk * 4]  # sent at once, so the transport's flow control sees it
    writes.write(b"tail")
    await next_turn()
    assert inner.sent == [chunk * 4, b"tail"]


def test_uvicorn_takes_the_protocol_by_name_and_builds_it_on_its_httptools_protocol() -> None:
    config = uvicorn.Config(app=lambda *_: None, http=HTTP_PROTOCOL)
    config.load()
    assert config.http_protocol_class is CoalescingHttpProtocol
    assert issubclass(CoalescingHttpProtocol, HttpToolsProtocol)


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers ``/<n>`` with n bytes (a response big enough to need several segments when n is large)."""
    assert scope["type"] == "http"
    size = int(scope["path"].strip("/") or 0)
    body = (b"0123456789" * (size // 10 + 1))[:size]
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", str(size).encode())]})
    await send({"type": "http.response.body", "body": body})


@pytest.fixture
async def server() -> AsyncIterator[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = uvicorn.Config(app, host="127.0.0.1", port=port, http=HTTP_PROTOCOL, log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    task = asyncio.create_task(running.serve())
    async with asyncio.timeout(10):
        while not running.started:  # noqa: ASYNC110 - uvicorn's own flag; it offers no event
            await asyncio.sleep(0.01)
    yield port
    running.should_exit = True
    await task


async def read_all(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    async with asyncio.timeout(10):
        data = await reader.read()  # until the server closes
    writer.close()
    return data


async def test_a_responses_head_and_body_leave_in_one_write(server: int, monkeypatch: pytest.MonkeyPatch) -> None:
    flushes = count_flushes(monkeypatch)
    data = await read_all(server, b"GET /5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\n01234")
    assert flushes == [2]  # head and body, together


async def test_an_answer_to_a_client_that_half_closed_is_sent(server: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server)
    writer.write(b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n")
    writer.write_eof()  # all it will send, as `printf ... | nc -N` does
    async with asyncio.timeout(10):
        data = await reader.read()
    writer.close()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert data.endswith(b"\r\n\r\n012")


async def test_pipelined_keep_alive_responses_and_a_closing_one_arrive_whole(server: int) -> None:
    requests = b"GET /3 HTTP/1.1\r\nHost: x\r\n\r\n" + b"GET /100000 HTTP/1.1\r\nHost: x\r\n\r\n"
    requests += b"GET /5 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    data = await read_all(server, requests)
    responses = data.split(b"HTTP/1.1 200 OK\r\n")[1:]
    assert len(responses) == 3
    bodies = [response.split(b"\r\n\r\n", 1)[1] for response in responses]
    assert bodies == [b"012", (b"0123456789" * 10_000), b"01234"]
    assert b"connection: close" in responses[2].lower()
