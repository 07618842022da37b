"""CMCD (CTA-5004) on the edge: read from a request's `CMCD` query parameter and headers (the parser
is server.formats.cmcd), for its access-log line only, where it is parsed and counted when the line
is written (docs/EDGE.md, "CMCD")."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import unquote

from aiohttp import web

from server.edgemetrics import EdgeStats
from server.formats.cmcd import CMCD_HEADERS, CmcdError, CmcdValue, parse_cmcd
from server.observability import DeferredLogFields


def cmcd_from_request(request: web.BaseRequest) -> tuple[dict[str, CmcdValue], str | None] | None:
    """CMCD sent with a request (query parameter `CMCD` and/or the four headers), merged, with the first
    problem found; None when the request carries no CMCD. A malformed part is dropped, not fatal."""
    return cmcd_from(request.rel_url.raw_query_string, request.headers)


def cmcd_from(raw_query: str, headers: Mapping[str, str]) -> tuple[dict[str, CmcdValue], str | None] | None:
    """`cmcd_from_request` given a request's raw query string and headers."""
    sources: list[str] = []
    if "CMCD=" in raw_query:
        # Straight from the raw query: cheaper than building request.query on every segment request.
        sources.extend(unquote(part[5:]) for part in raw_query.split("&") if part.startswith("CMCD="))
    for name in CMCD_HEADERS:
        value = headers.get(name)
        if value is not None:
            sources.append(value)
    if not sources:
        return None
    merged: dict[str, CmcdValue] = {}
    error: str | None = None
    for source in sources:
        try:
            parsed = parse_cmcd(source)
        except CmcdError as exc:
            error = error or str(exc)
            continue
        clash = merged.keys() & parsed.keys()
        if clash:
            error = error or f"CMCD key {sorted(clash)[0]!r} sent twice"
        merged.update(parsed)
    return merged, error


class CmcdLogFields(DeferredLogFields):
    """A request's CMCD for its access-log line, found and parsed only when the line is written (and
    counted in the edge's metrics then: requests with CMCD, and those with a malformed part)."""

    __slots__ = ("raw_query", "headers", "stats")

    def __init__(self, raw_query: str, headers: Mapping[str, str], stats: EdgeStats) -> None:
        self.raw_query = raw_query
        self.headers = headers
        self.stats = stats

    def resolve(self) -> Mapping[str, object]:
        found = cmcd_from(self.raw_query, self.headers)
        if found is None:
            return {}
        cmcd, error = found
        self.stats.cmcd_requests += 1
        if error is None:
            return {"cmcd": cmcd}
        self.stats.cmcd_errors += 1
        return {"cmcd": cmcd, "cmcd_error": error}
