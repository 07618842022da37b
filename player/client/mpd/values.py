"""Attribute values of an MPD, checked: unsigned and signed integers, xs:duration, byte ranges,
frame and sampling rates, KIDs and URL references. Each error names the element and attribute.
"""

from __future__ import annotations

import math
import re
import uuid
from fractions import Fraction
from urllib.parse import urljoin
from xml.etree.ElementTree import Element

from player.client.mpd.limits import _MAX_UINT64, MAX_DURATION_S, MAX_FRAME_RATE, MAX_SAMPLE_RATE_HZ, MpdError
from server.formats.dash import MPD_NS


def _q(name: str) -> str:
    return f"{{{MPD_NS}}}{name}"


_UINT = re.compile(r"[0-9]{1,20}")
_INT = re.compile(r"-?[0-9]{1,20}")
_NUM = r"([0-9]{1,15}(?:\.[0-9]{0,15})?)"
# xs:duration restricted to non-negative values (years and months taken as 365 and 30 days)
_DURATION = re.compile(rf"P(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?")
_DURATION_UNITS_S = (365 * 86400, 30 * 86400, 86400, 3600, 60, 1)
_BYTE_RANGE = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
_FRAME_RATE = re.compile(r"([0-9]{1,10})(?:/([0-9]{1,10}))?|[0-9]{1,10}\.[0-9]{1,10}")


def _show(value: str) -> str:
    """A value for an error message, cut short (a hostile one can be megabytes long)."""
    return repr(value if len(value) <= 60 else value[:60] + "...")


def _uint(
    el: Element, name: str, where: str, *, default: int | None = None, minimum: int = 0, maximum: int = _MAX_UINT64
) -> int | None:
    raw = el.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not _UINT.fullmatch(text):
        raise MpdError(f"{where}: @{name}={_show(raw)} is not an unsigned integer")
    value = int(text)
    if not minimum <= value <= maximum:
        raise MpdError(f"{where}: @{name}={_show(raw)} is out of range [{minimum}, {maximum}]")
    return value


def _required_uint(el: Element, name: str, where: str, *, minimum: int = 0, maximum: int = _MAX_UINT64) -> int:
    value = _uint(el, name, where, minimum=minimum, maximum=maximum)
    if value is None:
        raise MpdError(f"{where}: the required attribute @{name} is missing")
    return value


def _signed(el: Element, name: str, where: str, *, default: int, minimum: int, maximum: int) -> int:
    raw = el.get(name)
    if raw is None:
        return default
    text = raw.strip()
    if not _INT.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a whole number in [{minimum}, {maximum}]")
    return int(text)


def _duration_s(el: Element, name: str, where: str, *, allow_zero: bool = False) -> float | None:
    """An xs:duration attribute in seconds (ISO/IEC 23009-1 uses it for every time attribute)."""
    raw = el.get(name)
    if raw is None:
        return None
    text = raw.strip()
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a non-negative xs:duration like PT4.5S")
    seconds = sum(float(part) * unit for part, unit in zip(match.groups(), _DURATION_UNITS_S) if part)
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        raise MpdError(f"{where}: @{name}={_show(raw)} is longer than {MAX_DURATION_S:.0f} s")
    if seconds == 0 and not allow_zero:
        raise MpdError(f"{where}: @{name}={_show(raw)} must be greater than zero")
    return seconds


def _byte_range(el: Element, name: str, where: str) -> tuple[int, int] | None:
    raw = el.get(name)
    if raw is None:
        return None
    match = _BYTE_RANGE.fullmatch(raw.strip())
    if match is None:
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a byte range FIRST-LAST")
    first, last = int(match.group(1)), int(match.group(2))
    if first > last or last > _MAX_UINT64:
        raise MpdError(f"{where}: @{name}={_show(raw)} is not a byte range with FIRST <= LAST")
    return first, last


def _frame_rate(el: Element, where: str) -> Fraction | None:
    """@frameRate: an integer or a ratio like 30000/1001 (5.3.7.2; decimals accepted too)."""
    raw = el.get("frameRate")
    if raw is None:
        return None
    text = raw.strip()
    match = _FRAME_RATE.fullmatch(text)
    if match is None or match.group(2) == "0":
        raise MpdError(f"{where}: @frameRate={_show(raw)} is not a frame rate like 24 or 30000/1001")
    rate = Fraction(text)
    if not 0 < rate <= MAX_FRAME_RATE:
        raise MpdError(f"{where}: @frameRate={_show(raw)} is out of range (0, {MAX_FRAME_RATE}]")
    return rate


def _sampling_rate_hz(el: Element, where: str) -> int | None:
    """@audioSamplingRate: one rate, or 'min max' for a variable rate (we keep the first)."""
    raw = el.get("audioSamplingRate")
    if raw is None:
        return None
    first = raw.split()[0] if raw.split() else ""
    if not _UINT.fullmatch(first) or not 0 < int(first) <= MAX_SAMPLE_RATE_HZ:
        raise MpdError(f"{where}: @audioSamplingRate={_show(raw)} is not a rate in (0, {MAX_SAMPLE_RATE_HZ}] Hz")
    return int(first)


def _kid(raw: str, where: str) -> str:
    try:
        return uuid.UUID(raw.strip()).hex
    except ValueError:
        raise MpdError(f"{where}: @cenc:default_KID={_show(raw)} is not a UUID") from None


def _join(base: str, reference: str, where: str) -> str:
    try:
        return urljoin(base, reference)
    except ValueError as exc:
        raise MpdError(f"{where}: cannot resolve URL {_show(reference)} against {_show(base)}: {exc}") from None
