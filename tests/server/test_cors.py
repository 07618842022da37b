"""A web player served from another origin uses the whole stack, DRM included, under the browser's
CORS rules (Fetch standard, section 3.2): a preflight for every non-simple request, then only
what the answers grant and expose may be read. A disallowed origin gets no grant anywhere."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import aiohttp
import pytest
from aiohttp import web

from server.config import RateLimitPolicy, StackConfig
from server.httpapi import CorsPolicy, cors_middleware
from server.stack import RunningStack, start_stack_with_demo_user
from tests.conftest import ENCRYPTED_TITLE, PackagedTitles

PLAYER_ORIGIN = "http://player.example:3000"
OTHER_ORIGIN = "http://evil.example"
# Fetch standard: headers a script may always read, and request headers that need no preflight.
SAFELISTED_RESPONSE = {"cache-control", "content-language", "content-length", "content-type", "expires",
                       "last-modified", "pragma"}
SIMPLE_CONTENT_TYPES = {"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}


class CorsBlocked(AssertionError):
    """What a browser would refuse (the script sees a network error)."""


@dataclass(frozen=True)
class Seen:
    """A response as a script in the browser may see it."""

    status: int
    headers: Mapping[str, str]  # only the readable ones, lower-cased
    body: bytes


def _needs_preflight(method: str, headers: Mapping[str, str]) -> list[str]:
    """The request headers a preflight must ask for ([] and a simple method: no preflight)."""
    unsafe = []
    for name, value in headers.items():
        lower = name.lower()
        if lower == "content-type" and value.split(";")[0].strip().lower() in SIMPLE_CONTENT_TYPES:
            continue
        if lower == "range" and re.fullmatch(r"bytes=\d+-(\d+)?", value):
            continue  # safelisted since 2023; older browsers preflight it, tested separately
        if lower in ("accept", "accept-language", "content-language"):
            continue
        unsafe.append(lower)
    if method not in ("GET", "HEAD", "POST"):
        unsafe.append("")  # method alone forces a preflight
    return sorted(unsafe)


async def browser_fetch(http: aiohttp.ClientSession, method: str, url: str, *, origin: str = PLAYER_ORIGIN,
                        headers: Mapping[str, str] | None = None, body: bytes | None = None,
                        force_preflight: bool = False, credentials: bool = False) -> Seen:
    """`credentials`: the request's credentials mode is "include" (an XHR with `withCredentials`,
    as dash.js sends every request that carries an Authorization header): then the preflight and
    the answer must both name the origin (not `*`) and say `Access-Control-Allow-Credentials: true`."""
    headers = dict(headers or {})

    def check_credentials(what: str, allow_origin: str | None, allow_credentials: str | None) -> None:
        if credentials and (allow_origin != origin or allow_credentials != "true"):
            raise CorsBlocked(f"{what}: a credentialed request needs Allow-Origin {origin!r} and Allow-Credentials "
                              f"'true', got {allow_origin!r} and {allow_credentials!r}")

    unsafe = _needs_preflight(method, headers)
    if unsafe or force_preflight:
        asked = sorted({h for h in unsafe if h} | ({h.lower() for h in headers} if force_preflight else set()))
        pre_headers = {"Origin": origin, "Access-Control-Request-Method": method}
        if asked:
            pre_headers["Access-Control-Request-Headers"] = ",".join(asked)
        async with http.options(url, headers=pre_headers) as pre:
            if not 200 <= pre.status < 300:
                raise CorsBlocked(f"preflight {url}: HTTP {pre.status}")
            allow_origin = pre.headers.get("Access-Control-Allow-Origin")
            if allow_origin not in (origin, "*"):
                raise CorsBlocked(f"preflight {url}: Allow-Origin {allow_origin!r}")
            check_credentials(f"preflight {url}", allow_origin, pre.headers.get("Access-Control-Allow-Credentials"))
            methods = {m.strip().upper() for m in pre.headers.get("Access-Control-Allow-Methods", "").split(",")}
            if method not in methods | {"GET", "HEAD", "POST"}:
                raise CorsBlocked(f"preflight {url}: method {method} not allowed")
            allowed = {h.strip().lower() for h in pre.headers.get("Access-Control-Allow-Headers", "").split(",")}
            missing = [h for h in asked if h not in allowed and "*" not in allowed]
            if missing:
                raise CorsBlocked(f"preflight {url}: headers {missing} not allowed")
    async with http.request(method, url, headers={**headers, "Origin": origin}, data=body) as resp:
        data = await resp.read()
        allow_origin = resp.headers.get("Access-Control-Allow-Origin")
        if allow_origin not in (origin, "*"):
            raise CorsBlocked(f"{method} {url}: HTTP {resp.status} without a grant for {origin}")
        check_credentials(f"{method} {url}", allow_origin, resp.headers.get("Access-Control-Allow-Credentials"))
        if allow_origin == origin and "origin" not in resp.headers.get("Vary", "").lower():
            raise CorsBlocked(f"{method} {url}: per-origin grant without Vary: Origin (caches would mix origins)")
        exposed = {h.strip().lower() for h in resp.headers.get("Access-Control-Expose-Headers", "").split(",")}
        readable = {k.lower(): v for k, v in resp.headers.items() if k.lower() in SAFELISTED_RESPONSE | exposed}
        return Seen(resp.status, readable, data)


@asynccontextmanager
async def cors_stack(tmp_path: Path, content: Path, **overrides: object) -> AsyncIterator[tuple[RunningStack, str]]:
    settings: dict[str, Any] = {"allowed_origins": (PLAYER_ORIGIN,), **overrides}
    config = StackConfig(config_path=tmp_path / "stack.json", content_root=content, port=0, edges=2,
                         heartbeat_s=0.25, access_log=False, **settings)
    async with start_stack_with_demo_user(config) as (stack, credentials):
        yield stack, credentials.password


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


async def test_a_web_player_on_another_origin_plays_an_encrypted_title(tmp_path: Path,
                                                                       packaged: PackagedTitles) -> None:
    async with cors_stack(tmp_path, packaged.content_root) as (stack, password), aiohttp.ClientSession() as http:
        json_type = {"Content-Type": "application/json"}
        login = await browser_fetch(http, "POST", stack.gateway_url + "/auth/token", headers=json_type,
                                    body=json.dumps({"username": "demo", "password": password}).encode())
        assert login.status == 200 and "x-request-id" in login.headers
        auth = {"Authorization": f"Bearer {json.loads(login.body)['access_token']}"}
        steering = await browser_fetch(http, "POST", f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", headers=auth)
        assert steering.status == 200
        answer = json.loads(steering.body)
        manifest_url = answer["manifest_urls"][0]
        mpd = await browser_fetch(http, "GET", manifest_url, headers={"CMCD-Object": "ot=m"})
        assert mpd.status == 200 and b"<MPD" in mpd.body
        kids = sorted(set(re.findall(rb'cenc:default_KID="([0-9a-fA-F-]{36})"', mpd.body)))
        assert kids
        license_url = re.search(rb"<dashif:Laurl[^>]*>([^<]+)<", mpd.body) or re.search(rb'Laurl="([^"]+)"', mpd.body)
        laurl = license_url.group(1).decode() if license_url else answer["license_url"]
        body = json.dumps({"kids": [_b64url(bytes.fromhex(k.decode().replace("-", ""))) for k in kids],
                           "type": "temporary"}).encode()
        keys = await browser_fetch(http, "POST", laurl, headers={**auth, **json_type, "CMCD-Object": "ot=k"},
                                   body=body, credentials=True)  # as dash.js sends it
        assert keys.status == 200 and len(json.loads(keys.body)["keys"]) == len(kids)
        segment = urljoin(manifest_url, "video/v216p/1.m4s")
        ranged = await browser_fetch(http, "GET", segment, headers={"Range": "bytes=0-99"}, force_preflight=True)
        assert ranged.status == 206 and len(ranged.body) == 100
        # What players read from segment responses must be exposed, not just sent.
        for header in ("content-range", "content-length", "x-request-id"):
            assert header in ranged.headers, f"{header} is not exposed to scripts"
        for url in (segment, stack.gateway_url + "/auth/token"):  # refusals carry Retry-After (429, 503)
            async with http.options(url, headers={"Origin": PLAYER_ORIGIN, "Access-Control-Request-Method": "GET"}) as pre:
                assert pre.status == 204, url
            async with http.get(url, headers={"Origin": PLAYER_ORIGIN}) as resp:
                assert "retry-after" in resp.headers.get("Access-Control-Expose-Headers", "").lower(), url


async def test_refusals_are_readable_by_the_player(tmp_path: Path, packaged: PackagedTitles) -> None:
    async with cors_stack(tmp_path, packaged.content_root,
                          rate_limit=RateLimitPolicy(rate_per_s=0.01, burst=1)) as (stack, _), \
            aiohttp.ClientSession() as http:
        json_type = {"Content-Type": "application/json", "Authorization": "Bearer nope"}
        first = await browser_fetch(http, "POST", stack.gateway_url + "/license", headers=json_type, body=b"{}")
        assert first.status == 401 and "x-request-id" in first.headers
        limited = await browser_fetch(http, "POST", stack.gateway_url + "/license", headers=json_type, body=b"{}")
        assert limited.status == 429 and "retry-after" in limited.headers
        bad_url = await browser_fetch(http, "GET", stack.edge_urls[0] + "/s/forged/x/manifest.mpd")
        assert bad_url.status == 403 and "x-request-id" in bad_url.headers


async def test_a_credentialed_license_request_is_granted_to_a_named_origin_never_to_star(
        tmp_path: Path, packaged: PackagedTitles) -> None:
    body = json.dumps({"kids": [_b64url(bytes(16))], "type": "temporary"}).encode()
    headers = {"Authorization": "Bearer nope", "Content-Type": "application/json"}
    for origins, origin, granted in (((PLAYER_ORIGIN,), PLAYER_ORIGIN, True), (("*",), PLAYER_ORIGIN, False),
                                     ((PLAYER_ORIGIN, "*"), OTHER_ORIGIN, False)):
        async with cors_stack(tmp_path, packaged.content_root, allowed_origins=origins) as (stack, _), \
                aiohttp.ClientSession() as http:
            if granted:
                seen = await browser_fetch(http, "POST", stack.license_url, origin=origin, headers=headers, body=body,
                                           credentials=True)
                assert seen.status == 401  # readable: the player can tell a bad token from a network error
            else:
                with pytest.raises(CorsBlocked, match="credentialed"):
                    await browser_fetch(http, "POST", stack.license_url, origin=origin, headers=headers, body=body,
                                        credentials=True)


@pytest.mark.parametrize("service", ["gateway", "auth", "playback", "license", "edge-0"])
async def test_a_disallowed_origin_gets_no_grant(tmp_path: Path, packaged: PackagedTitles, service: str) -> None:
    path = {"gateway": "/auth/token", "auth": "/auth/token", "playback": f"/playback/{ENCRYPTED_TITLE}",
            "license": "/license", "edge-0": f"/s/x/{ENCRYPTED_TITLE}/manifest.mpd"}[service]
    async with cors_stack(tmp_path, packaged.content_root) as (stack, _), aiohttp.ClientSession() as http:
        url = stack.url(service) + path
        method = "GET" if service.startswith("edge") else "POST"
        async with http.options(url, headers={"Origin": OTHER_ORIGIN, "Access-Control-Request-Method": method,
                                              "Access-Control-Request-Headers": "authorization"}) as pre:
            assert pre.status == 403
            assert "Access-Control-Allow-Origin" not in pre.headers
        async with http.request(method, url, headers={"Origin": OTHER_ORIGIN}) as resp:
            assert "Access-Control-Allow-Origin" not in resp.headers
        with pytest.raises(CorsBlocked):
            await browser_fetch(http, method, url, origin=OTHER_ORIGIN, headers={"Authorization": "Bearer x"})


# --- one policy for every service -----------------------------------------------------------------

def _policy_app(policy: CorsPolicy) -> web.Application:
    async def hello(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application(middlewares=[cors_middleware(policy)])
    app.router.add_route("*", "/x", hello)
    return app


@pytest.mark.parametrize("allow_credentials", [False, True])
async def test_listed_origins_are_granted_by_name_and_star_never_carries_credentials(
        aiohttp_client: Any, allow_credentials: bool) -> None:
    policy = CorsPolicy(allowed_origins=(PLAYER_ORIGIN, "*"), allow_credentials=allow_credentials)
    client = await aiohttp_client(_policy_app(policy))
    listed = await client.get("/x", headers={"Origin": PLAYER_ORIGIN})
    assert listed.headers["Access-Control-Allow-Origin"] == PLAYER_ORIGIN
    assert listed.headers["Vary"] == "Origin"
    assert listed.headers.get("Access-Control-Allow-Credentials") == ("true" if allow_credentials else None)
    anyone = await client.get("/x", headers={"Origin": OTHER_ORIGIN})
    assert anyone.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in anyone.headers
    pre = await client.options("/x", headers={"Origin": OTHER_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert pre.status == 204 and pre.headers["Access-Control-Allow-Origin"] == "*"
    assert "Access-Control-Allow-Credentials" not in pre.headers
    pre = await client.options("/x", headers={"Origin": PLAYER_ORIGIN, "Access-Control-Request-Method": "POST"})
    assert pre.headers.get("Access-Control-Allow-Credentials") == ("true" if allow_credentials else None)
    no_origin = await client.get("/x")
    assert not [h for h in no_origin.headers if h.lower().startswith("access-control-")]


@pytest.mark.parametrize(("asked", "status"), [
    ({"Access-Control-Request-Method": "POST"}, 204),
    ({"Access-Control-Request-Method": "PUT"}, 403),
    ({"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, content-type"}, 204),
    ({"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization, x-secret"}, 403),
])
async def test_a_preflight_is_granted_only_what_the_policy_allows(aiohttp_client: Any, asked: dict[str, str],
                                                                  status: int) -> None:
    client = await aiohttp_client(_policy_app(CorsPolicy(allowed_origins=(PLAYER_ORIGIN,))))
    pre = await client.options("/x", headers={"Origin": PLAYER_ORIGIN, **asked})
    assert pre.status == status
    if status == 403:
        assert "Access-Control-Allow-Origin" not in pre.headers and "error" in await pre.json()


def test_a_policy_refuses_malformed_origins() -> None:
    with pytest.raises(ValueError):
        CorsPolicy(allowed_origins=("http://player.example/path",))


async def test_every_service_applies_the_same_rules(tmp_path: Path, packaged: PackagedTitles) -> None:
    async with cors_stack(tmp_path, packaged.content_root, allowed_origins=(PLAYER_ORIGIN, "*")) as (stack, _), \
            aiohttp.ClientSession() as http:
        for name, path in (("gateway", "/healthz"), ("auth", "/healthz"), ("playback", "/healthz"),
                           ("license", "/healthz"), ("edge-0", f"/s/x/{ENCRYPTED_TITLE}/manifest.mpd")):
            for origin, granted in ((PLAYER_ORIGIN, PLAYER_ORIGIN), (OTHER_ORIGIN, "*")):
                async with http.get(stack.url(name) + path, headers={"Origin": origin}) as resp:
                    assert resp.headers["Access-Control-Allow-Origin"] == granted, name
                    assert "origin" in resp.headers.get("Vary", "").lower(), name
                    # credentials: only the gateway (the players' entry: dash.js sends license requests
                    # credentialed), and only to an origin listed by name
                    credentialed = name == "gateway" and granted == PLAYER_ORIGIN
                    assert resp.headers.get("Access-Control-Allow-Credentials") == ("true" if credentialed else None)
                    assert "x-request-id" in resp.headers["Access-Control-Expose-Headers"].lower(), name
