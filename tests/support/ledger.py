"""The agreements service's ledger from outside: waiting for links, and its verify command as operators run it."""

import asyncio
import os
import subprocess
import sys
from typing import Any

from pymongo import AsyncMongoClient

from agreements.settings import AgreementsSettings

# The staff API token the tests configure where they call the staff endpoints.
STAFF_TOKEN = "test-staff-token-0123456789"


async def wait_for_links(mongo: AsyncMongoClient[dict[str, Any]], db: str, count: int, timeout: float = 90) -> None:
    """Wait until the ledger in ``db`` holds at least ``count`` links."""
    async with asyncio.timeout(timeout):
        while await mongo[db]["acceptance_ledger"].count_documents({}) < count:  # noqa: ASYNC110
            await asyncio.sleep(0.1)


def run_verify_command(settings: AgreementsSettings, *arguments: str) -> subprocess.CompletedProcess[str]:
    """``python -m agreements verify [arguments]`` against the database of ``settings``."""
    env = {**os.environ, "MONGODB_URL": str(settings.mongodb_url), "MONGODB_DB": settings.mongodb_db}
    env["ENVIRONMENT"] = settings.environment  # which keys it checks with: the development key outside production
    command = [sys.executable, "-m", "agreements", "verify", *arguments]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
