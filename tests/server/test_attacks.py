"""The attacks of issue 14, each against a running stack as an attacker tried it, from the outside:
HTTP and raw sockets, the `abrkit user` command and the files of the state folder. Every test here
was first run against the code before the fix and failed there (the findings), so each one shows
that attack no longer works."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from player.cli import main as abrkit
from server.config import BackendPolicy, RateLimitPolicy, StackConfig, save_stack_config
from server.stack import RunningStack, start_stack
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE
from tests.server.conftest import PASSWORD, write_users
from tests.server.rawhttp import Stalled, ahttp, assert_clean_refusal

HEARTBEAT_S = 0.25
UNKNOWN_KID = {"kids": ["AAAAAAAAAAAAAAAAAAAAAA"]}  # base64url of 16 zero bytes: no title has it


@pytest.fixture
def stack_config(tmp_path: Path, packaged) -> StackConfig:  # type: ignore[no-untyped-def]
    config = StackConfig(config_path=tmp_path / "state" / "stack.json", content_root=packaged.content_root, port=0,
                         edges=1, heartbeat_s=HEARTBEAT_S, access_log=False, shutdown_timeout_s=2.0)
    save_stack_config(config)
    write_users(config.config_path, {"alice": (ENCRYPTED_TITLE,), "bob": (CLEAR_TITLE,)})
    return config


@contextlib.asynccontextmanager
async def running(config: StackConfig) -> AsyncIterator[tuple[RunningStack, aiohttp.ClientSession]]:
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        yield stack, session


async def login(session: aiohttp.ClientSession, stack: RunningStack, username: str = "alice",
                password: str = PASSWORD) -> dict[str, str]:
    async with session.post(f"{stack.gateway_url}/auth/token", json={"username": username, "password": password}) as r:
        assert r.status == 200, await r.text()
        return await r.json()


def bearer(tokens: dict[str, str]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def post(session: aiohttp.ClientSession, url: str, **kwargs: object) -> tuple[int, dict[str, str], object]:
    async with session.post(url, **kwargs) as resp:  # type: ignore[arg-type]
        text = await resp.text()
        try:
            body: object = json.loads(text)
        except ValueError:
            body = text
        return resp.status, dict(resp.headers), body


async def breaker_state(session: aiohttp.ClientSession, stack: RunningStack, backend: str) -> str:
    async with session.get(stack.gateway_url + "/healthz") as resp:
        return (await resp.json())["backends"][backend]


# --- one malformed token takes logins down ----------------------------------------------------------

# Lone surrogates (what "\ud800" in a JSON string decodes to), other non-ASCII, NUL, JWT-shaped junk.
HOSTILE_TOKENS = ["\ud800", "\udcff.\udcfe.\udcfd", "é.é.é", "eyJhbGciOiJIUzI1NiJ9.\u202e.x", "a\x00.b.c",
                  "\U0001f600", "..", "a..b", ".", "\ud800" * 500]


async def test_hostile_refresh_and_revoke_tokens_are_401_and_cannot_open_the_auth_breaker(
        stack_config: StackConfig) -> None:
    config = replace(stack_config, backend_policy=BackendPolicy(failure_threshold=3, reset_timeout_s=30))
    async with running(config) as (stack, session):
        for token in HOSTILE_TOKENS:
            for path, field in (("/auth/refresh", "refresh_token"), ("/auth/revoke", "token")):
                body = json.dumps({field: token}).encode()  # ASCII JSON: "\ud800" travels as an escape
                status, _, answer = await post(session, stack.gateway_url + path, data=body,
                                               headers={"Content-Type": "application/json"})
                assert status in (400, 401), (path, repr(token), status, answer)
        assert await breaker_state(session, stack, "auth") == "closed"
        await login(session, stack)


async def test_non_utf8_authorization_bytes_are_401_or_429_never_500(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, _):
        statuses = []
        for i in range(60):
            hostile = b"Bearer " + bytes([0xFF, 0xFE, 0x80 + i % 64]) + b".e30.x"
            answer = await ahttp(stack.gateway_url, "POST", f"/playback/{ENCRYPTED_TITLE}",
                                 headers={"Authorization": hostile})
            assert_clean_refusal(answer, {401, 429})
            statuses.append(answer.status)
        assert 429 in statuses, "the rate limiter never ran"
        # The services behind the gateway parse the same header themselves.
        for name, path in (("playback", f"/playback/{ENCRYPTED_TITLE}"), ("license", "/license")):
            headers: dict[str, str | bytes] = {**stack.internal_headers(), "Authorization": b"Bearer \xff\xfe.e30.x"}
            answer = await ahttp(stack.url(name), "POST", path, headers=headers)
            assert_clean_refusal(answer, {401, 403})


# --- a stalled request body opens the breakers ------------------------------------------------------

async def test_stalled_login_bodies_do_not_open_the_auth_breaker(stack_config: StackConfig) -> None:
    # A backend timeout short enough to wait out, long enough for an scrypt check on a busy machine.
    config = replace(stack_config, backend_policy=BackendPolicy(timeout_s=3.0, failure_threshold=3,
                                                                reset_timeout_s=30))
    async with running(config) as (stack, session):
        stalled = [await Stalled.open(stack.gateway_url, "POST", "/auth/token",
                                      headers={"Content-Type": "application/json"}, sent=b'{"username": "al')
                   for _ in range(5)]
        try:
            await asyncio.sleep(4.0)  # well past the backend timeout
            assert await breaker_state(session, stack, "auth") == "closed"
            await login(session, stack)
        finally:
            for s in stalled:
                s.close()


async def test_stalled_license_bodies_cannot_fill_the_license_bulkhead(stack_config: StackConfig) -> None:
    config = replace(stack_config, backend_overrides={"license": BackendPolicy(max_concurrent=4, timeout_s=30)})
    async with running(config) as (stack, session):
        mallory = await login(session, stack, "alice")  # any subscriber
        stalled = [await Stalled.open(stack.gateway_url, "POST", "/license",
                                      headers={"Content-Type": "application/json", **bearer(mallory)})
                   for _ in range(6)]
        try:
            await asyncio.sleep(0.5)
            bob = await login(session, stack, "bob")
            status, _, answer = await post(session, stack.license_url, json=UNKNOWN_KID, headers=bearer(bob))
            assert status == 404, answer  # the license service answered: unknown KID, not "backend busy"
            assert await breaker_state(session, stack, "license") == "closed"
        finally:
            for s in stalled:
                s.close()


# --- revocation fails open ----------------------------------------------------------------------------

def _store_files(config: StackConfig) -> list[Path]:
    path = config.resolved_revocations_path
    return [p for p in path.parent.glob(path.name + "*") if p.is_file()]


async def _revoked_token(session: aiohttp.ClientSession, stack: RunningStack) -> dict[str, str]:
    tokens = await login(session, stack)
    status, _, _ = await post(session, stack.gateway_url + "/auth/revoke", json={"token": tokens["access_token"]})
    assert status == 200
    status, _, _ = await post(session, f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", headers=bearer(tokens))
    assert status == 401
    return tokens


async def test_deleting_the_revocation_store_does_not_bring_revoked_tokens_back(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        revoked = await _revoked_token(session, stack)
        for path in _store_files(stack_config):
            path.unlink()
        for url in (f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", stack.license_url):
            status, _, answer = await post(session, url, json=UNKNOWN_KID, headers=bearer(revoked))
            assert status in (401, 503), (url, status, answer)


async def test_corrupting_the_revocation_store_does_not_bring_revoked_tokens_back(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        revoked = await _revoked_token(session, stack)
        for path in _store_files(stack_config):
            path.write_bytes(b"\x00garbage" * 512)
        playback = f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}"
        status, _, answer = await post(session, playback, headers=bearer(revoked))
        assert status in (401, 503), (status, answer)
        # Services started after the damage (a restart, a new process) must not start from nothing.
        for name in ("playback", "gateway"):
            await stack.stop_service(name)
            with contextlib.suppress(Exception):  # refusing to start at all is a refusal too
                await stack.start_service(name)
        with contextlib.suppress(Exception):
            await stack.wait_for_edges(timeout_s=3.0)  # a playback API that did start hears the edge again
        status, _, answer = await post(session, playback, headers=bearer(revoked))
        assert status in (401, 502, 503), (status, answer)
        assert "no healthy edge" not in str(answer), "the token was accepted (the API only lacked edges)"


async def test_refreshes_do_not_grow_the_revocation_store(stack_config: StackConfig) -> None:
    # Every refresh used to add an entry kept 24 h to a file every service re-parsed: 100k of them
    # took refresh p50 from 8.5 to 422 ms. A login's refreshes now update one row in place
    # (bench/revocation_scale.py measures the store at 1M revocations).
    config = replace(stack_config, rate_limit=RateLimitPolicy(rate_per_s=1000, burst=1000))
    async with running(config) as (stack, session):
        tokens = await login(session, stack)
        sizes = []
        for i in range(301):
            status, _, tokens = await post(session, stack.gateway_url + "/auth/refresh",  # type: ignore[assignment]
                                           json={"refresh_token": tokens["refresh_token"]})
            assert status == 200
            if i in (0, 300):
                sizes.append(config.resolved_revocations_path.stat().st_size)
    assert sizes[1] - sizes[0] <= 8192, sizes  # at most a page or two, not an entry per refresh


# --- changes don't reach live credentials ------------------------------------------------------------

def _kids(content_root: Path) -> list[str]:
    import base64
    keys = json.loads((content_root / ENCRYPTED_TITLE / "keys.json").read_text())["keys"]
    return [base64.urlsafe_b64encode(bytes.fromhex(k["kid"])).rstrip(b"=").decode() for k in keys]


async def test_an_entitlement_change_reaches_tokens_already_issued(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        tokens = await login(session, stack)
        license_request = {"kids": _kids(stack_config.content_root)}
        status, _, _ = await post(session, stack.license_url, json=license_request, headers=bearer(tokens))
        assert status == 200
        assert abrkit(["user", "--config", str(stack_config.config_path), "set", "alice", "--titles", CLEAR_TITLE]) == 0
        status, _, answer = await post(session, stack.license_url, json=license_request, headers=bearer(tokens))
        assert status == 401, answer  # no more keys of the title taken away
        status, _, fresh = await post(session, stack.gateway_url + "/auth/refresh",
                                      json={"refresh_token": tokens["refresh_token"]})
        assert status == 200, fresh  # the login itself stands: the new token says what alice may play now
        status, _, answer = await post(session, stack.license_url, json=license_request, headers=bearer(fresh))  # type: ignore[arg-type]
        assert status == 403, answer


async def _manifest_url(session: aiohttp.ClientSession, stack: RunningStack, tokens: dict[str, str]) -> str:
    status, _, play = await post(session, f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", headers=bearer(tokens))
    assert status == 200, play
    url = play["manifest_urls"][0]  # type: ignore[index]
    async with session.get(url) as resp:
        assert resp.status == 200
    return url


async def _until_refused(session: aiohttp.ClientSession, url: str, within_s: float) -> int:
    deadline = time.monotonic() + within_s
    while True:
        async with session.get(url) as resp:
            if resp.status != 200 or time.monotonic() > deadline:
                return resp.status
        await asyncio.sleep(0.1)


async def test_signed_urls_stop_working_soon_after_the_user_is_revoked(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        url = await _manifest_url(session, stack, await login(session, stack))
        assert abrkit(["user", "--config", str(stack_config.config_path), "revoke", "alice"]) == 0
        assert await _until_refused(session, url, within_s=5.0) == 403


async def test_logout_with_the_access_token_ends_the_refresh_token_and_the_urls(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        tokens = await login(session, stack)
        url = await _manifest_url(session, stack, tokens)
        status, _, _ = await post(session, stack.gateway_url + "/auth/revoke", headers=bearer(tokens))
        assert status == 200
        status, _, answer = await post(session, stack.gateway_url + "/auth/refresh",
                                       json={"refresh_token": tokens["refresh_token"]})
        assert status == 401, answer
        assert await _until_refused(session, url, within_s=5.0) == 403


async def test_a_password_change_ends_the_logins_made_with_the_old_one(stack_config: StackConfig,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(stack_config) as (stack, session):
        tokens = await login(session, stack)
        url = await _manifest_url(session, stack, tokens)
        monkeypatch.setattr(sys, "stdin", io.StringIO("a brand new password\n"))
        assert abrkit(["user", "--config", str(stack_config.config_path), "set", "alice", "--password-stdin"]) == 0
        status, _, answer = await post(session, stack.license_url, json=UNKNOWN_KID, headers=bearer(tokens))
        assert status == 401, answer
        status, _, answer = await post(session, stack.gateway_url + "/auth/refresh",
                                       json={"refresh_token": tokens["refresh_token"]})
        assert status == 401, answer  # the thief who had the old password keeps nothing
        assert await _until_refused(session, url, within_s=5.0) == 403
        status, _, _ = await post(session, stack.gateway_url + "/auth/token",
                                  json={"username": "alice", "password": PASSWORD})
        assert status == 401
        await _manifest_url(session, stack, await login(session, stack, password="a brand new password"))


async def test_signed_urls_are_short_lived(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        status, _, play = await post(session, f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}",
                                     headers=bearer(await login(session, stack)))
        assert status == 200
        assert 0 < play["expires_in"] <= 600  # type: ignore[index]  # renewed while playing, not 6 h of bearer URL


# --- --host exposes the inside ------------------------------------------------------------------------

async def _reachable(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=5)):
            return True
    except aiohttp.ClientConnectionError:
        return False


async def test_with_a_public_host_only_the_gateway_and_edges_are_reachable(stack_config: StackConfig) -> None:
    # Every 127.0.0.0/8 address reaches this host, but only a wildcard (or that address) bind answers
    # on 127.0.0.2: "another interface" without needing one.
    async with running(replace(stack_config, host="0.0.0.0")) as (stack, session):
        other = {name: f"http://127.0.0.2:{stack.ports[name]}" for name in stack.ports}
        assert await _reachable(session, other["gateway"] + "/healthz")
        assert await _reachable(session, other["edge-0"] + "/healthz")
        for name in ("origin", "auth", "playback", "license"):
            assert not await _reachable(session, other[name] + "/healthz"), f"{name} answers on a public address"


async def test_internal_services_and_endpoints_need_the_internal_credential(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        async with session.get(f"{stack.origin_url}/{ENCRYPTED_TITLE}/manifest.mpd") as resp:
            assert resp.status in (401, 403), "the origin serves titles unsigned to anyone on the host"
        async with session.get(stack.playback_url + "/internal/edges") as resp:
            assert resp.status in (401, 403)
        for path in ("/internal/stats", f"/internal/preposition/{ENCRYPTED_TITLE}"):
            method = session.get if path.endswith("stats") else session.post
            async with method(stack.url("edge-0") + path) as resp:
                assert resp.status in (401, 403), f"{path} trusts a loopback peer"
        status, _, _ = await post(session, stack.auth_url + "/auth/token",
                                  json={"username": "alice", "password": PASSWORD})
        assert status in (401, 403), "auth answers logins without the gateway's limits"


# --- no brute-force protection --------------------------------------------------------------------------

async def test_guessing_a_password_is_stopped_before_the_right_one_gets_in(stack_config: StackConfig) -> None:
    async with running(stack_config) as (stack, session):
        guesses = []
        for i in range(12):
            status, headers, _ = await post(session, stack.gateway_url + "/auth/token",
                                            json={"username": "alice", "password": f"guess {i}"})
            guesses.append(status)
            if status == 429:
                assert int(headers["Retry-After"]) >= 1
        status, headers, _ = await post(session, stack.gateway_url + "/auth/token",
                                        json={"username": "alice", "password": PASSWORD})
        assert status == 429 and int(headers["Retry-After"]) >= 1, (guesses, status)


async def test_guessing_from_many_addresses_is_stopped_by_the_usernames_backoff(stack_config: StackConfig) -> None:
    # Behind a trusted proxy every guess comes from its own address: no per-address budget applies,
    # only the username's backoff, which auth answers with 429 and the gateway passes on uncounted.
    config = replace(stack_config, trusted_proxies=("127.0.0.1",),
                     backend_policy=BackendPolicy(failure_threshold=3, reset_timeout_s=30))
    async with running(config) as (stack, session):
        guesses: list[tuple[int, str]] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, headers, _ = await post(session, stack.gateway_url + "/auth/token",
                                            json={"username": "alice", "password": f"guess {len(guesses)}"},
                                            headers={"X-Forwarded-For": f"198.51.{len(guesses) // 250}.{len(guesses) % 250 + 1}"})
            guesses.append((status, headers.get("Retry-After", "")))
            assert status in (401, 429), guesses
            if status == 429 and int(headers["Retry-After"]) >= 2:  # backed off twice: >= 1 s still to wait
                break
            await asyncio.sleep(0.05)
        assert [s for s, _ in guesses[:5]] == [401] * 5, guesses
        status, headers, _ = await post(session, stack.gateway_url + "/auth/token",
                                        json={"username": "alice", "password": PASSWORD},
                                        headers={"X-Forwarded-For": "203.0.113.9"})
        assert status == 429 and int(headers["Retry-After"]) >= 1, (guesses, status)
        assert await breaker_state(session, stack, "auth") == "closed"
        await login(session, stack, "bob")  # other users are not held back


async def test_a_burst_of_concurrent_guesses_cannot_open_the_auth_breaker(stack_config: StackConfig) -> None:
    # Each guess costs an scrypt check on a few hash slots; queued there, a burst outlasted the gateway's
    # backend timeout and the 504s opened the auth breaker: no one could log in. Auth now turns away
    # what it cannot check in time with a prompt 503 and Retry-After, which the breaker does not count.
    # 10 s: the few checks that get a slot finish well within it even on a loaded machine (a hash
    # takes 0.2-1 s); 48 queued behind 4 slots do not.
    config = replace(stack_config, trusted_proxies=("127.0.0.1",),
                     backend_policy=BackendPolicy(timeout_s=10.0, failure_threshold=3, reset_timeout_s=30))
    async with running(config) as (stack, session):
        async def guess(i: int) -> tuple[int, dict[str, str], object]:
            return await post(session, stack.gateway_url + "/auth/token",
                              json={"username": f"spray{i}", "password": "Summer2024!"},
                              headers={"X-Forwarded-For": f"198.51.100.{i + 1}"})

        answers = await asyncio.gather(*(guess(i) for i in range(48)))
        statuses = sorted(status for status, _, _ in answers)
        assert set(statuses) <= {401, 503}, (statuses, [b for _, _, b in answers])
        assert all(int(headers["Retry-After"]) >= 1 for status, headers, _ in answers if status == 503)
        assert await breaker_state(session, stack, "auth") == "closed", statuses
        await login(session, stack, "bob")


# --- disk trouble ---------------------------------------------------------------------------------------

@contextlib.contextmanager
def file_size_limit(size_bytes: int) -> Iterator[None]:
    """RLIMIT_FSIZE for this process: a write past `size_bytes` into any regular file fails (EFBIG; Python
    ignores SIGXFSZ), as on a full disk."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


async def test_a_full_disk_answers_503_keeps_logins_up_and_never_half_logs_out(stack_config: StackConfig) -> None:
    config = replace(stack_config, backend_policy=BackendPolicy(failure_threshold=3, reset_timeout_s=30))
    async with running(config) as (stack, session):
        tokens = await login(session, stack)
        refresh = {"refresh_token": tokens["refresh_token"]}
        with file_size_limit(1):
            for _ in range(4):
                status, headers, answer = await post(session, stack.gateway_url + "/auth/refresh", json=refresh)
                assert status == 503 and int(headers["Retry-After"]) >= 1, (status, answer)
                status, headers, answer = await post(session, stack.gateway_url + "/auth/revoke",
                                                     headers=bearer(tokens))
                assert status == 503 and int(headers["Retry-After"]) >= 1, (status, answer)
            assert await breaker_state(session, stack, "auth") == "closed"
            await login(session, stack, "bob")
            # The logout that failed left the login whole: nothing was revoked half-way.
            status, _, _ = await post(session, f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}",
                                      headers=bearer(tokens))
            assert status == 200
        status, _, _ = await post(session, stack.gateway_url + "/auth/revoke", headers=bearer(tokens))
        assert status == 200
        for url, kwargs in ((f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", {"headers": bearer(tokens)}),
                            (stack.gateway_url + "/auth/refresh", {"json": refresh})):
            status, _, _ = await post(session, url, **kwargs)
            assert status == 401, url


def _can_mount() -> bool:
    if shutil.which("mount") is None or shutil.which("umount") is None:
        return False
    with tempfile.TemporaryDirectory() as folder:
        if subprocess.run(["mount", "--bind", folder, folder], capture_output=True).returncode != 0:
            return False
        return subprocess.run(["umount", folder], capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` bind-mounted read-only onto itself (a read-only volume)."""
    subprocess.run(["mount", "--bind", str(folder), str(folder)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], check=True)
        yield
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.mark.skipif(not _can_mount(), reason="needs permission to bind-mount (root in a VM or container)")
async def test_a_read_only_state_volume_answers_503_and_keeps_logins_up(stack_config: StackConfig) -> None:
    config = replace(stack_config, backend_policy=BackendPolicy(failure_threshold=3, reset_timeout_s=30))
    async with running(config) as (stack, session):  # first run: whatever the stack keeps there exists
        await _revoked_token(session, stack)
    with read_only(config.state_dir):
        async with running(config) as (stack, session):
            tokens = await login(session, stack)
            for _ in range(4):
                status, headers, answer = await post(session, stack.gateway_url + "/auth/refresh",
                                                     json={"refresh_token": tokens["refresh_token"]})
                assert status == 503 and int(headers["Retry-After"]) >= 1, (status, answer)
                status, headers, _ = await post(session, stack.gateway_url + "/auth/revoke", headers=bearer(tokens))
                assert status == 503 and int(headers["Retry-After"]) >= 1
            assert await breaker_state(session, stack, "auth") == "closed"
            await login(session, stack, "bob")


# --- tokens in the access log ---------------------------------------------------------------------------

async def test_token_shaped_path_segments_never_reach_the_access_log(stack_config: StackConfig,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.access")
    async with running(stack_config) as (stack, session):
        url = stack.signed_url("edge-0", ENCRYPTED_TITLE, "manifest.mpd", session_id="logs")
        token = url.split("/s/")[1].split("/")[0]
        jwt_token = (await login(session, stack))["access_token"]
        edge = stack.url("edge-0")
        for base, path in ((edge, f"/s/{token}"), (edge, f"//s/{token}/{ENCRYPTED_TITLE}/manifest.mpd"),
                           (edge, f"/S/{token}/{ENCRYPTED_TITLE}/manifest.mpd"), (edge, f"/x/{token}/y"),
                           (edge, f"/s%2F{token}/{ENCRYPTED_TITLE}/manifest.mpd"),
                           (stack.gateway_url, f"/playback/{jwt_token}"), (stack.gateway_url, f"/auth/{jwt_token}")):
            answer = await ahttp(base, "GET", path)
            assert answer.status < 500
        await asyncio.sleep(0.1)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert '"path"' in logged, "the access log saw nothing"
    assert token not in logged and jwt_token not in logged
    assert token.split(".")[1] not in logged and jwt_token.split(".")[2] not in logged  # not even a part

