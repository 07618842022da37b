"""Common Media Client Data (CTA-5004): the player's request headers and the edge's parser.

Encoding: keys are grouped into the four headers the spec defines (Object, Request, Session,
Status); string values are quoted, booleans are sent as the bare key when true and left out when
false, numbers are integers (kbps, ms), buffer length is rounded to the nearest 100 ms as the spec
asks. Decoding: `parse_cmcd` reads one payload (a header value or the `CMCD` query parameter),
typed per section 3.3, and raises `CmcdError` for anything else.
"""

from __future__ import annotations

import posixpath
import re
from urllib.parse import urlsplit

from server.formats.urls import redact_path

CMCD_HEADERS = ("CMCD-Object", "CMCD-Request", "CMCD-Session", "CMCD-Status")
# CTA-5004 section 3.3, table 1: the reserved keys and their value types. Other keys are custom
# (they must contain a hyphen) and keep whatever type their value has.
_CMCD_INTEGER_KEYS = frozenset({"br", "bl", "d", "dl", "mtp", "rtp", "tb", "v"})
_CMCD_DECIMAL_KEYS = frozenset({"pr"})
_CMCD_BOOLEAN_KEYS = frozenset({"bs", "su"})
_CMCD_STRING_KEYS = frozenset({"cid", "nor", "nrr", "sid"})
_CMCD_TOKEN_VALUES = {"ot": frozenset({"m", "a", "v", "av", "i", "c", "tt", "k", "o"}),
                      "sf": frozenset({"d", "h", "s", "o"}),
                      "st": frozenset({"v", "l"})}
_CMCD_MAX_STRING_CHARS = {"cid": 64, "sid": 64}
_CMCD_MAX_PAYLOAD_CHARS = 4096
# One `key[=value]` item and its separator: a value is a quoted string (printable ASCII, with `\"` and
# `\\` escaped) or a bare token or number; a key without a value is boolean true.
_CMCD_ITEM = re.compile(r'[ \t]*([a-z0-9][a-z0-9._-]{0,63})'
                        r'(?:=("(?:[ !#-\[\]-~]|\\["\\])*"|[^,\s"\\]+))?[ \t]*(?:(,)|\Z)')
_CMCD_ESCAPE = re.compile(r"\\(.)")
_CMCD_KEY = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_CMCD_BARE = re.compile(r'[^,\s"\\]+')
_CMCD_INT = re.compile(r"^-?\d{1,15}$")
_CMCD_DECIMAL = re.compile(r"^-?\d{1,12}(?:\.\d{1,3})?$")

CmcdValue = bool | int | float | str


class CmcdError(ValueError):
    """A CMCD payload that does not follow CTA-5004."""


def parse_cmcd(payload: str) -> dict[str, CmcdValue]:
    """Key/value pairs of one CMCD payload (`br=3200,bs,ot=v,sid="..."`), typed as CTA-5004 says."""
    if len(payload) > _CMCD_MAX_PAYLOAD_CHARS:
        raise CmcdError("CMCD payload too long")
    plain = _parse_plain(payload)  # the edge parses one per request: the common shape first
    return plain if plain is not None else _parse_items(payload)


def _parse_plain(payload: str) -> dict[str, CmcdValue] | None:
    """`parse_cmcd` of a payload without backslashes, without whitespace outside quoted values and
    without commas inside them (what players send), split on commas; None for anything else, or
    anything it does not take, which `_parse_items` then reads (and reports) item by item."""
    if "\\" in payload or payload.endswith(","):
        return None  # a trailing ',' is reported before its item's value is checked (`_parse_items`)
    out: dict[str, CmcdValue] = {}
    for item in payload.split(","):
        key, eq, raw = item.partition("=")
        if key in out or _CMCD_KEY.fullmatch(key) is None:
            return None
        value: CmcdValue
        quoted = eq and raw[:1] == '"'
        if not eq:
            value = True
        elif quoted:
            value = raw[1:-1]
            if len(raw) < 2 or raw[-1] != '"' or '"' in value or not (value.isascii() and value.isprintable()):
                return None
        elif _CMCD_BARE.fullmatch(raw) is None:
            return None
        else:
            value = _cmcd_bare(raw)
        out[key] = _cmcd_typed(key, value, bool(quoted))
    return out


def _parse_items(payload: str) -> dict[str, CmcdValue]:
    """`parse_cmcd` item by item with the grammar's one regular expression (any payload)."""
    out: dict[str, CmcdValue] = {}
    pos, end = 0, len(payload)
    while pos < end:
        item = _CMCD_ITEM.match(payload, pos)
        if item is None:
            raise CmcdError(f"malformed CMCD at offset {pos}")
        key, raw, separator = item.groups()
        pos = item.end()
        if separator and pos == end:
            raise CmcdError("trailing ',' in CMCD payload")
        if key in out:
            raise CmcdError(f"duplicate CMCD key {key!r}")
        value: CmcdValue
        quoted = raw is not None and raw[0] == '"'
        if raw is None:
            value = True
        elif quoted:
            value = _CMCD_ESCAPE.sub(r"\1", raw[1:-1])
        else:
            value = _cmcd_bare(raw)
        out[key] = _cmcd_typed(key, value, quoted)
    return out


def _cmcd_bare(text: str) -> CmcdValue:
    if text in ("?1", "true"):
        return True
    if text in ("?0", "false"):
        return False
    if _CMCD_INT.match(text):
        return int(text)
    if _CMCD_DECIMAL.match(text):
        return float(text)
    return text


def _cmcd_typed(key: str, value: CmcdValue, quoted: bool) -> CmcdValue:
    if key in _CMCD_INTEGER_KEYS:
        if type(value) is not int:
            raise CmcdError(f"CMCD key {key!r} must be an integer")
    elif key in _CMCD_DECIMAL_KEYS:
        if type(value) not in (int, float):
            raise CmcdError(f"CMCD key {key!r} must be a decimal")
        value = float(value)
    elif key in _CMCD_BOOLEAN_KEYS:
        if type(value) is not bool:
            raise CmcdError(f"CMCD key {key!r} is a boolean (sent bare when true)")
    elif key in _CMCD_STRING_KEYS:
        if not quoted:
            raise CmcdError(f"CMCD key {key!r} must be a quoted string")
        if len(value) > _CMCD_MAX_STRING_CHARS.get(key, 1024):
            raise CmcdError(f"CMCD key {key!r} is too long")
        if key == "nor":
            value = redact_path(value)
    elif key in _CMCD_TOKEN_VALUES:
        if quoted or value not in _CMCD_TOKEN_VALUES[key]:
            raise CmcdError(f"CMCD key {key!r} has an unknown token")
    elif "-" not in key:
        raise CmcdError(f"unknown CMCD key {key!r} (custom keys contain a hyphen)")
    return value


# --------------------------------------------------------------------------- encoding
def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _join(items: list[str]) -> str:
    return ",".join(sorted(items))


def relative_url(target: str, base: str) -> str:
    """`nor` is relative to the requested object's URL (CTA-5004 5.1)."""
    t, b = urlsplit(target), urlsplit(base)
    if (t.scheme, t.netloc) != (b.scheme, b.netloc):
        return target
    return posixpath.relpath(t.path, posixpath.dirname(b.path) or "/")


def cmcd_headers(*, bitrate_kbps: int, buffer_ms: float, starved: bool, duration_ms: float, measured_kbps: float,
                 object_type: str, session_id: str, content_id: str, startup: bool, next_url: str | None,
                 base_url: str) -> dict[str, str]:
    """The CMCD headers of one media request (ot: v video, a audio, i init, m manifest, k key)."""
    obj = [f"br={int(bitrate_kbps)}", f"d={int(round(duration_ms))}", f"ot={object_type}"]
    request = [f"bl={int(round(buffer_ms / 100.0) * 100)}"]
    if measured_kbps > 0:
        request.append(f"mtp={int(round(measured_kbps / 100.0) * 100)}")
    if next_url:
        request.append(f"nor={_quote(relative_url(next_url, base_url))}")
    if startup:
        request.append("su")
    session = [f"sid={_quote(session_id)}", f"cid={_quote(content_id)}", "sf=d", "st=v"]
    headers = {"CMCD-Object": _join(obj), "CMCD-Request": _join(request), "CMCD-Session": _join(session)}
    if starved:
        headers["CMCD-Status"] = "bs"
    return headers
