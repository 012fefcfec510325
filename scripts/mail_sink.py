"""A local SMTP sink: accepts every email and writes it as an .eml file (``python scripts/mail_sink.py``)."""

import argparse
import asyncio
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

from aiosmtpd.smtp import SMTP, Envelope, Session


class EmlWriter:
    """Writes each accepted message to ``<folder>/<UTC time>-<n>.eml`` exactly as received."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.count = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.count += 1
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        recipients = re.sub(r"[^A-Za-z0-9@._-]", "_", ",".join(envelope.rcpt_tos))[:80]
        path = self.folder / f"{stamp}-{self.count:06d}-{recipients}.eml"
        partial = path.with_suffix(".part")
        partial.write_bytes(envelope.original_content or b"")
        partial.rename(path)  # readers never see a half-written file
        return "250 Message accepted for delivery"


async def serve(host: str, port: int, folder: Path) -> None:
    loop = asyncio.get_running_loop()
    handler = EmlWriter(folder)
    server = await loop.create_server(lambda: SMTP(handler, hostname="localhost", enable_SMTPUTF8=True), host, port)
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(f"mail sink listening on {host}:{port}, writing to {folder}", flush=True)
    await stop.wait()
    server.close()
    await server.wait_closed()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path("var/mail"))
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(serve(args.host, args.port, args.dir))


if __name__ == "__main__":
    main()
