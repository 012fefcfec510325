"""Inspect and replay dead letters: ``python -m <service> dlq list`` / ``dlq replay (--all | ID ...)``.

A replay puts the message back on the queue it died in, with a fresh attempt count and
an ``x-replayed`` header. Consumers are idempotent, so replaying something that was
already handled records nothing twice and sends no email twice.
"""

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractIncomingMessage
from aio_pika.exceptions import ChannelNotFoundEntity

from agency_chassis.publishing import EventPublisher, MessageCopy, PublishFailed
from agency_chassis.retries import (
    ATTEMPT_HEADER,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERED_AT_HEADER,
    DEAD_LETTERED_FROM_HEADER,
    REDELIVERIES_HEADER,
    REPLAYED_HEADER,
)
from agency_shared.topology import CONSUMER_QUEUES, RETIRED_QUEUES

# What a replayed copy leaves behind (with RabbitMQ's own x-death, x-first-death-*, x-last-death-*).
DEATH_HEADERS = frozenset(
    {DEAD_LETTERED_FROM_HEADER, DEAD_LETTERED_AT_HEADER, DEAD_LETTER_REASON_HEADER, REDELIVERIES_HEADER}
)

# How long a replayed copy may wait for the broker's confirm.
REPLAY_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class DeadLetter:
    dead_letter_queue: str
    queue: str
    message_id: str | None
    event_type: str | None
    reason: str | None
    attempts: int
    dead_lettered_at: str | None


def describe(dlq: str, message: AbstractIncomingMessage) -> DeadLetter:
    """A dead letter as the runner sent it (its ``x-dead-letter*`` headers) or, failing that, as RabbitMQ
    dead-lettered it (``x-death``: a delivery limit reached, or a message of an earlier version)."""
    headers = message.headers
    deaths = headers.get("x-death")
    death: dict[str, Any] = deaths[0] if isinstance(deaths, list) and deaths and isinstance(deaths[0], dict) else {}
    try:
        event_type = json.loads(message.body).get("event_type")
    except (ValueError, AttributeError):
        event_type = None
    attempt = headers.get(ATTEMPT_HEADER)
    queue = headers.get(DEAD_LETTERED_FROM_HEADER) or death.get("queue") or dlq.removesuffix(".dlq")
    reason = headers.get(DEAD_LETTER_REASON_HEADER) or death.get("reason")
    at = headers.get(DEAD_LETTERED_AT_HEADER) or death.get("time")
    return DeadLetter(
        dead_letter_queue=dlq,
        queue=str(queue),
        message_id=message.message_id,
        event_type=event_type if isinstance(event_type, str) else message.type,
        reason=None if reason is None else str(reason),
        attempts=attempt if isinstance(attempt, int) else int(death.get("count", 1)),
        dead_lettered_at=None if at is None else str(at),
    )


def _dead_letter_queues(names: Sequence[str] | None) -> list[str]:
    known = [q.dead_letter_queue.name for q in CONSUMER_QUEUES]
    known += [f"{retired.name}.dlq" for retired in RETIRED_QUEUES]
    return [q for q in known if not names or q in names or q.removesuffix(".dlq") in names]


async def _drain(channel: AbstractChannel, dlq: str) -> list[AbstractIncomingMessage]:
    """Every message now in ``dlq``, unacknowledged: they return to it unless acked. None from a DLQ that does
    not exist (a retired queue's, gone or never made); the broker then closed the channel."""
    try:
        queue = await channel.get_queue(dlq, ensure=True)
    except ChannelNotFoundEntity:
        return []
    taken: list[AbstractIncomingMessage] = []
    while (message := await queue.get(no_ack=False, fail=False)) is not None:
        taken.append(message)
    return taken


async def list_dead_letters(amqp_url: str, queues: Sequence[str] | None = None) -> list[DeadLetter]:
    found: list[DeadLetter] = []
    connection = await aio_pika.connect(amqp_url)
    async with connection:
        for dlq in _dead_letter_queues(queues):
            channel = await connection.channel()
            found += [describe(dlq, m) for m in await _drain(channel, dlq)]
            if not channel.is_closed:
                await channel.close()  # unacked messages go back to the queue
    return found


@dataclass(frozen=True)
class Replayed:
    """What a replay moved, and what it could not (each with why): those stay in their DLQ."""

    moved: list[DeadLetter]
    kept: list[tuple[DeadLetter, str]]


async def replay(amqp_url: str, message_ids: Sequence[str] | None, queues: Sequence[str] | None = None) -> Replayed:
    """Move the chosen dead letters (``None``: all) back to their queues.

    A dead letter is acknowledged (taken out of its DLQ) only once the broker confirmed its copy in
    the queue: one whose queue is gone (the copy comes back unroutable) or that the broker refuses
    stays where it is, and the others are still moved.
    """
    moved: list[DeadLetter] = []
    kept: list[tuple[DeadLetter, str]] = []
    publisher = EventPublisher(amqp_url, timeout=REPLAY_TIMEOUT_SECONDS, service="dlq")
    await publisher.start()
    try:
        connection = await aio_pika.connect(amqp_url)
        async with connection:
            for dlq in _dead_letter_queues(queues):
                channel = await connection.channel()
                for message in await _drain(channel, dlq):
                    letter = describe(dlq, message)
                    if message_ids is not None and letter.message_id not in message_ids:
                        continue  # left unacked: back to the queue when the channel closes
                    try:
                        await publisher.send_copy(replayed_copy(message), letter.queue)
                    except PublishFailed as exc:
                        kept.append((letter, str(exc)))
                        continue  # left unacked: back in its DLQ when the channel closes
                    await message.ack()  # only after the broker confirmed the copy
                    moved.append(letter)
                if not channel.is_closed:
                    await channel.close()
    finally:
        await publisher.stop()
    return Replayed(moved, kept)


def replayed_copy(message: AbstractIncomingMessage) -> MessageCopy:
    """The dead letter as it goes back: a fresh attempt and redelivery count, no record of its death (its memo
    kept), and one more replay."""
    replayed = message.headers.get(REPLAYED_HEADER)
    kept = {
        name: value
        for name, value in message.headers.items()
        if name not in DEATH_HEADERS and not name.startswith(("x-death", "x-first-death-", "x-last-death-"))
    }
    return MessageCopy(
        body=message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
        content_type=message.content_type,
        message_type=message.type,
        headers={
            **kept,
            ATTEMPT_HEADER: 1,
            REPLAYED_HEADER: (replayed if isinstance(replayed, int) else 0) + 1,
        },
    )


def main(argv: Sequence[str], amqp_url: str) -> int:
    parser = argparse.ArgumentParser(
        prog="dlq", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--queue", action="append", help="only this queue (or its .dlq); repeatable")
    common.add_argument("--json", action="store_true", help="one JSON object per line")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="show the dead letters", parents=[common])
    chosen = commands.add_parser("replay", help="put dead letters back on their queues", parents=[common])
    which = chosen.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true")
    which.add_argument("ids", nargs="*", default=[], metavar="MESSAGE_ID")
    args = parser.parse_args(argv)
    if args.command == "list":
        _print(asyncio.run(list_dead_letters(amqp_url, args.queue)), args.json, "dead letters")
        return 0
    done = asyncio.run(replay(amqp_url, None if args.all else args.ids, args.queue))
    _print(done.moved, args.json, "replayed")
    for letter, reason in done.kept:
        print(f"not replayed, still in {letter.dead_letter_queue}: {letter.message_id}: {reason}", file=sys.stderr)
    return 1 if done.kept else 0


def _print(letters: list[DeadLetter], as_json: bool, what: str) -> None:
    if as_json:
        for letter in letters:
            print(json.dumps(asdict(letter), ensure_ascii=False))
        return
    print(f"{len(letters)} {what}")
    for d in letters:
        print(
            f"{d.queue}\t{d.event_type}\t{d.message_id}\treason={d.reason}\tattempts={d.attempts}\t{d.dead_lettered_at}"
        )
