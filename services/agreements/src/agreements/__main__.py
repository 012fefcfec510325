"""``python -m agreements``: serve; ``verify``: check the ledger; ``dlq list|replay``: dead letters."""

import argparse
import asyncio
import sys
from functools import partial

import uvicorn

from agency_chassis import dead_letters
from agency_chassis.mongo import mongo_client
from agency_chassis.startup import load_settings
from agreements.main import create_app
from agreements.settings import AgreementsSettings
from agreements.storage import MongoAcceptanceLedger


async def verify(settings: AgreementsSettings) -> int:
    client = mongo_client(settings)
    try:
        report = await MongoAcceptanceLedger(client, settings.mongodb_db).verify()
    finally:
        await client.close()
    if report.ok:
        print(f"ledger intact: {report.checked} links, head {report.head_sequence} {report.head_hash}")
        return 0
    print(f"LEDGER BROKEN at link {report.broken_at} (after {report.checked} good links): {report.reason}")
    return 1


def main() -> None:
    # Serving refuses missing settings and placeholders; `verify` and the dead-letter tools need only their URL.
    settings = load_settings(AgreementsSettings, "agreements", check=sys.argv[1:2] in ([], ["serve"]))
    if sys.argv[1:2] == ["dlq"]:
        sys.exit(dead_letters.main(sys.argv[2:], str(settings.amqp_url)))
    parser = argparse.ArgumentParser(prog="python -m agreements", description=__doc__)
    parser.add_argument("command", nargs="?", choices=["serve", "verify"], default="serve")
    command = parser.parse_args().command
    if command == "verify":
        sys.exit(asyncio.run(verify(settings)))
    # The app gets the settings loaded and checked above: once per process.
    app = partial(create_app, settings)
    uvicorn.run(app, factory=True, host=settings.bind_host, port=settings.agreements_port)


if __name__ == "__main__":
    main()
