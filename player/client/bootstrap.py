"""Getting from "play this" to a manifest and keys: through our stack, or from a plain MPD URL.

Through the stack (the path a streaming service's client takes):
    POST {gateway}/auth/token          -> access token
    POST {gateway}/playback/{title}    -> session id, ranked edge manifest URLs, license URL
    GET  best edge manifest.mpd        -> the MPD (failing over to the next edge)
    POST license_url (ClearKey)        -> content keys, held in memory only

A plain MPD URL needs no stack: no DRM, or keys given by the user (`--key KID:KEY`).
Keys never appear in logs, reprs or error messages.

`load_manifest` is the one place where the manifest format is recognised (DASH MPD today; an HLS
playlist is refused clearly until the HLS reader plugs in there). Timings: `PlaybackSource.timings_s`
holds the wall seconds of each step; the steps in `PREROLL_STEPS` (segment index, keys and license,
init segments) stand between having a manifest and the first media request, so they count in the
session's startup as well, except in a comparison with the simulator, which has no pre-roll: there
the report gives them apart (`PlaybackReport.preroll_s`; player/client/periods.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import urljoin, urlsplit

from player.client.fetch import Fetcher, FetchError
from player.client.hls import HlsError, load_hls, looks_like_hls
from player.client.mpd import Manifest, MpdError, Representation, parse_mpd
from player.client.renewal import StackSession, playback_url, stack_session
from player.errors import CliError
from player.video import Video, video_from_title
from server.formats.b64 import b64url_decode, b64url_encode
from server.formats.segments import parse_segments_json

_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")
# Bootstrap steps between the manifest and the first media request: they count in `startup_s`.
# sidx_s: SegmentBase indexes; license_s: the ClearKey license; key_s: content keys fetched by URI
# (HLS); init_s: init segments (timed by the player, which fetches them).
PREROLL_STEPS: tuple[str, ...] = ("sidx_s", "license_s", "key_s", "init_s")


class BootstrapError(CliError):
    """Playback could not start: the message says which step failed and why."""


@dataclass(frozen=True, kw_only=True, slots=True)
class PlaybackSource:
    """Everything the player needs to start fetching segments."""

    title: str
    manifest: Manifest
    manifest_urls: tuple[str, ...]  # the same MPD on each edge, best first (failover order)
    session_id: str
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)  # KID hex -> key hex; never logged
    license_url: str | None = None
    access_token: str | None = field(default=None, repr=False)
    sizes: Video | None = None  # segment sizes from the title's segments.json, when the server has one
    timings_s: Mapping[str, float] = field(default_factory=dict)  # wall seconds of each bootstrap step
    stack: StackSession | None = None  # what keeps a stack session's URLs and token alive (renewal.py)


def _b64url_decode(text: str) -> bytes:
    try:
        return b64url_decode(text)
    except ValueError:
        raise BootstrapError("license response: a key is not valid base64url") from None


def parse_key_args(specs: Sequence[str]) -> dict[str, str]:
    """`KID:KEY` pairs (32 hex digits each, dashes allowed in the KID) from the command line."""
    keys: dict[str, str] = {}
    for spec in specs:
        kid, sep, key = spec.partition(":")
        kid = kid.replace("-", "").strip()
        if not sep or not _HEX32.match(kid) or not _HEX32.match(key.strip()):
            raise BootstrapError("--key expects KID:KEY with 32 hex digits each (KID dashes allowed)")
        keys[kid.lower()] = key.strip().lower()
    return keys


def edge_alternatives(url: str, manifest_urls: Sequence[str]) -> list[str]:
    """`url` on every edge: the path is the same everywhere (the token covers all edges)."""
    primary = urlsplit(manifest_urls[0]) if manifest_urls else urlsplit(url)
    parts = urlsplit(url)
    if (parts.scheme, parts.netloc) != (primary.scheme, primary.netloc):
        return [url]
    out = [url]
    for other in manifest_urls[1:]:
        o = urlsplit(other)
        out.append(parts._replace(scheme=o.scheme, netloc=o.netloc).geturl())
    return out


def failover_urls(source: PlaybackSource, url: str) -> list[str]:
    """`url` on every edge in the order the player fails over along now: the steering's latest ranking
    for a session that renews with a stack (`renewal.EdgeRanking`), else the bootstrap's."""
    if source.stack is not None and source.stack.edges is not None:
        return source.stack.edges.alternatives(url)
    return edge_alternatives(url, source.manifest_urls)


async def _json(fetcher: Fetcher, step: str, urls: Sequence[str], **kwargs: object) -> dict[str, object]:
    try:
        result = await fetcher.fetch(urls, method="POST", **kwargs)  # type: ignore[arg-type]
    except FetchError as exc:
        raise BootstrapError(f"{step} failed: {_explain(exc)}") from None
    try:
        data = json.loads(result.body)
    except ValueError:
        raise BootstrapError(f"{step} failed: the server's answer is not JSON") from None
    if not isinstance(data, dict):
        raise BootstrapError(f"{step} failed: unexpected answer")
    return data


def _explain(exc: FetchError) -> str:
    meaning = {400: "bad request", 401: "not authorised (wrong credentials or expired token)",
               403: "not entitled to this title", 404: "not found", 429: "rate limited",
               503: "service unavailable"}
    if exc.status in meaning:
        return f"HTTP {exc.status} {meaning[exc.status]}"
    return str(exc)


StreamProtocol = Literal["auto", "dash", "hls"]
PROTOCOLS: tuple[StreamProtocol, ...] = ("auto", "dash", "hls")


async def fetch_manifest(fetcher: Fetcher, manifest_urls: Sequence[str], timings: dict[str, float] | None = None,
                         protocol: StreamProtocol = "auto") -> tuple[Manifest, str]:
    """The manifest from the first edge that answers (redirects followed: relative references
    resolve against the URL that answered) and the URL it came from: an MPD or an HLS playlist (see
    `manifest_format`); errors name the problem. `timings` gets `manifest_s` and, when segment
    indexes were read, `sidx_s`."""
    timings = {} if timings is None else timings
    start = time.monotonic()
    try:
        result = await fetcher.fetch(list(manifest_urls), headers={"CMCD-Object": "ot=m"})
    except FetchError as exc:
        raise BootstrapError(f"manifest download failed: {_explain(exc)}") from None
    timings["manifest_s"] = time.monotonic() - start
    manifest = await load_manifest(fetcher, result.url, result.body, result.headers.get("Content-Type"), timings,
                                   protocol)
    return manifest, result.url


def manifest_format(url: str, body: bytes, content_type: str | None) -> StreamProtocol:
    """"hls" or "dash": what the body is, from its first bytes, else its Content-Type or its URL."""
    head = body[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"<"):
        return "dash"
    return "hls" if looks_like_hls(url, content_type, body) else "dash"


async def load_manifest(fetcher: Fetcher, url: str, body: bytes, content_type: str | None,
                        timings: dict[str, float] | None = None, protocol: StreamProtocol = "auto") -> Manifest:
    """The manifest model from a downloaded manifest, whatever its format: the one place where the
    format is recognised (`protocol` "auto", else forced). An HLS playlist is read with its media
    playlists and keys; a DASH MPD is parsed and its SegmentBase indexes are read (`sidx_s`)."""
    if protocol == "hls" or (protocol == "auto" and manifest_format(url, body, content_type) == "hls"):
        try:
            return await load_hls(fetcher, body, url)
        except HlsError as exc:
            raise BootstrapError(f"manifest is not valid: {exc}") from None
    try:
        manifest = parse_mpd(body, url)
    except MpdError as exc:
        raise BootstrapError(f"manifest is not valid: {exc}") from None
    if not any(rep.index_range is not None and not rep.segments
               for aset in manifest.adaptation_sets() for rep in aset.representations):
        return manifest
    start = time.monotonic()
    try:
        manifest = await _read_segment_indexes(fetcher, manifest)
    except MpdError as exc:
        raise BootstrapError(f"manifest is not valid: {exc}") from None
    if timings is not None:
        timings["sidx_s"] = time.monotonic() - start
    return manifest


def range_header(byte_range: tuple[int, int] | None) -> dict[str, str]:
    """HTTP Range for a SegmentRef's inclusive byte range (none for whole files)."""
    return {} if byte_range is None else {"Range": f"bytes={byte_range[0]}-{byte_range[1]}"}


async def _read_segment_indexes(fetcher: Fetcher, manifest: Manifest) -> Manifest:
    """Fetch the sidx of every SegmentBase representation (ISO/IEC 23009-1 5.3.9.2) and list its segments."""
    async def resolve(rep: Representation) -> Representation:
        if rep.segments or rep.index_range is None:
            return rep
        try:
            index = await fetcher.fetch(list(rep.base_urls), headers=range_header(rep.index_range))
        except FetchError as exc:
            raise BootstrapError(f"segment index of {rep.id!r} could not be fetched: {_explain(exc)}") from None
        return rep.with_sidx(index.body)

    periods = []
    for period in manifest.periods:
        sets = []
        for adaptation in period.adaptation_sets:
            reps = await asyncio.gather(*(resolve(r) for r in adaptation.representations))
            sets.append(replace(adaptation, representations=tuple(reps)))
        periods.append(replace(period, adaptation_sets=tuple(sets)))
    return replace(manifest, periods=tuple(periods))


async def fetch_sizes(fetcher: Fetcher, manifest_url: str, manifest_urls: Sequence[str]) -> Video | None:
    """The title's segments.json next to the MPD, if the server offers it (ours does)."""
    url = urljoin(manifest_url, "segments.json")
    try:
        result = await fetcher.fetch(edge_alternatives(url, manifest_urls))
        return video_from_title(parse_segments_json(result.body, "segments.json"))
    except (FetchError, ValueError):
        return None  # foreign servers have none: the ABR then estimates sizes from bitrates


async def request_license(fetcher: Fetcher, license_url: str, kids_hex: Sequence[str], token: str | None) -> dict[str, str]:
    """EME ClearKey license request; returns KID hex -> key hex for exactly the KIDs asked."""
    body = {"kids": [b64url_encode(bytes.fromhex(k)) for k in kids_hex], "type": "temporary"}
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers["CMCD-Object"] = "ot=k"
    data = await _json(fetcher, "license request", [license_url], json_body=body, headers=headers)
    keys: dict[str, str] = {}
    entries = data.get("keys")
    if not isinstance(entries, list):
        raise BootstrapError("license request failed: the answer has no key list")
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or not isinstance(entry.get("k"), str):
            raise BootstrapError("license request failed: malformed key entry")
        kid, key = _b64url_decode(entry["kid"]), _b64url_decode(entry["k"])
        if len(kid) != 16 or len(key) != 16:
            raise BootstrapError("license request failed: keys and KIDs must be 16 bytes")
        keys[kid.hex()] = key.hex()
    missing = [k for k in kids_hex if k not in keys]
    if missing:
        raise BootstrapError(f"license request failed: no key for KID {', '.join(missing)}")
    return keys


async def bootstrap_stack(fetcher: Fetcher, gateway_url: str, title: str, *, username: str,
                          password: str, protocol: StreamProtocol = "auto",
                          access_token: str | None = None, region: str | None = None) -> PlaybackSource:
    """Token, steering, manifest and license through our gateway (`protocol` "hls": the title's HLS
    master playlists, which the playback API lists as `hls_urls`; else its MPDs). With
    `access_token` (a device that is already signed in) the login is skipped. `region`: the client
    region the player says it is in (a stack with regions ranks its edges for it; docs/STEERING.md)."""
    timings: dict[str, float] = {}
    gateway = gateway_url.rstrip("/")
    token = access_token
    token_data: dict[str, Any] = {}  # the login's answer (a device already signed in has none: no renewal)
    if token is None:
        start = time.monotonic()
        token_data = await _json(fetcher, "login", [f"{gateway}/auth/token"],
                                 json_body={"username": username, "password": password})
        token = token_data.get("access_token")
        if not isinstance(token, str):
            raise BootstrapError("login failed: no access token in the answer")
        timings["token_s"] = time.monotonic() - start
    start = time.monotonic()
    auth = {"Authorization": f"Bearer {token}"}
    steering = await _json(fetcher, f"playback request for {title!r}", [playback_url(gateway, title, region)],
                           headers=auth)
    manifest_urls = steering.get("hls_urls" if protocol == "hls" else "manifest_urls")
    if protocol == "hls" and manifest_urls is None:
        raise BootstrapError(f"playback request failed: the service offers no HLS playlists for {title!r}")
    if not isinstance(manifest_urls, list) or not manifest_urls or not all(isinstance(u, str) for u in manifest_urls):
        raise BootstrapError("playback request failed: no edge to play from")
    timings["playback_s"] = time.monotonic() - start
    manifest, manifest_url = await fetch_manifest(fetcher, manifest_urls, timings, protocol)
    ordered = [manifest_url] + [u for u in manifest_urls if u != manifest_url]
    keys: dict[str, str] = {}
    license_url = steering.get("license_url") if isinstance(steering.get("license_url"), str) else None
    kids = manifest.default_kids()
    if kids:
        license_url = manifest.clearkey_laurl() or license_url
        if not license_url:
            raise BootstrapError("the title is encrypted but neither the MPD nor the playback API gives a license URL")
    # segments.json is ours alone (a research aid): fetched alongside the license, off the startup path.
    sizes_task = asyncio.create_task(fetch_sizes(fetcher, manifest_url, ordered))
    try:
        if kids:
            assert license_url is not None
            start = time.monotonic()
            keys = await request_license(fetcher, license_url, kids, token)
            timings["license_s"] = time.monotonic() - start
    finally:
        sizes = await sizes_task
    session_id = steering.get("session_id") if isinstance(steering.get("session_id"), str) else uuid.uuid4().hex
    renewal = stack_session(gateway, title, str(session_id), manifest_url, urls_expire_in_s=steering.get("expires_in"),
                            access_token=token, access_expires_in_s=token_data.get("expires_in"),
                            refresh_token=token_data.get("refresh_token"), region=region, edge_urls=ordered)
    return PlaybackSource(
        title=title, manifest=manifest, manifest_urls=tuple(ordered), session_id=str(session_id),
        keys=keys, license_url=license_url, access_token=token, sizes=sizes, timings_s=timings, stack=renewal,
    )


async def bootstrap_url(fetcher: Fetcher, mpd_url: str, *, keys: Mapping[str, str] | None = None,
                        license_token: str | None = None, protocol: StreamProtocol = "auto") -> PlaybackSource:
    """A plain MPD (or HLS playlist) URL: keys from the user, or from the MPD's ClearKey Laurl when
    it has one. `protocol` "auto" tells HLS from DASH by `manifest_format`."""
    timings: dict[str, float] = {}
    manifest, url = await fetch_manifest(fetcher, [mpd_url], timings, protocol)
    key_map = dict(keys or {})
    kids = [k for k in manifest.default_kids() if k not in key_map]
    laurl = manifest.clearkey_laurl()
    if kids and laurl and laurl.startswith(("http://", "https://")):
        start = time.monotonic()
        key_map.update(await request_license(fetcher, laurl, kids, license_token))
        timings["license_s"] = time.monotonic() - start
    elif kids:
        raise BootstrapError(f"the stream is encrypted (KID {', '.join(kids)}); give --key KID:KEY for each")
    title = urlsplit(url).path.rstrip("/").split("/")[-2] if "/" in urlsplit(url).path.strip("/") else "stream"
    return PlaybackSource(title=title, manifest=manifest, manifest_urls=(url,), session_id=uuid.uuid4().hex,
                          keys=key_map, sizes=await fetch_sizes(fetcher, url, [url]), timings_s=timings)


__all__ = ["PREROLL_STEPS", "BootstrapError", "PlaybackSource", "bootstrap_stack", "bootstrap_url",
           "edge_alternatives", "failover_urls", "fetch_manifest", "load_manifest", "manifest_format", "parse_key_args",
           "request_license", "MpdError"]
