"""Three agreements and three notifications processes on one broker and database: the work spreads, results as one.

Each replica is a real `python -m <service>` process competing on the same quorum queues
(RabbitMQ hands each delivery to one consumer), writing to the same database. The load
generator posts 20 applications a second, and some of them three more times at once with
the same Idempotency-Key, so copies of one event reach different replicas concurrently.
At the end every submission is accounted for exactly as with one process of each: one
ledger link per application, one email per recipient, an intact chain, nothing lost.
"""

import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pymongo import AsyncMongoClient

from tests.support.faults import Service, Submission, System, submission_body
from tests.support.servers import Inbox

pytestmark = pytest.mark.timeout(150)

REPLICAS = {"agreements": 3, "notifications": 3}
TOKEN = "scaling-test-staff-token-0123456789"


@pytest.fixture
async def scaled(amqp_url: str, tmp_path: Path, smtp_port: int, inbox: Inbox) -> AsyncIterator[System]:
    system = System(amqp_url, tmp_path, smtp_port, inbox, REPLICAS, STAFF_API_TOKEN=TOKEN)
    try:
        await system.start()
        yield system
    finally:
        await system.stop()


async def post_again_concurrently(system: System, originals: list[Submission], copies: int = 3) -> None:
    """Post each accepted submission ``copies`` more times at once, with its key: always the same id."""
    async with httpx.AsyncClient(base_url=system.intake_url, timeout=10) as http:

        async def again(original: Submission) -> None:
            responses = await asyncio.gather(
                *(
                    http.post(
                        "/v1/applications",
                        json=submission_body(original),
                        headers={"Idempotency-Key": original.client},
                    )
                    for _ in range(copies)
                )
            )
            assert [r.status_code for r in responses] == [202] * copies, [r.text for r in responses]
            assert {r.json()["application_id"] for r in responses} == {original.application_id}

        await asyncio.gather(*(again(original) for original in originals))


async def metric_samples(replica: Service, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples of ``name`` on the replica's /metrics (what Prometheus scrapes)."""
    async with httpx.AsyncClient(base_url=replica.url, timeout=10) as http:
        response = await http.get("/metrics")
    response.raise_for_status()
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == name
    ]


async def recorded_by(replica: Service) -> int:
    """application.submitted messages the agreements replica handled and acked (a repeat counts again)."""
    samples = await metric_samples(replica, "faststream_received_processed_messages_total")
    return int(
        sum(
            value
            for labels, value in samples
            if labels["handler"].endswith("application.submitted") and labels["status"] == "acked"
        )
    )


async def sent_by(replica: Service) -> int:
    """Emails the notifications replica handed to the SMTP server."""
    samples = await metric_samples(replica, "wechat_emails_total")
    return int(sum(value for labels, value in samples if labels["outcome"] == "sent"))


async def verify_over_http(replica: Service) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=replica.url, timeout=30) as http:
        response = await http.get("/v1/ledger/verify", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def verify_from_the_command_line(replica: Service) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agreements", "verify", env=replica.env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await process.communicate()
    return process.returncode or 0, out.decode()


async def notification_states(system: System) -> Counter[str]:
    mongo: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(system.database.url, serverSelectionTimeoutMS=5000)
    try:
        return Counter([entry["state"] async for entry in mongo["faults"]["notifications"].find({}, {"state": 1})])
    finally:
        await mongo.close()


async def test_three_replicas_each_share_the_work_and_the_results_are_those_of_one(scaled: System) -> None:
    system = scaled
    async with system.load(rate=20):
        # Counted, not timed: a slow machine posts fewer a second than the schedule asks.
        repeated = (await system.accepted(15))[:15]
        await post_again_concurrently(system, repeated)
        await system.accepted(100)
    result = await system.account("scaling-3x3", repeated=len(repeated))
    # account() returns once everything is settled, so the counters are final now.
    recorded = {replica.label: await recorded_by(replica) for replica in system.replicas["agreements"]}
    sent = {replica.label: await sent_by(replica) for replica in system.replicas["notifications"]}
    result.notes.update(recorded_by=recorded, sent_by=sent)
    result.save()

    # The same results as one process of each.
    assert len(repeated) == 15
    assert result.accepted >= 100
    assert result.refused == 0
    assert result.lost == []
    assert result.recorded == result.staff_emailed == result.client_emailed == result.accepted
    assert result.duplicate_records == 0
    assert result.duplicate_emails == 0, result.duplicated
    assert len(system.inbox.messages) == 2 * result.accepted  # staff + the client's verification link, nothing else
    assert await notification_states(system) == Counter({"sent": 2 * result.accepted})
    for replica in system.replicas["agreements"]:  # every replica reads the one chain
        report = await verify_over_http(replica)
        assert report["ok"] is True, report
        assert report["checked"] == result.accepted
    code, out = await verify_from_the_command_line(system.services["agreements"])
    assert code == 0, out
    assert f"ledger intact: {result.accepted} links" in out

    # The work was spread: every replica did a fair share of it (RabbitMQ hands deliveries
    # round-robin to consumers with prefetch room: about a third each), and between them
    # all of it, each email once.
    assert min(recorded.values()) > result.accepted // 10, recorded
    assert sum(recorded.values()) >= result.accepted  # a repeat is handled (and acked) again
    assert min(sent.values()) > 2 * result.accepted // 10, sent
    assert sum(sent.values()) == 2 * result.accepted
