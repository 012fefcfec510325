"""While RabbitMQ is not reading, publishes wait to be written instead of piling up in memory."""

import asyncio
from typing import Any

import pytest
from yarl import URL

from agency_chassis.coalescing import FLUSH_BYTES
from agency_chassis.publishing import CoalescingTransport, EventPublisher, MessageCopy


async def test_a_peer_that_stops_reading_makes_the_connection_congested_until_it_reads_again() -> None:
    readers: list[asyncio.StreamReader] = []
    connected = asyncio.Event()

    async def never_reading(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        readers.append(reader)
        connected.set()

    server = await asyncio.start_server(never_reading, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    factory = CoalescingTransport()
    try:
        _, writer = await factory.create(URL(f"amqp://127.0.0.1:{port}/"))
        await connected.wait()
        writer.write(b"x" * 1000)
        await asyncio.sleep(0.01)
        assert not factory.congested()
        written = 0
        async with asyncio.timeout(30):
            while not factory.congested():  # the kernel's buffers fill, then the transport's
                writer.write(b"x" * FLUSH_BYTES)
                written += FLUSH_BYTES
                await asyncio.sleep(0)
        async with asyncio.timeout(30):
            while factory.congested():
                written -= len(await readers[0].read(1 << 20))
        assert written > 0  # congestion ended while bytes were still on their way
        writer.close()
    finally:
        server.close()


class Underlay:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def basic_publish(self, body: bytes, **options: Any) -> None:
        self.calls.append(options)


class Channel:
    def __init__(self, underlay: Underlay) -> None:
        self.underlay = underlay

    async def get_underlay_channel(self) -> Underlay:
        return self.underlay


class Connection:
    def __init__(self, congested: bool) -> None:
        self._congested = congested

    def congested(self) -> bool:
        return self._congested


@pytest.mark.parametrize("congested", [False, True])
async def test_each_publish_waits_to_be_written_exactly_while_the_connection_is_congested(congested: bool) -> None:
    publisher = EventPublisher("amqp://guest:guest@127.0.0.1:1/", timeout=5, service="test")
    underlay = Underlay()
    publisher._channel, publisher._connection = Channel(underlay), Connection(congested)  # type: ignore[assignment]
    await publisher.send_copy(MessageCopy(b"x", "m-1", None, "text/plain", None), "a.queue")
    assert [call["wait"] for call in underlay.calls] == [congested]
    assert underlay.calls[0]["mandatory"] is True
