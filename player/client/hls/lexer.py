"""The lexical layer of an HLS playlist (RFC 8216 section 4.1-4.2): bytes to numbered lines, and
attribute lists to checked values. Every error names the playlist, the line and the tag.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from urllib.parse import urljoin, urlsplit

from player.client.hls.limits import MAX_ATTRIBUTES, MAX_LINE_CHARS, MAX_PLAYLIST_BYTES, MAX_PLAYLIST_LINES, HlsError
from server.formats.hls import EXTM3U

# One attribute: NAME=VALUE where VALUE is a quoted-string or runs to the next comma (4.2), with
# the whitespace some writers put after commas tolerated. Linear: no nested quantifiers.
_ATTRIBUTE = re.compile(r'\s*([A-Za-z0-9-]+)\s*=\s*("[^"\r\n]*"|[^",\s]*)\s*(?:,|$)')
_DECIMAL_INTEGER = re.compile(r"[0-9]{1,20}")
_DECIMAL_FLOAT = re.compile(r"-?[0-9]{1,20}(?:\.[0-9]{0,20})?")
_HEX = re.compile(r"0[xX]([0-9A-Fa-f]{1,64})")
_RESOLUTION = re.compile(r"([0-9]{1,10})[xX]([0-9]{1,10})")
_BYTERANGE = re.compile(r"([0-9]{1,20})(?:@([0-9]{1,20}))?")


def show(value: str) -> str:
    """A value for an error message, cut short (a hostile one can be very long)."""
    return repr(value if len(value) <= 60 else value[:60] + "...")


@dataclass(frozen=True, slots=True)
class Line:
    """One non-blank line: its 1-based number, and the tag name (None for a URI line) and value."""

    number: int
    text: str
    tag: str | None  # "#EXTINF", "#EXT-X-KEY", ...; None for a URI line
    value: str  # what follows "TAG:" (empty for a tag without one); the URI itself for a URI line


class Source:
    """A playlist's text and where it came from; makes the errors that name a line."""

    def __init__(self, text: str | bytes, url: str) -> None:
        if not urlsplit(url).scheme:
            raise HlsError(f"the playlist URL must be absolute, got {show(url)}")
        self.url = url
        self.name = urlsplit(url).path.rsplit("/", 1)[-1] or url
        self.text = self._decode(text)

    def error(self, line: Line | int | None, problem: str) -> HlsError:
        if line is None:
            return HlsError(f"HLS playlist {self.name}: {problem}")
        if isinstance(line, int):
            return HlsError(f"HLS playlist {self.name} line {line}: {problem}")
        where = f"{line.tag}" if line.tag else f"URI {show(line.value)}"
        return HlsError(f"HLS playlist {self.name} line {line.number}: {where}: {problem}")

    def _decode(self, text: str | bytes) -> str:
        if isinstance(text, (bytes, bytearray, memoryview)):
            data = bytes(text)
            if len(data) > MAX_PLAYLIST_BYTES:
                raise self.error(None, f"is {len(data)} bytes, more than the {MAX_PLAYLIST_BYTES} allowed")
            if data.startswith(b"\xef\xbb\xbf"):
                data = data[3:]
            try:
                return data.decode("utf-8")  # RFC 8216 4.1: UTF-8, no BOM, no control characters but CR/LF/tab
            except UnicodeDecodeError as exc:
                raise self.error(None, f"is not valid UTF-8 (byte {exc.start})") from None
        if not isinstance(text, str):
            raise self.error(None, f"must be str or bytes, got {type(text).__name__}")
        if len(text) > MAX_PLAYLIST_BYTES:
            raise self.error(None, f"is {len(text)} characters, more than the {MAX_PLAYLIST_BYTES} allowed")
        return text.removeprefix("\ufeff")

    def lines(self) -> Iterator[Line]:
        """The non-blank lines, after checking the #EXTM3U header and the size budgets."""
        text = self.text
        if max(text.count("\n"), text.count("\r")) > MAX_PLAYLIST_LINES:
            raise self.error(None, f"has more than {MAX_PLAYLIST_LINES} lines")
        first = True
        for number, raw in enumerate(text.splitlines(), 1):
            if number > MAX_PLAYLIST_LINES:
                raise self.error(None, f"has more than {MAX_PLAYLIST_LINES} lines")
            if len(raw) > MAX_LINE_CHARS:
                raise self.error(number, f"is {len(raw)} characters long, more than the {MAX_LINE_CHARS} allowed")
            stripped = raw.strip()
            if first:
                if stripped != EXTM3U:
                    raise self.error(None, f"does not start with {EXTM3U} (line 1 is {show(stripped)}): "
                                           "not an HLS playlist")
                first = False
                continue
            if not stripped:
                continue
            if any(ord(c) < 32 and c != "\t" for c in stripped):
                raise self.error(number, "holds a control character")
            if stripped.startswith("#EXT"):
                tag, _, value = stripped.partition(":")
                yield Line(number, stripped, tag.upper(), value)
            elif stripped.startswith("#"):
                continue  # a comment (4.1)
            else:
                yield Line(number, stripped, None, stripped)
        if first:
            raise self.error(None, f"is empty: not an HLS playlist (no {EXTM3U} header)")

    # -- values ------------------------------------------------------------------------------------

    def attributes(self, line: Line) -> dict[str, str]:
        """The attribute list of a tag (4.2): NAME -> raw value (quoted strings keep their quotes)."""
        out: dict[str, str] = {}
        text, pos = line.value, 0
        while pos < len(text):
            match = _ATTRIBUTE.match(text, pos)
            if match is None or match.end() == pos:
                raise self.error(line, f"malformed attribute list at {show(text[pos:])} "
                                       "(expected NAME=VALUE pairs separated by commas)")
            out[match.group(1).upper()] = match.group(2)
            if len(out) > MAX_ATTRIBUTES:
                raise self.error(line, f"has more than {MAX_ATTRIBUTES} attributes")
            pos = match.end()
        return out

    def quoted(self, line: Line, attrs: dict[str, str], name: str, *, required: bool = False) -> str | None:
        raw = attrs.get(name)
        if raw is None:
            if required:
                raise self.error(line, f"the required attribute {name} is missing")
            return None
        if len(raw) < 2 or not raw.startswith('"') or not raw.endswith('"'):
            raise self.error(line, f"{name}={show(raw)} must be a quoted string")
        return raw[1:-1]

    def enumerated(self, line: Line, attrs: dict[str, str], name: str, *, required: bool = False) -> str | None:
        raw = attrs.get(name)
        if raw is None:
            if required:
                raise self.error(line, f"the required attribute {name} is missing")
            return None
        # Tolerated: a quoted enumerated string (some writers quote everything).
        return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw

    def integer(self, line: Line, raw: str, name: str, *, minimum: int = 0, maximum: int = 2**63 - 1) -> int:
        text = raw.strip()
        if not _DECIMAL_INTEGER.fullmatch(text):
            raise self.error(line, f"{name}={show(raw)} is not a decimal integer")
        value = int(text)
        if not minimum <= value <= maximum:
            raise self.error(line, f"{name}={show(raw)} is out of range [{minimum}, {maximum}]")
        return value

    def decimal(self, line: Line, raw: str, name: str, *, minimum: float, maximum: float,
                allow_zero: bool = True) -> float:
        text = raw.strip()
        if not _DECIMAL_FLOAT.fullmatch(text):
            raise self.error(line, f"{name}={show(raw)} is not a decimal number")
        value = float(text)
        if not (math.isfinite(value) and minimum <= value <= maximum) or (value == 0 and not allow_zero):
            bound = f"({minimum:g}" if not allow_zero else f"[{minimum:g}"
            raise self.error(line, f"{name}={show(raw)} is out of range {bound}, {maximum:g}]")
        return value

    def frame_rate(self, line: Line, raw: str, maximum: Fraction) -> Fraction:
        self.decimal(line, raw, "FRAME-RATE", minimum=0, maximum=float(maximum), allow_zero=False)
        return Fraction(raw.strip()).limit_denominator(1001)

    def hex_bytes(self, line: Line, raw: str, name: str, size: int) -> bytes:
        match = _HEX.fullmatch(raw.strip())
        if match is None or len(match.group(1)) > 2 * size:
            raise self.error(line, f"{name}={show(raw)} is not a hexadecimal number of up to {size} bytes")
        return int(match.group(1), 16).to_bytes(size, "big")

    def resolution(self, line: Line, raw: str, maximum: int) -> tuple[int, int]:
        match = _RESOLUTION.fullmatch(raw.strip())
        if match is None:
            raise self.error(line, f"RESOLUTION={show(raw)} is not WIDTHxHEIGHT")
        width, height = int(match.group(1)), int(match.group(2))
        if not (0 < width <= maximum and 0 < height <= maximum):
            raise self.error(line, f"RESOLUTION={show(raw)} is out of range (0, {maximum}]")
        return width, height

    def byte_range(self, line: Line, raw: str, name: str) -> tuple[int, int | None]:
        """`n[@o]` (4.3.2.2) as (length, offset or None)."""
        match = _BYTERANGE.fullmatch(raw.strip())
        if match is None:
            raise self.error(line, f"{name}={show(raw)} is not a byte range LENGTH[@OFFSET]")
        length = int(match.group(1))
        if length == 0 or length > 2**62:
            raise self.error(line, f"{name}={show(raw)} has a length out of range [1, 2^62]")
        offset = int(match.group(2)) if match.group(2) is not None else None
        if offset is not None and offset > 2**62:
            raise self.error(line, f"{name}={show(raw)} has an offset out of range [0, 2^62]")
        return length, offset

    def resolve(self, line: Line, reference: str, *, schemes: tuple[str, ...] = ("http", "https")) -> str:
        """A URI of the playlist, resolved against the playlist's own URL (RFC 8216 4.1, RFC 3986)."""
        try:
            url = urljoin(self.url, reference.strip())
        except ValueError as exc:
            raise self.error(line, f"cannot resolve URI {show(reference)}: {exc}") from None
        scheme = urlsplit(url).scheme.lower()
        if scheme not in schemes:
            raise self.error(line, f"URI {show(reference)} has scheme {scheme!r}; only {', '.join(schemes)} "
                                   "are supported")
        return url
