"""What an uploaded file is, decided by its content: its type (PDF, JPEG, PNG by their signatures, ``filetype``),
images within the pixel limit (dimensions read before decoding), PDFs whose streams are Flate (inflated, not past
the limit), unencoded or image codecs, and a name safe to show and to save. The name and the declared type are never
trusted."""

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
# The keyword before a stream's data and its end of line: CR LF or LF (the specification's), or a bare CR (that
# lenient readers accept) once the next byte shows it is not a CR LF.
PDF_STREAM = re.compile(rb"(?<![A-Za-z])stream[ \t]*(\r\n|\n|\r)")
PDF_OBJ = re.compile(rb"(?<![A-Za-z])obj(?![A-Za-z])")
PDF_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
PDF_FILTER_KEY = re.compile(rb"/Filter(?![^\s/\[\]<>()%{}])")
PDF_FILTER = re.compile(rb"/Filter\s*(/[^\s/\[\]<>()%{}]+|\[[^\]]*\])")
# A stream's dictionary is read from at most this many bytes before its "stream" keyword; a longer one is refused.
DICTIONARY_BYTES = 32_768
# The abbreviations readers accept for the filters they also know by name.
FILTER_ALIASES = {b"Fl": b"FlateDecode", b"DCT": b"DCTDecode", b"CCF": b"CCITTFaxDecode"}
# Codecs that decode into an image's pixels rather than inflate: not bounded here, not chains.
IMAGE_CODECS = frozenset({"DCTDecode", "JPXDecode", "CCITTFaxDecode", "JBIG2Decode"})
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
    # How long the body may go without a byte, and take in all (``receive_upload``): a slow link from mainland China
    # gets there; a sender that trickles bytes to hold one of the replica's upload slots does not.
    idle_seconds: float = 60.0
    upload_seconds: float = 900.0

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
    after it has filled the memory. Each stream's /Filter is read from its dictionary: none, /FlateDecode alone
    (inflated, and refused if it does not inflate) or one image codec (not inflated: a reader decodes it into
    pixels); any other filter or chain (ASCIIHex, ASCII85, LZW, RunLength, Crypt, ...) is refused, as is a stream
    whose dictionary cannot be read."""

    def __init__(self, allowance: int) -> None:
        self.allowance = allowance
        self.inflated = 0
        self._context = b""  # the bytes before the scan position, where the next stream's dictionary is
        self._pending = b""  # the end of the last chunk, where a "stream" keyword may begin
        self._inflating: zlib._Decompress | None = None

    def feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        self._pending = b""
        while data:
            if self._inflating is not None:
                data = self._inflate(data)
                continue
            found = PDF_STREAM.search(data)
            if found is None or (found.group(1) == b"\r" and found.end() == len(data)):
                # Undecided: a keyword (or its CR, which may yet be a CR LF) may go on in the next chunk.
                keep = _undecided_from(data) if found is None else max(found.start() - 1, 0)
                self._remember(data[:keep])
                self._pending = data[keep:]
                return
            filters = _filters_of(self._context + data[: found.start()])
            self._context = b""
            data = data[found.end() :]
            if filters in ((), ("FlateDecode",)):
                self._inflating = zlib.decompressobj() if filters else None
            elif len(filters) == 1 and filters[0] in IMAGE_CODECS:
                continue  # a reader decodes these into pixels, not into memory without bound; scan on
            else:
                raise RefusedDocument(
                    422,
                    "unsupported_filter",
                    f"a stream is encoded with {' '.join(filters)}; only FlateDecode and image codecs are accepted",
                )

    def finish(self) -> None:
        """The file ended: a Flate stream still inflating was cut short."""
        if self._inflating is not None:
            raise RefusedDocument(422, "broken_pdf", "a Flate stream ends before its compressed data does")

    def _remember(self, scanned: bytes) -> None:
        self._context = (self._context + scanned)[-DICTIONARY_BYTES:]

    def _inflate(self, data: bytes) -> bytes:
        """Inflate ``data`` into the current stream; what follows the stream's end (to scan on)."""
        assert self._inflating is not None
        pending = data
        while pending:
            try:
                out = self._inflating.decompress(pending, INFLATE_STEP)
            except zlib.error as exc:
                # A broken or disguised stream: what a reader makes of it cannot be bounded here.
                raise RefusedDocument(422, "broken_pdf", f"a Flate stream does not inflate: {exc}") from None
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


def _undecided_from(data: bytes) -> int:
    """Where the bytes that may still become a "stream" keyword begin (with the byte before it, for the
    look-behind): a "stream" followed only by blanks, else the last few bytes."""
    start = data.rfind(b"stream")
    if start >= 0 and not data[start + 6 :].strip(b" \t"):
        return max(start - 1, 0)
    return max(len(data) - 6, 0)


def _filters_of(before: bytes) -> tuple[str, ...]:
    """The filter names of the stream whose dictionary ends ``before`` (the bytes since its "obj" keyword)."""
    objects = list(PDF_OBJ.finditer(before))
    if not objects:
        raise RefusedDocument(422, "broken_pdf", "a stream's dictionary cannot be read (no object starts it)")
    dictionary = PDF_NAME_ESCAPE.sub(lambda code: bytes([int(code.group(1), 16)]), before[objects[-1].end() :])
    keys = PDF_FILTER_KEY.findall(dictionary)
    if not keys:
        return ()
    values = PDF_FILTER.findall(dictionary)
    if len(keys) > 1 or len(values) != 1:  # twice, or an indirect reference: what a reader uses is unclear
        raise RefusedDocument(422, "broken_pdf", "a stream's /Filter cannot be read")
    names = re.findall(rb"/([^\s/\[\]<>()%{}]+)", values[0])
    return tuple(FILTER_ALIASES.get(name, name).decode("latin-1") for name in names)


async def check_pdf(chunks: AsyncIterator[bytes], size: int, limits: DocumentLimits) -> int:
    """Inflate every Flate stream of the PDF whose bytes ``chunks`` yields; the bytes they inflate to, or
    ``RefusedDocument`` past the allowance for its ``size``."""
    budget = FlateBudget(limits.inflated_allowance(size))
    async for chunk in chunks:
        # Inflating is CPU work (up to the allowance): off the event loop, so other requests go on meanwhile.
        await asyncio.to_thread(budget.feed, chunk)
    budget.finish()
    return budget.inflated
