"""What an uploaded file is, decided by its content: its type (PDF, JPEG, PNG by their signatures, ``filetype``),
images within the pixel limit (dimensions read before decoding), PDFs whose Flate streams do not inflate past the
limit, and a name safe to show and to save. The name and the declared type are never trusted."""

import asyncio
import re
import unicodedata
import warnings
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

import filetype  # type: ignore[import-untyped]  # no stubs published
from PIL import Image, UnidentifiedImageError

# The types a client may upload, by the MIME type ``filetype`` finds in the content, with their extension.
ALLOWED_TYPES: dict[str, str] = {"application/pdf": ".pdf", "image/jpeg": ".jpg", "image/png": ".png"}
# What ``filetype`` needs to recognise a signature.
SNIFF_BYTES = 8192
MAX_NAME_LENGTH = 120
FALLBACK_NAME = "document"
# Windows' reserved characters and the path separators: a name that reaches someone's disk stays one file.
RESERVED = re.compile(r'[<>:"/\\|?*]')
PDF_STREAM = re.compile(rb"(?<![A-Za-z])stream(\r\n|\n|\r)")
INFLATE_STEP = 65_536


class RefusedDocument(Exception):
    """An upload the portal does not keep: ``status`` (413, 415, 422), ``reason`` (a translation key's suffix) and
    the detail in words."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.status = status
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class DocumentLimits:
    max_bytes: int
    max_pixels: int
    max_inflate_ratio: int
    max_inflated_bytes: int

    def inflated_allowance(self, size: int) -> int:
        """How much a PDF of ``size`` bytes may inflate to in all: ``ratio`` times its size (at least 1 MB: a small
        file's ratio says little), never past the total."""
        return min(self.max_inflated_bytes, max(self.max_inflate_ratio * size, 1_048_576))


def content_type_of(head: bytes) -> str:
    """The MIME type the file's first bytes show; ``RefusedDocument`` (415) for anything but PDF, JPEG, PNG."""
    kind = filetype.guess(head)
    if kind is None:
        raise RefusedDocument(415, "unknown_type", "the content is not a PDF, JPEG or PNG file")
    if kind.mime not in ALLOWED_TYPES:
        raise RefusedDocument(415, "wrong_type", f"the content is {kind.mime}, not a PDF, JPEG or PNG file")
    mime: str = kind.mime
    return mime


def safe_name(name: str | None, content_type: str) -> str:
    """The name to keep: its last path part, without control and formatting characters (bidirectional overrides,
    zero-width), reserved characters replaced, at most ``MAX_NAME_LENGTH`` characters, with the extension of its
    content (a PNG called ``scan.pdf`` is kept as ``scan.png``). Chinese and other scripts stay."""
    text = unicodedata.normalize("NFC", name or "")
    text = re.split(r"[/\\]", text)[-1]
    text = "".join(char for char in text if unicodedata.category(char) not in ("Cc", "Cf", "Cs", "Co", "Cn"))
    text = RESERVED.sub("_", text)
    text = " ".join(text.split()).strip(" .")
    stem, dot, extension = text.rpartition(".")
    if not dot or not extension.isascii() or not extension.isalnum() or len(extension) > 5:
        stem, extension = text, ""
    wanted = ALLOWED_TYPES[content_type]
    if content_type == "image/jpeg" and extension.lower() == "jpeg":
        wanted = ".jpeg"
    stem = stem.strip(" .")[: MAX_NAME_LENGTH - len(wanted)].strip(" .") or FALLBACK_NAME
    return stem + wanted


def check_image(file: IO[bytes], content_type: str, limits: DocumentLimits) -> tuple[int, int]:
    """The image's width and height once it is known to be one Pillow reads within the pixel limit; its
    dimensions are read from the header before anything is decoded, then a bounded decode proves the data is
    sound (a PNG's verify(); a JPEG decoded at an eighth of its size). ``RefusedDocument`` otherwise."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            with Image.open(file, formats=["PNG"] if content_type == "image/png" else ["JPEG"]) as image:
                width, height = image.size
                if width * height > limits.max_pixels:
                    raise RefusedDocument(
                        422, "too_many_pixels", f"{width} × {height} pixels; at most {limits.max_pixels:,} pixels"
                    )
                if content_type == "image/png":
                    image.verify()
                else:
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                    image.load()
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise RefusedDocument(422, "too_many_pixels", str(exc)) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            raise RefusedDocument(422, "broken_image", f"the image cannot be read: {exc}") from None
    return width, height


class FlateBudget:
    """Inflates a PDF's streams as its bytes arrive (each chunk once, never the whole file in memory), counting
    what they inflate to and refusing past ``allowance`` bytes: a decompression bomb is caught at its limit, not
    after it has filled the memory. A stream that is not zlib data (DCT images, uncompressed) is passed over."""

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self.inflated = 0
        self._tail = b""  # the end of the last chunk, where a "stream" keyword may begin
        self._inflating: zlib._Decompress | None = None
        self._started = False

    def feed(self, chunk: bytes) -> None:
        data = self._tail + chunk
        self._tail = b""
        while data:
            if self._inflating is not None:
                data = self._inflate(data)
                continue
            found = PDF_STREAM.search(data)
            if found is None:
                self._tail = data[-16:]
                return
            self._inflating = zlib.decompressobj()
            self._started = False
            data = data[found.end() :]

    def _inflate(self, data: bytes) -> bytes:
        """Inflate ``data`` into the current stream; what follows the stream's end (to scan on)."""
        assert self._inflating is not None
        pending = data
        while pending:
            try:
                out = self._inflating.decompress(pending, INFLATE_STEP)
            except zlib.error:
                # Not Flate data (or the stream ends in garbage): scan on from here.
                self._inflating = None
                return data if not self._started else pending
            self._started = True
            self.inflated += len(out)
            if self.inflated > self.allowance:
                raise RefusedDocument(
                    422, "decompression_bomb", f"its compressed streams inflate past {self.allowance:,} bytes"
                )
            if self._inflating.eof:
                rest = self._inflating.unused_data
                self._inflating = None
                return rest
            pending = self._inflating.unconsumed_tail
            if not out and not pending:
                break
        return b""


async def check_pdf(chunks: AsyncIterator[bytes], size: int, limits: DocumentLimits) -> int:
    """Inflate every Flate stream of the PDF whose bytes ``chunks`` yields; the bytes they inflate to, or
    ``RefusedDocument`` past the allowance for its ``size``."""
    budget = FlateBudget(limits.inflated_allowance(size))
    async for chunk in chunks:
        # Inflating is CPU work (up to the allowance): off the event loop, so other requests go on meanwhile.
        await asyncio.to_thread(budget.feed, chunk)
    return budget.inflated
