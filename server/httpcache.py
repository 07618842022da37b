"""HTTP caching rules a cache applies to requests and origin answers (RFC 9110, RFC 9111).

Pure functions on header values, no I/O: which byte range a `Range` header asks for, whether an
`If-None-Match` list or an `If-Range` validator matches, and how long an origin's `Cache-Control`
lets a shared cache reuse an object. The edge (server/edge.py) is their user.
"""

from __future__ import annotations


class RangeNotSatisfiable(Exception):
    """A `Range` the object cannot satisfy: answer 416 with `Content-Range: bytes */<size>`."""


def parse_range(header: str, size_bytes: int) -> tuple[int, int] | None:
    """The (first, last) byte of a single `bytes=` range (RFC 9110 section 14.1.2) within `size_bytes`.

    None means "ignore the header and send the whole object" (syntax errors, multiple ranges: both
    allowed by RFC 9110 section 14.2); an unsatisfiable range raises `RangeNotSatisfiable`.
    """
    unit, eq, spec = header.partition("=")
    if not eq or unit.strip().lower() != "bytes" or "," in spec:
        return None
    first_text, dash, last_text = spec.strip().partition("-")
    if not dash or not (first_text.isdigit() or first_text == "") or not (last_text.isdigit() or last_text == ""):
        return None
    if first_text == "":
        if last_text == "":
            return None
        suffix = int(last_text)
        if suffix == 0 or size_bytes == 0:
            raise RangeNotSatisfiable
        return max(0, size_bytes - suffix), size_bytes - 1
    first = int(first_text)
    if last_text and int(last_text) < first:
        return None
    if first >= size_bytes:
        raise RangeNotSatisfiable
    return first, min(int(last_text), size_bytes - 1) if last_text else size_bytes - 1


def etag_matches(header: str, etag: str | None) -> bool:
    """Weak comparison (RFC 9110 section 13.1.2) of an If-None-Match list against our ETag."""
    if etag is None:
        return False
    if header.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.strip().removeprefix("W/") == ours for tag in header.split(","))


def if_range_matches(if_range: str, etag: str | None, last_modified: str | None) -> bool:
    """Whether an `If-Range` validator still names our representation, so the range applies
    (RFC 9110 section 13.1.5: a strong ETag, or exactly the Last-Modified date)."""
    return if_range == etag and not if_range.startswith("W/") or if_range == last_modified


def ttl_s(cache_control: str | None, default_s: float) -> float | None:
    """How long a shared cache may reuse an object, from the origin's Cache-Control (RFC 9111
    section 5.2.2: `s-maxage` before `max-age`); None: do not store it at all."""
    if not cache_control:
        return default_s
    directives: dict[str, str] = {}
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if "no-store" in directives or "private" in directives:
        return None
    for name in ("s-maxage", "max-age"):
        if directives.get(name, "").isdigit():
            return float(directives[name])
    if "no-cache" in directives:
        return 0.0
    return default_s
