"""The whole stack on real sockets: embedded and one process per service, `abrkit serve`, `abrkit user`."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest

from player.cli import main as abrkit
from server import playback
from server.config import BackendPolicy, RateLimitPolicy, StackConfig, load_stack_config, save_stack_config
from server.keys import load_or_create_secrets, secrets_for
from server.revocation import RevocationStore, create_store
from server.stack import build_app, start_stack
from server.users import read_users
from tests.conftest import ENCRYPTED_TITLE
from tests.server.conftest import write_users
from tests.server.stackkit import abrkit_serve, login

HEARTBEAT_S = 0.25


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest.fixture
def stack_config(tmp_path: Path, packaged) -> StackConfig:  # type: ignore[no-untyped-def]
    assert packaged.encrypted.title_dir.name == ENCRYPTED_TITLE
    config = StackConfig(config_path=tmp_path / "state" / "stack.json", content_root=packaged.content_root, port=0,
                         heartbeat_s=HEARTBEAT_S, access_log=False, shutdown_timeout_s=2.0,
                         rate_limit=RateLimitPolicy(rate_per_s=100, burst=100))
    save_stack_config(config)
    write_users(config.config_path, {"alice": (ENCRYPTED_TITLE,), "bob": ("clip",)})
    return config


async def test_embedded_stack_token_playback_manifest_license_segment(stack_config: StackConfig,
                                                                      packaged) -> None:
    keys = json.loads((packaged.content_root / ENCRYPTED_TITLE / "keys.json").read_text())["keys"]
    async with start_stack(stack_config) as stack, aiohttp.ClientSession() as session:
        assert len(stack.edge_urls) == 2
        headers = await login(session, stack.gateway_url)
        async with session.post(f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", headers=headers) as resp:
            assert resp.status == 200
            play = await resp.json()
        assert play["license_url"] == stack.license_url
        assert {u.split("/s/")[0] for u in play["manifest_urls"]} == set(stack.edge_urls)
        async with session.get(play["manifest_urls"][0]) as resp:
            assert resp.status == 200
            mpd = await resp.text()
        assert f"<dashif:Laurl>{stack.license_url}</dashif:Laurl>" in mpd
        kids = {bytes.fromhex(k.replace("-", "")) for k in re.findall(r'cenc:default_KID="([0-9a-f-]{36})"', mpd)}
        assert kids == {bytes.fromhex(k["kid"]) for k in keys}

        async with session.post(play["license_url"], json={"kids": [b64(k) for k in kids], "type": "temporary"},
                                headers=headers) as resp:
            assert resp.status == 200
            granted = {(k["kid"], k["k"]) for k in (await resp.json())["keys"]}
        assert granted == {(b64(bytes.fromhex(k["kid"])), b64(bytes.fromhex(k["key"]))) for k in keys}

        segment_url = play["manifest_urls"][1].replace("manifest.mpd", "segments.json")
        async with session.get(segment_url) as resp:
            assert resp.status == 200
        async with session.get(f"{stack.edge_urls[0]}/{ENCRYPTED_TITLE}/manifest.mpd") as resp:
            assert resp.status == 403  # unsigned

        bob = await login(session, stack.gateway_url, "bob")
        async with session.post(play["license_url"], json={"kids": [b64(k) for k in kids]}, headers=bob) as resp:
            assert resp.status == 403
        async with session.post(f"{stack.gateway_url}/auth/revoke", headers=headers) as resp:
            assert resp.status == 200
        for url, extra in ((f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", {}),
                           (f"{stack.playback_url}/playback/{ENCRYPTED_TITLE}", stack.internal_headers()),
                           (stack.license_service_url + "/license", stack.internal_headers())):
            async with session.post(url, json={"kids": [b64(next(iter(kids)))]}, headers={**headers, **extra}) as resp:
                assert resp.status == 401, url
        async with session.get(f"{stack.gateway_url}/internal/edges") as resp:
            assert resp.status == 404


async def test_a_running_stack_signs_urls_and_opens_the_fault_hook_for_its_clients(stack_config: StackConfig) -> None:
    async with start_stack(stack_config) as stack, aiohttp.ClientSession() as session:
        url = stack.signed_url("edge-1", ENCRYPTED_TITLE, "manifest.mpd", session_id="test")
        assert url.startswith(stack.url("edge-1") + "/s/") and url.endswith(f"/{ENCRYPTED_TITLE}/manifest.mpd")
        async with session.get(url) as resp:
            assert resp.status == 200
        async with session.get(url.replace(f"/{ENCRYPTED_TITLE}/", "/clip/")) as resp:
            assert resp.status == 403  # signed for the other title
        fault = {"error_status": 503, "duration_s": 30}
        async with session.post(stack.fault_url("edge-0"), json=fault) as resp:
            assert resp.status == 403  # loopback alone does not open the hook
        async with session.post(stack.fault_url("edge-0"), json=fault, headers=stack.internal_headers()) as resp:
            assert resp.status == 200
        async with session.get(stack.signed_url("edge-0", ENCRYPTED_TITLE, "manifest.mpd", session_id="t")) as resp:
            assert resp.status == 503
        async with session.delete(stack.fault_url("edge-0"), headers=stack.internal_headers()) as resp:
            assert resp.status == 200


async def test_license_outage_opens_the_gateway_breaker_and_recovery_closes_it(stack_config: StackConfig) -> None:
    config = replace(stack_config,
                     backend_overrides={"license": BackendPolicy(failure_threshold=2, reset_timeout_s=0.3)})
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        headers = await login(session, stack.gateway_url)
        body = {"kids": [b64(b"\x00" * 16)]}
        await stack.stop_service("license")
        statuses = []
        for _ in range(3):
            async with session.post(stack.license_url, json=body, headers=headers) as resp:
                statuses.append(resp.status)
                last = await resp.json()
        assert statuses == [502, 502, 503] and last["reason"] == "circuit open"
        await stack.start_service("license")
        await asyncio.sleep(0.35)
        async with session.post(stack.license_url, json=body, headers=headers) as resp:
            assert resp.status == 404  # the license service answers again: unknown KID


async def test_processes_mode_killed_edge_leaves_the_ranking_within_two_heartbeats(stack_config: StackConfig) -> None:
    config = replace(stack_config, processes=True)
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        assert all(stack.pid(name) for name in stack.service_names)
        headers = await login(session, stack.gateway_url)
        victim = stack.edge_urls[0]
        await stack.kill_edge(0)
        killed_at = time.monotonic()
        while True:
            async with session.post(f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", headers=headers) as resp:
                urls = (await resp.json())["manifest_urls"]
            if not any(u.startswith(victim + "/") for u in urls):
                break
            assert time.monotonic() - killed_at < 10 * HEARTBEAT_S, "killed edge still ranked"
            await asyncio.sleep(0.02)
        gone_after_s = time.monotonic() - killed_at
        assert gone_after_s <= 2 * HEARTBEAT_S + HEARTBEAT_S  # two intervals, plus one of scheduling slack
        assert urls and all(u.startswith(stack.edge_urls[1]) for u in urls)
        with pytest.raises(aiohttp.ClientConnectionError):  # a dead edge refuses connections, it does not hang
            async with session.get(victim + "/healthz", timeout=aiohttp.ClientTimeout(total=2)):
                pass
        await stack.restart_edge(0)
        assert len(await stack.wait_for_edges()) == 2
    assert not any(stack.alive(name) for name in stack.service_names)


@pytest.mark.parametrize("victim", ["edge-0", "license"])
async def test_processes_mode_restarts_a_service_killed_from_outside_and_says_so(
        stack_config: StackConfig, caplog: pytest.LogCaptureFixture, victim: str) -> None:
    caplog.set_level(logging.INFO, logger="abrkit.supervisor")
    config = replace(stack_config, processes=True)
    async with start_stack(config, log_dir=config.state_dir / "logs") as stack, aiohttp.ClientSession() as session:
        pid = stack.pid(victim)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)  # not through the stack: a crash, the OOM killer, an operator
        deadline = time.monotonic() + 30
        while stack.pid(victim) in (None, pid):
            assert time.monotonic() < deadline, f"{victim} was not restarted"
            await asyncio.sleep(0.05)
        assert stack.alive(victim) and stack.restarts(victim) == 1
        async with session.get(stack.url(victim) + "/healthz") as resp:  # the same URL serves again
            assert resp.status == 200
        if victim.startswith("edge"):
            assert stack.url(victim) in await stack.wait_for_edges(2)  # and heartbeats again
        else:
            headers = await login(session, stack.gateway_url)
            async with session.post(stack.license_url, json={"kids": [b64(b"\x00" * 16)]}, headers=headers) as resp:
                assert resp.status == 404  # the license service answers: unknown KID
        logged = [r.getMessage() for r in caplog.records if r.name == "abrkit.supervisor"]
        assert f"service {victim} (pid {pid}) was killed by SIGKILL; restarting it in 0.1 s (restart 1)" in logged
        assert f"service {victim} restarted (pid {stack.pid(victim)})" in logged
    assert not any(stack.alive(name) for name in stack.service_names)


def gateway_health(gateway_url: str) -> int:
    async def health() -> int:
        async with aiohttp.ClientSession() as session, session.get(gateway_url + "/healthz") as resp:
            return resp.status

    return asyncio.run(health())


def test_abrkit_serve_prints_ready_and_shuts_down_on_sigterm(tmp_path: Path, packaged) -> None:
    config_path = tmp_path / "serve" / "stack.json"
    with abrkit_serve("--content", str(packaged.content_root), "--config", str(config_path), "--port", "0",
                      "--edges", "1", "--no-access-log", stderr=subprocess.DEVNULL) as (proc, lines):
        gateway_url = lines[-1].split()[1]
        assert lines[-1].startswith("ready http://127.0.0.1:")
        assert any("edge-0" in line for line in lines)
        assert gateway_health(gateway_url) == 200
        assert oct(config_path.stat().st_mode & 0o777) == "0o600"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def _json_lines(text: str) -> list[dict[str, object]]:
    """The lines of `text` that are JSON objects: access- and audit-log records."""
    records = []
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append(record)
    return records


@pytest.mark.parametrize("mode", ["embedded", "processes", "log-console"])
def test_abrkit_serve_keeps_access_logs_off_the_console_unless_asked(tmp_path: Path, packaged, mode: str) -> None:
    state = tmp_path / "serve"
    config = StackConfig(config_path=state / "stack.json", content_root=packaged.content_root, port=0, edges=1,
                         heartbeat_s=HEARTBEAT_S, processes=mode == "processes")
    save_stack_config(config)
    flags = ["--log-console"] if mode == "log-console" else []
    with abrkit_serve("--config", str(config.config_path), *flags) as (proc, shown):
        gateway_url = shown[-1].split()[1]
        log_dir = state / "logs"
        # Edge heartbeats (to playback) and a request of ours (to the gateway) make access-log lines.
        heartbeat_log = log_dir / ("playback.log" if mode == "processes" else "access.log")
        gateway_log = log_dir / ("gateway.log" if mode == "processes" else "access.log")
        assert gateway_health(gateway_url) == 200
        if mode == "log-console":
            assert not any(line.lstrip().startswith("logs:") for line in shown)
            time.sleep(4 * HEARTBEAT_S)
        else:
            assert f"  logs: {log_dir} (" in "".join(shown)
            deadline = time.monotonic() + 20
            while sum('"/internal/edges/heartbeat"' in line for line in _read(heartbeat_log).splitlines()) < 3:
                assert time.monotonic() < deadline, "no heartbeats in the access log"
                time.sleep(0.1)
            # The access log is written in batches, at least every second (server/accesslog.py).
            while not any(r.get("path") == "/healthz" and r.get("service") == "gateway"
                          for r in _json_lines(_read(gateway_log))):
                assert time.monotonic() < deadline, "our request is not in the gateway's access log"
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        rest, errors = proc.communicate(timeout=30)
        assert proc.returncode == 0
        console = _json_lines("".join(shown) + rest + errors)
        if mode == "log-console":
            assert any(r.get("path") == "/internal/edges/heartbeat" for r in console)
        else:
            assert console == [], "access-log lines on the console"


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_abrkit_user_add_list_set_revoke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    config = str(tmp_path / "stack.json")
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long password\n"))
    assert abrkit(["user", "--config", config, "add", "carol", "--password-stdin", "--titles", "demo,clip"]) == 0
    assert abrkit(["user", "--config", config, "add", "carol", "--password-stdin"]) == 2  # exists
    assert abrkit(["user", "--config", config, "set", "carol", "--titles", "*"]) == 0
    assert abrkit(["user", "--config", config, "list"]) == 0
    assert "carol\t*" in capsys.readouterr().out
    assert abrkit(["user", "--config", config, "revoke", "carol"]) == 0
    assert read_users(Path(config))["carol"].disabled
    store = RevocationStore(tmp_path / "revocations.db")
    assert store.counts()["subjects"] == 1
    assert store.access_revoked(jti="j", family="f", subject="carol", issued_at=time.time() - 1)
    assert abrkit(["user", "--config", config, "revoke", "nobody"]) == 2


def test_stack_file_round_trips(tmp_path: Path) -> None:
    config = StackConfig(config_path=tmp_path / "stack.json", content_root=tmp_path / "content", edges=3,
                         allowed_origins=("http://a.example",), service_ports={"origin": 9001},
                         backend_overrides={"license": BackendPolicy(timeout_s=1.5)}, missed_heartbeats=3,
                         fail_static_heartbeats=0)
    save_stack_config(config)
    assert load_stack_config(config.config_path) == config
    data = json.loads(config.config_path.read_text())
    assert data["content_root"] == "content"  # relative to the file
    data["edgez"] = 1
    config.config_path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="edgez"):
        load_stack_config(config.config_path)


def test_the_stack_files_steering_windows_reach_the_playback_api(tmp_path: Path) -> None:
    config = StackConfig(config_path=tmp_path / "stack.json", content_root=tmp_path / "content", heartbeat_s=0.5,
                         missed_heartbeats=3, fail_static_heartbeats=40)
    secrets = load_or_create_secrets(config.resolved_secrets_path)
    create_store(config.resolved_revocations_path)
    app = build_app("playback", config, {name: 0 for name in ("playback", "gateway")}, secrets_for("playback", secrets))
    registry = app[playback._RUNTIME].registry
    assert (registry.stale_after_s, registry.fail_static_s) == (1.5, 20.0)
    with pytest.raises(ValueError, match="fail_static_heartbeats must be 0 .off. or from missed_heartbeats .3."):
        replace(config, fail_static_heartbeats=2)
    with pytest.raises(ValueError, match="missed_heartbeats must be in"):
        replace(config, missed_heartbeats=0)


async def test_processes_mode_hands_each_service_its_own_secrets_and_no_file(stack_config: StackConfig) -> None:
    from server.keys import load_secrets

    config = replace(stack_config, processes=True, edges=1)
    async with start_stack(config) as stack, aiohttp.ClientSession() as session:
        secrets = load_secrets(config.resolved_secrets_path)
        # The children never read the secrets file: with it gone, a killed one starts again as well.
        config.resolved_secrets_path.rename(config.state_dir / "elsewhere.json")
        for name in ("license", "edge-0"):
            pid = stack.pid(name)
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 30
            while stack.pid(name) in (None, pid):
                assert time.monotonic() < deadline, f"{name} was not restarted"
                await asyncio.sleep(0.05)
        await stack.wait_for_edges()
        headers = await login(session, stack.gateway_url)
        async with session.post(f"{stack.gateway_url}/playback/{ENCRYPTED_TITLE}", headers=headers) as resp:
            play = await resp.json()
        async with session.get(play["manifest_urls"][0]) as resp:
            assert resp.status == 200  # the restarted edge verifies URLs with the public key it was sent
        async with session.post(stack.license_url, json={"kids": [b64(b"\x00" * 16)]}, headers=headers) as resp:
            assert resp.status == 404  # the restarted license service verifies tokens
        hidden = [key.hex().encode() for key in (secrets.jwt_signing_key, secrets.url_signing_key,
                                                  secrets.internal_token)]
        for name in stack.service_names:
            proc = Path(f"/proc/{stack.pid(name)}")
            exposed = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
            assert not any(key in exposed for key in hidden), f"{name}: a secret on its command line or environment"
