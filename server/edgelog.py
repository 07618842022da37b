"""The access-log line of a fast cache hit (server/edgefast.py), written by hand.

`JsonAccessLogger.write_entry` builds a dict per request, parses the request's CMCD into another and
runs the JSON encoder over both: on a 100 kB hit that was a fifth of the edge's CPU. `HitLogLine`
writes the same text (same keys in the same order, same number formatting; tested against the
encoder) from parts that do not change between requests: the service and edge names, each object's
redacted path (`CachedObject.log_path_json`), each connection's address, and each CMCD item's JSON
text, remembered by `CmcdJson`. Players send the same items on request after request (`ot`, `br`,
`d`, `sid`, `cid`, `sf`, `st`; `bl` and `mtp` are rounded to 100 by CTA-5004), so an item is parsed
once and then looked up. A payload outside the common shape (escapes, whitespace, a key sent twice,
a malformed item, an error to report) takes the full parser (`server.edgecmcd`), so the line and the
CMCD metrics are those of the full handler in every case.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping
from urllib.parse import unquote

from server.accesslog import fast_sink
from server.edgecmcd import CmcdLogFields
from server.edgemetrics import EdgeStats
from server.formats.cmcd import CMCD_HEADERS, CmcdError, parse_cmcd

# The access log's encoder (server.observability): compact separators, ASCII only.
_JSON = json.JSONEncoder(separators=(",", ":"), default=str)
_ITEMS_MAX = 4096  # remembered CMCD items per process; forgotten all at once past this
_PAYLOAD_MAX_CHARS = 4096  # server.formats.cmcd's bound on one payload (longer ones: the full parser)


def json_text(value: object) -> str:
    """`value` as the access log's JSON encoder writes it."""
    return _JSON.encode(value)


class CmcdJson:
    """CMCD payloads as the JSON object text of their parsed, merged keys, from remembered items;
    None for anything the common shape does not cover (the caller then uses the full parser)."""

    __slots__ = ("_items",)

    def __init__(self) -> None:
        # An item as sent (percent-encoded when from the query) -> (key, `"key":value` JSON text),
        # or None: not an item of the common shape.
        self._items: dict[str, tuple[str, str] | None] = {}

    def object_text(self, raw_query: str, headers: Mapping[str, str]) -> str | None:
        """The `{...}` of a request's CMCD (query parameter `CMCD`, then the four headers, merged),
        "" when it carries none, None when only the full parser can say (see the module docstring)."""
        parts: list[str] = []
        keys: set[str] = set()
        if "CMCD=" in raw_query:
            for param in raw_query.split("&"):
                if param.startswith("CMCD="):
                    encoded = param[5:]
                    if len(encoded) > _PAYLOAD_MAX_CHARS or not self._add(
                            encoded.replace("%2c", ",").replace("%2C", ",").split(","), True, parts, keys):
                        return None
        for name in CMCD_HEADERS:
            value = headers.get(name)
            if value is not None and (len(value) > _PAYLOAD_MAX_CHARS
                                      or not self._add(value.split(","), False, parts, keys)):
                return None
        if not keys:
            return "" if not parts else None
        return "{" + ",".join(parts) + "}"

    def _add(self, items: list[str], encoded: bool, parts: list[str], keys: set[str]) -> bool:
        known = self._items
        for item in items:
            try:
                found = known[item]
            except KeyError:
                found = self._learn(item, encoded)
            if found is None or found[0] in keys:
                return False
            keys.add(found[0])
            parts.append(found[1])
        return True

    def _learn(self, item: str, encoded: bool) -> tuple[str, str] | None:
        """Parse one item (percent-decoded first when it came from the query) and remember it."""
        text = unquote(item) if encoded else item
        found: tuple[str, str] | None = None
        # Plain items only: no escapes, no whitespace around them, nothing the split could have cut.
        if text and "\\" not in text and text.strip(" \t") == text and "," not in text:
            try:
                parsed = parse_cmcd(text)
            except CmcdError:
                parsed = {}
            if len(parsed) == 1:
                key, value = next(iter(parsed.items()))
                found = (key, f"{json_text(key)}:{json_text(value)}")
        if len(self._items) >= _ITEMS_MAX:
            self._items.clear()
        self._items[item] = found
        return found


class HitLogLine:
    """Writes a fast hit's access-log line: the line `JsonAccessLogger.write_entry` would write for it
    (`extra` = edge_id and cache HIT, CMCD deferred), to the buffered sink when it is the logger's only
    destination, else through `logging` as `write_entry` does."""

    __slots__ = ("logger", "stats", "cmcd", "_service", "_extra")

    def __init__(self, logger: logging.Logger, service: str, edge_id: str, stats: EdgeStats) -> None:
        self.logger = logger
        self.stats = stats  # CMCD is counted as the full handler counts it (server.edgecmcd)
        self.cmcd = CmcdJson()
        self._service = json_text(service)
        self._extra = f',"edge_id":{json_text(edge_id)},"cache":"HIT"'

    def write(self, *, request_id: str, path_json: str, size_bytes: int, duration_s: float, remote_json: str,
              raw_query: str, headers: Mapping[str, str]) -> None:
        """One line; `request_id` as `choose_request_id` gives it (no character JSON escapes),
        `path_json` and `remote_json` already JSON text."""
        cmcd = self.cmcd.object_text(raw_query, headers)
        if cmcd is None:  # the full parser decides (and counts), as the full handler's line does
            resolved = CmcdLogFields(raw_query, headers, self.stats).resolve()
            tail = "," + json_text(resolved)[1:-1] if resolved else ""
        elif cmcd:
            self.stats.cmcd_requests += 1
            tail = ',"cmcd":' + cmcd
        else:
            tail = ""
        line = (f'{{"ts":{round(time.time(), 3)!r},"service":{self._service},"request_id":"{request_id}",'
                f'"method":"GET","path":{path_json},"status":200,"bytes":{size_bytes},'
                f'"duration_ms":{round(duration_s * 1000, 3)!r},"remote":{remote_json}{self._extra}{tail}}}')
        sink = fast_sink(self.logger)
        if sink is not None:
            sink.write_line(line)
        else:
            self.logger.info(line)
