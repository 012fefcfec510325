"""Documents in tests: real files built here (Pillow's PNG and JPEG, a PDF written by hand), hostile ones (a pixel
bomb, a Flate bomb, disguised files), multipart bodies written byte by byte (so a file name reaches the server
exactly as given: CR/LF, bidirectional overrides), and a client's portal session signed as casework signs it."""

import io
import struct
import uuid
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from fastapi import FastAPI
from PIL import Image

from agency_chassis.portal_links import PortalLinks
from agency_shared.events import utc_now
from casework.portal.session import COOKIE
from casework.settings import CaseworkSettings

BOUNDARY = "----casework-test-boundary-7MA4YWxkTrZu0gW"


def png(width: int = 64, height: int = 48, colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, "PNG")
    return out.getvalue()


def jpeg(width: int = 64, height: int = 48) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (30, 120, 200)).save(out, "JPEG", quality=80)
    return out.getvalue()


def pdf(stream: bytes | None = None, padding: int = 0) -> bytes:
    """A one-page PDF written by hand: catalog, pages, page, a Flate-compressed content stream, xref, trailer;
    ``padding`` bytes of a comment make it as large as a test needs."""
    content = stream if stream is not None else zlib.compress(b"BT /F1 24 Tf 72 720 Td (Certificate) Tj ET")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>",
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(content) + content + b"\nendstream",
    ]
    body = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    if padding:
        body += b"%" + b"x" * padding + b"\n"
    offsets = []
    for number, item in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj\n" % number + item + b"\nendobj\n"
    xref = len(body)
    body += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    body += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    body += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(body)


def flate_bomb_pdf(inflated_megabytes: int = 64) -> bytes:
    """A PDF whose content stream is small but inflates to ``inflated_megabytes`` MB of zeros."""
    squeezer = zlib.compressobj(9)
    zeros = bytes(1024 * 1024)
    compressed = b"".join(squeezer.compress(zeros) for _ in range(inflated_megabytes)) + squeezer.flush()
    return pdf(compressed)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def pixel_bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A PNG whose header claims ``width`` × ``height`` pixels in a file of a hundred bytes (one row of data)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", header)
        + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + _chunk(b"IEND", b"")
    )


EXE = (
    b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
    + b"\x00" * 48
    + b"This program cannot be run in DOS mode"
)
HTML = b"<!DOCTYPE html><html><body><script>alert(document.cookie)</script></body></html>"


def multipart(
    content: bytes,
    filename: bytes | str = b"document.pdf",
    content_type: str = "application/pdf",
    csrf: str | None = None,
    csrf_after_file: bool = False,
) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body with the CSRF field and one file part (the file name's bytes as given), and
    its Content-Type header."""
    name = filename.encode() if isinstance(filename, str) else filename
    token = b""
    if csrf is not None:
        token = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'.encode()
    file_part = (
        f"--{BOUNDARY}\r\n".encode()
        + b'Content-Disposition: form-data; name="file"; filename="'
        + name
        + b'"\r\n'
        + f"Content-Type: {content_type}\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    parts = file_part + token if csrf_after_file else token + file_part
    body = parts + f"--{BOUNDARY}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}


async def in_slices(body: bytes, size: int = 65_536) -> AsyncIterator[bytes]:
    """The body as a browser's connection delivers it: a slice at a time."""
    view = memoryview(body)
    for start in range(0, len(body), size):
        yield bytes(view[start : start + size])


def portal_links_of(settings: CaseworkSettings) -> PortalLinks:
    return PortalLinks(settings.portal_link_secret.get_secret_value(), timedelta(days=settings.portal_link_days))


def portal_token(settings: CaseworkSettings, case_id: uuid.UUID, issued: datetime | None = None) -> str:
    return portal_links_of(settings).issue(case_id, 0, "en", issued or utc_now())


@dataclass
class Client:
    """A client's browser holding the portal session of their case."""

    http: httpx.AsyncClient
    csrf: str

    async def upload(
        self,
        item: str,
        content: bytes,
        filename: bytes | str = b"document.pdf",
        content_type: str = "application/pdf",
        csrf: str | None = "",
        **options: bool,
    ) -> httpx.Response:
        body, headers = multipart(content, filename, content_type, self.csrf if csrf == "" else csrf, **options)
        return await self.http.post(
            f"/portal/documents/{item}", content=in_slices(body), headers={**headers, "Accept": "application/json"}
        )


def portal_client(app: FastAPI, settings: CaseworkSettings, token: str) -> Client:
    transport = httpx.ASGITransport(app=app, client=("198.51.100.77", 50999))
    http = httpx.AsyncClient(
        transport=transport, base_url="https://testserver", headers={"Cookie": f"{COOKIE}={token}"}, timeout=60
    )
    return Client(http, portal_links_of(settings).csrf_token(token))
