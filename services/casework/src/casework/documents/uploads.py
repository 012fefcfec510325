"""Receiving a client's upload: the multipart body parsed as it streams in (python-multipart's streaming parser,
never the whole form in memory), the file written to GridFS chunk by chunk while its SHA-256 is computed, refused
as soon as it passes the size limit, then checked by content; whatever is refused is deleted.

One upload holds at most the parser's chunk, the first bytes its type is read from and GridFS's chunk in memory,
so memory stays bounded however many upload at once."""

import asyncio
import hashlib
import tempfile
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from agency_shared.events import utc_now
from casework.documents.inspection import (
    SNIFF_BYTES,
    DocumentLimits,
    RefusedDocument,
    check_image,
    check_pdf,
    content_type_of,
    safe_name,
)
from casework.documents.store import CaseDocuments, ChunkWriter, FileAbout, StoredFile

# What a multipart body may carry besides the file (boundaries, headers, the CSRF token).
ENVELOPE_BYTES = 64 * 1024
MAX_FIELD_BYTES = 256
# Images are checked from a spooled copy: in memory up to this size, on disk beyond.
SPOOL_BYTES = 1024 * 1024
FILE_FIELD = "file"
CSRF_FIELD = "csrf_token"


async def _paced(request: Request, limits: DocumentLimits) -> AsyncGenerator[bytes, None]:
    """The body's chunks; ``RefusedDocument`` (408) once none came for ``idle_seconds`` or the whole took longer
    than ``upload_seconds``."""
    chunks = request.stream()
    deadline = asyncio.get_running_loop().time() + limits.upload_seconds
    try:
        while True:
            left = deadline - asyncio.get_running_loop().time()
            try:
                async with asyncio.timeout(min(limits.idle_seconds, left)):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                if left <= limits.idle_seconds:
                    raise RefusedDocument(408, "too_slow", f"not received in {limits.upload_seconds:g} s") from None
                raise RefusedDocument(408, "too_slow", f"no data for {limits.idle_seconds:g} s") from None
            yield chunk
    finally:
        await chunks.aclose()


class UploadSlots:
    """The uploads one replica streams at once: ``at_once`` in all, ``per_case`` of one case's.

    A request waits at most ``wait_seconds`` for a slot (then ``RefusedDocument`` 503, to try again later); a case
    already sending ``per_case`` files is refused at once (429): one portal link cannot take every slot.
    """

    def __init__(self, at_once: int, per_case: int = 2, wait_seconds: float = 30.0) -> None:
        self._slots = asyncio.Semaphore(at_once)
        self._per_case = per_case
        self._wait_seconds = wait_seconds
        self._sending: Counter[object] = Counter()

    def sending(self, case: object) -> int:
        """How many of ``case``'s uploads hold or wait for a slot now."""
        return self._sending[case]

    @asynccontextmanager
    async def slot(self, case: object) -> AsyncIterator[None]:
        if self._sending[case] >= self._per_case:
            raise RefusedDocument(429, "busy_case", f"this case is already sending {self._per_case} files")
        self._sending[case] += 1
        try:
            try:
                async with asyncio.timeout(self._wait_seconds):
                    await self._slots.acquire()
            except TimeoutError:
                raise RefusedDocument(503, "busy", f"no upload slot free in {self._wait_seconds:g} s") from None
            try:
                yield
            finally:
                self._slots.release()
        finally:
            self._sending[case] -= 1
            if not self._sending[case]:
                del self._sending[case]


class CsrfRefused(Exception):
    """The file part came without the form's CSRF token before it, or with a wrong one (HTTP 403)."""


class _Events:
    """The parser's callbacks, kept as a list to act on (asynchronously) after each chunk is parsed."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Any]] = []
        self._field = bytearray()
        self._value = bytearray()
        self._headers: dict[str, bytes] = {}

    def callbacks(self) -> dict[str, Callable[..., None]]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self._field.extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._value.extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": lambda: self.items.append(("headers", dict(self._headers))),
            "on_part_data": lambda data, start, end: self.items.append(("data", bytes(data[start:end]))),
            "on_part_end": lambda: self.items.append(("end", None)),
        }

    def _part_begin(self) -> None:
        self._headers = {}

    def _header_end(self) -> None:
        self._headers[bytes(self._field).decode("latin-1").lower()] = bytes(self._value)
        self._field.clear()
        self._value.clear()

    def drain(self) -> list[tuple[str, Any]]:
        items, self.items = self.items, []
        return items


@dataclass
class _Upload:
    """One upload's state as its parts arrive."""

    documents: CaseDocuments
    about: FileAbout
    limits: DocumentLimits
    csrf_matches: Callable[[str], bool]
    part: str = ""
    filename: str = ""
    csrf: bytearray = field(default_factory=bytearray)
    csrf_ok: bool = False
    files: int = 0
    head: bytearray = field(default_factory=bytearray)
    size: int = 0
    sha256: Any = field(default_factory=hashlib.sha256)
    content_type: str = ""
    name: str = ""
    stream: ChunkWriter | None = None
    closed: bool = False

    async def on(self, kind: str, value: Any) -> None:
        if kind == "headers":
            self._begin(value)
        elif kind == "data" and self.part == CSRF_FIELD:
            if len(self.csrf) + len(value) > MAX_FIELD_BYTES:
                raise CsrfRefused("the CSRF token is too long")
            self.csrf.extend(value)
        elif kind == "data" and self.part == FILE_FIELD:
            await self._data(value)
        elif kind == "end" and self.part == CSRF_FIELD:
            self.csrf_ok = self.csrf_matches(self.csrf.decode("utf-8", "replace"))
        elif kind == "end" and self.part == FILE_FIELD:
            await self._end()

    def _begin(self, headers: dict[str, bytes]) -> None:
        _, options = parse_options_header(headers.get("content-disposition", b""))
        self.part = options.get(b"name", b"").decode("utf-8", "replace")
        if self.part != FILE_FIELD:
            return
        if not self.csrf_ok:  # the form puts its token first: no file is stored without it
            raise CsrfRefused("no valid CSRF token before the file")
        self.files += 1
        if self.files > 1:
            raise RefusedDocument(422, "one_file", "one file per upload")
        self.filename = options.get(b"filename", b"").decode("utf-8", "replace")

    async def _data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limits.max_bytes:
            raise RefusedDocument(413, "too_large", f"larger than {self.limits.max_bytes:,} bytes")
        self.sha256.update(data)
        if self.stream is not None:
            await self.stream.write(data)
            return
        self.head.extend(data)
        if len(self.head) >= SNIFF_BYTES:
            await self._open()

    async def _open(self) -> None:
        """Decide the type from the first bytes (refused: nothing was stored), then start the stored file."""
        self.content_type = content_type_of(bytes(self.head))
        self.name = safe_name(self.filename, self.content_type)
        about = FileAbout(self.about.case_id, self.about.item, self.content_type)
        self.stream = await self.documents.open_upload(self.name, about)
        await self.stream.write(bytes(self.head))
        self.head = bytearray()

    async def _end(self) -> None:
        if self.size == 0:
            raise RefusedDocument(422, "empty", "the file is empty")
        if self.stream is None:
            await self._open()
        assert self.stream is not None
        await self.stream.close()
        self.closed = True

    async def checked(self) -> StoredFile:
        """The stored file once its content passed the checks that need all of it (read back from GridFS)."""
        if not self.closed or self.stream is None:
            raise RefusedDocument(422, "no_file", "the form carried no file")
        file_id = self.stream.file_id
        if self.content_type == "application/pdf":
            await check_pdf(self.documents.chunks(file_id), self.size, self.limits)
        else:
            with tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES) as copy:
                async for chunk in self.documents.chunks(file_id):
                    copy.write(chunk)
                copy.seek(0)
                await asyncio.to_thread(check_image, copy, self.content_type, self.limits)
        return StoredFile(
            file_id=str(file_id),
            sha256=self.sha256.hexdigest(),
            size=self.size,
            content_type=self.content_type,
            name=self.name,
            received_at=utc_now(),
        )

    async def discard(self) -> None:
        """Delete whatever of the file was stored (a refusal, a dropped connection)."""
        if self.stream is None:
            return
        if self.closed:
            await self.documents.delete_file(self.stream.file_id)
        else:
            await self.stream.abort()


async def receive_upload(
    request: Request,
    documents: CaseDocuments,
    about: FileAbout,
    limits: DocumentLimits,
    csrf_matches: Callable[[str], bool],
) -> StoredFile:
    """The file of the multipart request ``request``, stored and checked; ``RefusedDocument`` or ``CsrfRefused``
    with nothing stored otherwise."""
    media_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if media_type != b"multipart/form-data" or not boundary:
        raise RefusedDocument(400, "not_multipart", "send the file as multipart/form-data")
    length = request.headers.get("content-length", "")
    if length.isascii() and length.isdigit() and int(length) > limits.max_bytes + ENVELOPE_BYTES:
        raise RefusedDocument(413, "too_large", f"larger than {limits.max_bytes:,} bytes")
    events = _Events()
    parser = MultipartParser(boundary, events.callbacks())  # type: ignore[arg-type]  # a TypedDict of the same callbacks
    upload = _Upload(documents, about, limits, csrf_matches)
    received = 0
    try:
        async with aclosing(_paced(request, limits)) as chunks:  # a refusal part-way closes the body's stream now
            async for chunk in chunks:
                received += len(chunk)
                if received > limits.max_bytes + ENVELOPE_BYTES:
                    raise RefusedDocument(413, "too_large", f"larger than {limits.max_bytes:,} bytes")
                try:
                    parser.write(chunk)
                except MultipartParseError as exc:
                    raise RefusedDocument(400, "malformed", f"not a well-formed multipart body: {exc}") from None
                for kind, value in events.drain():
                    await upload.on(kind, value)
        parser.finalize()
        for kind, value in events.drain():
            await upload.on(kind, value)
        return await upload.checked()
    except BaseException:
        await asyncio.shield(upload.discard())
        raise
