"""Common Media Client Data (CTA-5004) request headers.

Keys are grouped into the four headers the spec defines (Object, Request, Session, Status);
string values are quoted, booleans are sent as the bare key when true and left out when false,
numbers are integers (kbps, ms), buffer length is rounded to the nearest 100 ms as the spec asks.
"""

from __future__ import annotations

import posixpath
from urllib.parse import urlsplit


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
