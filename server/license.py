"""The ClearKey license service (W3C Encrypted Media Extensions, section 9.1 "Clear Key").

`POST /license` with `{"kids": [base64url], "type": "temporary"}` and a bearer token answers
`{"keys": [{"kty": "oct", "kid", "k"}], "type": "temporary"}` (a JSON Web Key Set, RFC 7517) with
exactly the requested keys, if the token is entitled to every title they belong to (or to a live
channel that loops that title: the channel is encrypted with its source's keys). Keys come from
`<content_root>/<title>/keys.json`; the audit log says who got which KID, never the key.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from server.config import LicenseConfig
from server.formats.b64 import b64url_decode, b64url_encode
from server.formats.names import is_valid_title
from server.httpapi import BadRequest, json_error, read_json_body
from server.internal import healthz, service_middlewares
from server.observability import METRICS, Metrics, add_log_fields, metrics_handler, request_id
from server.revocation import StoreUnavailable
from server.tokens import TOKENS, Claims, TokenError, TokenVerifier, authenticate, unauthorized, unavailable

Clock = Callable[[], float]
log = logging.getLogger("abrkit.license")
audit_log = logging.getLogger("abrkit.audit")

KID_BYTES = 16
_B64URL_KID = re.compile(r"^[A-Za-z0-9_-]{22}(==)?$")
_HEX_16 = re.compile(r"^[0-9a-fA-F]{32}$")


def decode_kid(text: object) -> bytes:
    """A 16-byte key id from canonical base64url (padding optional); `BadRequest` otherwise."""
    if not isinstance(text, str) or not _B64URL_KID.match(text):
        raise BadRequest("each kid must be the base64url encoding of 16 bytes")
    raw = b64url_decode(text.rstrip("="))
    if b64url_encode(raw) != text.rstrip("="):  # non-zero trailing bits: not the canonical encoding
        raise BadRequest("each kid must be the base64url encoding of 16 bytes")
    return raw


def parse_license_request(body: object, *, max_kids: int) -> list[bytes]:
    """The distinct KIDs of a ClearKey license request, in request order."""
    if not isinstance(body, dict):
        raise BadRequest("license request must be a JSON object")
    kind = body.get("type", "temporary")
    if kind != "temporary":
        raise BadRequest("only 'temporary' licenses are issued")
    kids = body.get("kids")
    if not isinstance(kids, list) or not kids:
        raise BadRequest("'kids' must be a non-empty list")
    if len(kids) > max_kids:
        raise BadRequest(f"too many kids (max {max_kids})")
    return list(dict.fromkeys(decode_kid(k) for k in kids))


@dataclass(frozen=True, slots=True)
class ContentKey:
    kid: bytes
    title: str
    key: bytes = field(repr=False)


def read_key_store(path: Path, title: str) -> list[ContentKey]:
    """The keys of one title's `keys.json` (`ValueError` if malformed)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("expected {'title': ..., 'keys': [...]}")
    out = []
    for entry in data["keys"]:
        kid, key = entry.get("kid") if isinstance(entry, dict) else None, entry.get("key") if isinstance(entry, dict) else None
        if not isinstance(kid, str) or not isinstance(key, str) or not _HEX_16.match(kid) or not _HEX_16.match(key):
            raise ValueError("each key needs 32-hex-digit 'kid' and 'key'")
        out.append(ContentKey(kid=bytes.fromhex(kid), title=title, key=bytes.fromhex(key)))
    return out


class KeyStore:
    """KID -> key over every title under `content_root`; re-scanned (rate-limited) when a KID is unknown,
    so titles packaged while the service runs are found."""

    def __init__(self, content_root: Path, *, rescan_interval_s: float, clock: Clock = time.monotonic) -> None:
        self._root = content_root
        self._rescan_interval_s = rescan_interval_s
        self._clock = clock
        self._keys: dict[bytes, ContentKey] = {}
        self._scanned_at: float | None = None

    def scan(self) -> None:
        keys: dict[bytes, ContentKey] = {}
        try:
            title_dirs = sorted(p for p in self._root.iterdir() if p.is_dir())
        except FileNotFoundError:
            title_dirs = []
        for title_dir in title_dirs:
            path = title_dir / "keys.json"
            if not is_valid_title(title_dir.name) or not path.is_file():
                continue
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                log.warning("%s is readable by other users (should be mode 0600)", path)
            try:
                for key in read_key_store(path, title_dir.name):
                    keys.setdefault(key.kid, key)
            except (OSError, ValueError, AttributeError) as exc:
                log.error("skipping malformed key store %s: %s", path, exc.__class__.__name__)
        self._keys = keys
        self._scanned_at = self._clock()

    def lookup(self, kid: bytes) -> ContentKey | None:
        found = self._keys.get(kid)
        if found is None and (self._scanned_at is None or self._clock() - self._scanned_at >= self._rescan_interval_s):
            self.scan()
            found = self._keys.get(kid)
        return found

    def __len__(self) -> int:
        return len(self._keys)


_CONFIG = web.AppKey("abrkit_license_config", LicenseConfig)
_KEYS = web.AppKey("abrkit_keys", KeyStore)


def _audit(request: web.Request, claims_sub: str, jti: str, kids: list[bytes], result: str,
           titles: list[str] | None = None) -> None:
    audit_log.info(json.dumps({"event": "license", "ts": round(time.time(), 3), "request_id": request_id(request),
                               "sub": claims_sub, "jti": jti, "result": result, "titles": titles or [],
                               "kids": [k.hex() for k in kids]}, separators=(",", ":")))


def _entitled(claims: Claims, title: str, live_titles: Mapping[str, str]) -> bool:
    """Entitled to a key of `title`: to the title itself, or to a live channel that loops it (a channel
    is encrypted with its source title's keys, server/live/rewrite.py)."""
    return claims.entitled_to(title) or any(
        source == title and claims.entitled_to(channel) for channel, source in live_titles.items())


async def _license(request: web.Request) -> web.Response:
    config, store, metrics = request.app[_CONFIG], request.app[_KEYS], request.app[METRICS]
    try:
        claims = await authenticate(request)
    except TokenError as exc:
        metrics.inc("license_requests_total", labels={"result": "unauthorized"}, help="License requests by result")
        return unauthorized(exc)
    except StoreUnavailable as exc:
        metrics.inc("license_requests_total", labels={"result": "unavailable"}, help="License requests by result")
        return unavailable(exc)
    add_log_fields(request, sub=claims.subject)
    try:
        body = await read_json_body(request, max_bytes=config.max_body_bytes)
        kids = parse_license_request(body, max_kids=config.max_kids)
    except BadRequest as exc:
        metrics.inc("license_requests_total", labels={"result": "bad_request"}, help="License requests by result")
        return json_error(400, str(exc))
    found = [(kid, store.lookup(kid)) for kid in kids]
    unknown = [kid for kid, key in found if key is None]
    if unknown:
        _audit(request, claims.subject, claims.jti, kids, "unknown_kid")
        metrics.inc("license_requests_total", labels={"result": "unknown_kid"}, help="License requests by result")
        return json_error(404, "unknown key id", kids=[b64url_encode(k) for k in unknown])
    keys = [key for _, key in found if key is not None]
    titles = sorted({key.title for key in keys})
    refused = [t for t in titles if not _entitled(claims, t, config.live_titles)]
    if refused:
        _audit(request, claims.subject, claims.jti, kids, "not_entitled", titles)
        metrics.inc("license_requests_total", labels={"result": "forbidden"}, help="License requests by result")
        return json_error(403, "not entitled to this title", titles=refused)
    _audit(request, claims.subject, claims.jti, kids, "granted", titles)
    metrics.inc("license_requests_total", labels={"result": "granted"}, help="License requests by result")
    return web.json_response(
        {"keys": [{"kty": "oct", "kid": b64url_encode(k.kid), "k": b64url_encode(k.key)} for k in keys], "type": "temporary"},
        headers={"Cache-Control": "no-store"})


def create_app(config: LicenseConfig, *, tokens: TokenVerifier | None = None) -> web.Application:
    app = web.Application(middlewares=service_middlewares(config.allowed_origins, config.internal_token),
                          client_max_size=config.max_body_bytes)
    app[_CONFIG] = config
    store = KeyStore(config.content_root, rescan_interval_s=config.rescan_interval_s)
    app[_KEYS] = store
    app[TOKENS] = tokens or TokenVerifier(config.tokens)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        store.scan()
        log.info("license service holds %d content keys", len(store))
        yield
        if tokens is None:
            app[TOKENS].close()

    app.cleanup_ctx.append(lifecycle)
    app[METRICS] = Metrics()
    app.router.add_post("/license", _license)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_handler)
    return app
