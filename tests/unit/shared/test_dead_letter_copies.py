"""What ``dlq`` reads from a dead letter and what it sends back on a replay (no broker)."""

from dataclasses import dataclass, field
from typing import Any, cast

from aio_pika.abc import AbstractIncomingMessage

from agency_chassis.dead_letters import describe, replayed_copy
from agency_chassis.retries import (
    ATTEMPT_HEADER,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTERED_AT_HEADER,
    DEAD_LETTERED_FROM_HEADER,
    MEMO_HEADER,
    REDELIVERIES_HEADER,
    REPLAYED_HEADER,
)

# What RabbitMQ adds when a delay queue hands a parked copy back (it dead-letters on expiry).
EXPIRED_FROM_A_DELAY_QUEUE = {
    "x-death": [{"queue": "agreements.application-submitted.retry-1000", "reason": "expired", "count": 1}],
    "x-first-death-queue": "agreements.application-submitted.retry-1000",
    "x-first-death-reason": "expired",
    "x-last-death-queue": "agreements.application-submitted.retry-1000",
    "x-last-death-reason": "expired",
}


@dataclass
class Letter:
    headers: dict[str, Any] = field(default_factory=dict)
    body: bytes = b'{"event_type": "application.submitted"}'
    message_id: str = "m-1"
    correlation_id: str = "c-1"
    content_type: str = "application/json"
    type: str = "application.submitted"


def letter(**headers: Any) -> AbstractIncomingMessage:
    return cast(AbstractIncomingMessage, Letter(headers=headers))


def test_the_runners_own_account_of_a_death_wins_over_rabbitmqs_record_of_an_earlier_retry() -> None:
    dead = letter(
        **EXPIRED_FROM_A_DELAY_QUEUE,
        **{
            ATTEMPT_HEADER: 10,
            DEAD_LETTERED_FROM_HEADER: "agreements.application-submitted",
            DEAD_LETTERED_AT_HEADER: "2026-12-06T04:00:00.000+00:00",
            DEAD_LETTER_REASON_HEADER: "attempts-exhausted: database unreachable",
        },
    )
    described = describe("agreements.application-submitted.dlq", dead)
    assert described.queue == "agreements.application-submitted"
    assert described.reason == "attempts-exhausted: database unreachable"
    assert described.dead_lettered_at == "2026-12-06T04:00:00.000+00:00"
    assert (described.attempts, described.event_type, described.message_id) == (10, "application.submitted", "m-1")


def test_a_letter_rabbitmq_dead_lettered_is_described_by_its_x_death() -> None:
    death = {"queue": "notifications.agreement-recorded", "reason": "delivery_limit", "count": 3, "time": "t"}
    described = describe("notifications.agreement-recorded.dlq", letter(**{"x-death": [death]}))
    assert (described.queue, described.reason, described.attempts, described.dead_lettered_at) == (
        "notifications.agreement-recorded",
        "delivery_limit",
        3,
        "t",
    )


def test_a_replayed_copy_starts_afresh_but_keeps_its_memo_and_counts_the_replay() -> None:
    dead = letter(
        **EXPIRED_FROM_A_DELAY_QUEUE,
        **{
            ATTEMPT_HEADER: 10,
            REDELIVERIES_HEADER: 10,
            REPLAYED_HEADER: 1,
            MEMO_HEADER: '{"k": "250 ok"}',
            DEAD_LETTERED_FROM_HEADER: "agreements.application-submitted",
            DEAD_LETTERED_AT_HEADER: "2026-12-06T04:00:00.000+00:00",
            DEAD_LETTER_REASON_HEADER: "redelivered-too-often: redelivered 10 times",
            "x-other": "kept",
        },
    )
    copy = replayed_copy(dead)
    assert copy.headers == {ATTEMPT_HEADER: 1, REPLAYED_HEADER: 2, MEMO_HEADER: '{"k": "250 ok"}', "x-other": "kept"}
    assert (copy.body, copy.message_id, copy.correlation_id) == (dead.body, "m-1", "c-1")
