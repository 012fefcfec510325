"""``python -m agreements``: serve; ``verify [--anchors FILE]``: check the ledger; ``dlq list|replay``: dead letters;
``policies``: the queues' RabbitMQ policies as JSON lines."""

import argparse
import asyncio
import json
import sys
from functools import partial
from pathlib import Path
from typing import Any

import uvicorn

from agency_chassis import dead_letters, policies
from agency_chassis.mongo import mongo_client
from agency_chassis.startup import load_settings
from agency_shared.checkpoints import public_keys_by_id
from agreements.main import create_app
from agreements.settings import AgreementsSettings
from agreements.storage import MongoAcceptanceLedger


class UnreadableAnchors(ValueError):
    """A line of the anchors file holds no checkpoint."""


def read_anchors(path: Path) -> list[dict[str, Any]]:
    """Checkpoints kept outside the database, one JSON object a line: a checkpoint, a ``ledger.checkpointed``
    event (as the anchor mailbox's email carries it), or a receipt (its checkpoint)."""
    anchors = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        found = json.loads(line)
        if isinstance(found, dict):
            found = found.get("data", found)
            found = found.get("checkpoint", found) if isinstance(found, dict) else found
        if not isinstance(found, dict):
            raise UnreadableAnchors(f"{path}, line {number}: no checkpoint (a receipt from before checkpoints?)")
        anchors.append(found)
    return anchors


def read_public_keys(path: Path) -> dict[str, bytes]:
    """The keys in a copy of GET /v1/ledger/public-key: the current one and the retired."""
    published = json.loads(path.read_text(encoding="utf-8"))
    return public_keys_by_id([published, *published.get("retired", [])])


async def verify(settings: AgreementsSettings, anchors: list[dict[str, Any]], keys: dict[str, bytes]) -> int:
    client = mongo_client(settings)
    try:
        ledger = MongoAcceptanceLedger(client, settings.mongodb_db, public_keys=keys)
        report = await ledger.verify(anchors)
    finally:
        await client.close()
    if report.ok:
        print(
            f"ledger intact: {report.checked} links, head {report.head_sequence} {report.head_hash}; "
            f"{report.checkpoints} signed checkpoints agree"
        )
        return 0
    print(f"LEDGER BROKEN at link {report.broken_at} (after {report.checked} good links): {report.reason}")
    return 1


def main() -> None:
    # Serving refuses missing settings and placeholders; `verify` and the dead-letter tools need only their URL.
    settings = load_settings(AgreementsSettings, "agreements", check=sys.argv[1:2] in ([], ["serve"]))
    if sys.argv[1:2] == ["dlq"]:
        sys.exit(dead_letters.main(sys.argv[2:], str(settings.amqp_url)))
    if sys.argv[1:2] == ["policies"]:  # the queues' policies, for a deployment that applies them itself
        sys.exit(policies.main(sys.argv[2:], settings.queue_max_length, settings.dead_letter_retention_days))
    parser = argparse.ArgumentParser(prog="python -m agreements", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve", "verify"], default="serve")
    parser.add_argument(
        "--anchors", type=Path, help="verify: a file of checkpoints kept outside (JSON lines: checkpoints or receipts)"
    )
    parser.add_argument(
        "--public-key",
        type=Path,
        help="verify: a copy of GET /v1/ledger/public-key to check signatures with (else LEDGER_PUBLIC_KEYS)",
    )
    arguments = parser.parse_args()
    if arguments.command == "verify":
        try:
            anchors = read_anchors(arguments.anchors) if arguments.anchors else []
        except (ValueError, OSError) as exc:  # UnreadableAnchors, or not JSON
            print(f"cannot read the anchors: {exc}", file=sys.stderr)
            sys.exit(2)
        if not (arguments.public_key or settings.ledger_signing_key or settings.ledger_public_keys) and (
            settings.environment == "production"
        ):
            # The development key would call every real checkpoint forged: say what is missing instead.
            print(
                "no public key to check the checkpoints with: set LEDGER_PUBLIC_KEYS or give --public-key",
                file=sys.stderr,
            )
            sys.exit(2)
        keys = read_public_keys(arguments.public_key) if arguments.public_key else settings.verifying_keys()
        sys.exit(asyncio.run(verify(settings, anchors, keys)))
    # The app gets the settings loaded and checked above: once per process.
    app = partial(create_app, settings)
    uvicorn.run(app, factory=True, host=settings.bind_host, port=settings.agreements_port)


if __name__ == "__main__":
    main()
