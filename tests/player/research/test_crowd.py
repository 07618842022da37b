"""The flash crowd: its plan, its light client on a modeled link, what it reads from the services,
and whole runs against a real stack in processes mode (small: the bench runs K = 1,000)."""

from __future__ import annotations

import asyncio
import json
import os
import random
from pathlib import Path

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from netsim import synthetic
from netsim.link import LinkModel
from player.client.fetch import FetchConfig, host_of
from player.errors import CliError
from player.research.crowd import (
    CrowdConfig,
    CrowdSetup,
    arrivals_s,
    crowd_accounts,
    plan_sessions,
    run_crowd_stack,
    shard_count,
    shards,
    summary_lines,
)
from player.research.crowdclient import (
    InitSegmentsOnly,
    ModeledLinkFetcher,
    Tally,
    _origin_of,
    content_key,
    endpoint_of,
)
from player.research.crowdstack import by_label, diff, origin_requests, parse_prometheus, prepare_content, total
from tests.conftest import CLEAR_TITLE, ENCRYPTED_TITLE, PackagedTitles

HANG_GUARD_S = 240.0
# Wall seconds from planning a phase to its start (3 s by default): the shards here are small and their
# workers warmed up, so 1.5 s is enough for them to start on time (lateness is reported, not hidden).
MARGIN_S = 1.5

# --- the plan ---------------------------------------------------------------------------------------


def test_arrivals_fill_the_window_evenly_or_as_a_poisson_process() -> None:
    even = arrivals_s(CrowdConfig(sessions=4, within_s=10.0))
    assert even.tolist() == [0.0, 2.5, 5.0, 7.5]
    poisson = arrivals_s(CrowdConfig(sessions=1000, within_s=60.0, arrival="poisson", seed=3))
    assert poisson.size == 1000 and np.all(np.diff(poisson) >= 0) and 0 <= poisson[0] and poisson[-1] < 60.0
    assert np.array_equal(poisson, arrivals_s(CrowdConfig(sessions=1000, within_s=60.0, arrival="poisson", seed=3)))


def test_the_plan_puts_the_crowd_after_the_lead_on_shared_accounts_and_seeded_links() -> None:
    config = CrowdConfig(sessions=25, within_s=5.0, playing=4, lead_s=8.0, watch_s=10.0, sessions_per_account=10)
    plan = plan_sessions(config, release="new", catalogue="old", segment_s=4.0, password="pw")
    assert [s.arrival_s for s in plan.playing] == [0.0, 1.0, 2.0, 3.0]
    assert [s.title for s in plan.playing] == ["old"] * 4 and len({s.username for s in plan.playing}) == 4
    assert plan.crowd[0].arrival_s == 8.0 and plan.crowd[-1].arrival_s < 13.0
    assert {s.username for s in plan.crowd} == set(crowd_accounts(config)) and len(crowd_accounts(config)) == 3
    assert all(s.max_segments == 3 and s.title == "new" for s in plan.crowd)
    again = plan_sessions(config, release="new", catalogue="old", segment_s=4.0, password="pw")
    assert np.array_equal(plan.playing[1].trace.bandwidth_bps, again.playing[1].trace.bandwidth_bps)
    assert not np.array_equal(plan.playing[1].trace.bandwidth_bps, plan.playing[2].trace.bandwidth_bps)
    parts = shards(plan.crowd, 3)
    assert [len(p) for p in parts] == [9, 8, 8] and parts[0][1].index == 3


def test_local_shards_run_at_once_and_dask_tasks_have_a_size() -> None:
    assert shard_count(CrowdConfig(sessions=1000, workers=2), 1000) == 2
    assert shard_count(CrowdConfig(sessions=1000, workers=0), 1000) == 1
    assert shard_count(CrowdConfig(sessions=1000, dask_address="tcp://x:1", sessions_per_task=300), 1000) == 4
    assert shard_count(CrowdConfig(), 0) == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"sessions": 0}, "sessions must be >= 1"), ({"within_s": 0.0}, "within_s must be > 0"),
    ({"speed": float("nan")}, "speed must be > 0"), ({"arrival": "burst"}, "arrival must be one of"),
    ({"login": "sso"}, "login must be one of"), ({"watch_s": -1.0}, "watch_s must be > 0"),
    ({"start_margin_s": -1.0}, "start_margin_s must be >= 0"),
    ({"workers": -1}, "workers >= 0"),
])
def test_a_bad_crowd_config_says_what_is_wrong(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CrowdConfig(**change)  # type: ignore[arg-type]


# --- the client -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("url", "endpoint", "key"), [
    ("http://127.0.0.1:8000/s/tok.mac/new/video/v1/3.m4s", "edge", "127.0.0.1:8000/new/video/v1/3.m4s"),
    ("http://127.0.0.1:8000/playback/new", "playback", None), ("http://h:1/auth/token", "auth", None),
    ("http://h:1/license?x=1", "license", None), ("http://h:1", "other", None),
])
def test_requests_are_told_apart_by_service(url: str, endpoint: str, key: str | None) -> None:
    assert (endpoint_of(url), content_key(url)) == (endpoint, key)
    assert _origin_of(url) == host_of(url)  # the fetcher's failover bookkeeping, without urlsplit


async def test_answers_arrive_when_the_modeled_link_delivers_them_one_after_another(aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    body = b"x" * 125_000  # one second on a 1 Mbit/s link

    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"X-Cache": "HIT"})

    app = web.Application()
    app.router.add_get("/s/tok/t/video/v/{n}.m4s", handler)
    server = await aiohttp_server(app)
    speed, rtt_s = 20.0, 0.1
    tally = Tally()
    async with aiohttp.ClientSession() as http:
        fetcher = ModeledLinkFetcher(http, FetchConfig(), link=LinkModel(synthetic.constant(1e6, duration_s=100.0)),
                                     offset_s=0.0, rtt_s=rtt_s, speed=speed, tally=tally, rng=random.Random(0))
        first, second = await asyncio.gather(*(fetcher.fetch([str(server.make_url(f"/s/tok/t/video/v/{n}.m4s"))])
                                               for n in (1, 2)))
    durations = sorted([first.duration_s * speed, second.duration_s * speed])
    assert durations[0] >= 1.0 + rtt_s  # in trace seconds: RTT, then the body at 1 Mbit/s
    assert durations[1] >= 2.0 + rtt_s  # the second body waited for the first
    assert first.ttfb_s * speed >= rtt_s
    assert tally.x_cache["HIT"] == 2 and tally.statuses["edge"]["200"] == 2 and tally.bytes_received == 250_000
    assert tally.objects == {f"{server.host}:{server.port}/t/video/v/1.m4s", f"{server.host}:{server.port}/t/video/v/2.m4s"}


async def test_the_init_only_decoder_fetches_every_init_and_drops_media(aiohttp_server) -> None:  # type: ignore[no-untyped-def]
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.Response(status=404 if "broken" in request.path else 200, body=b"init")

    app = web.Application()
    app.router.add_get("/{path:.*}", handler)
    server = await aiohttp_server(app)
    decoder = InitSegmentsOnly()
    async with aiohttp.ClientSession() as http:
        fetcher = ModeledLinkFetcher(http, FetchConfig(attempts=1), link=LinkModel(synthetic.constant(1e8)),
                                     offset_s=0.0, rtt_s=0.0, speed=1.0, tally=Tally(), rng=random.Random(0))
        await decoder.start({rep: ([str(server.make_url(f"/{rep}/init.mp4"))], {}) for rep in ("v1", "a1", "broken")},
                            fetcher, continuous=False)
    decoder.submit("video", "v1", 0, b"media")
    summary = await decoder.finish()
    assert sorted(seen) == ["/a1/init.mp4", "/broken/init.mp4", "/v1/init.mp4"]
    assert summary.segments == 1 and summary.frames_decoded == 0 and len(summary.errors) == 1


# --- what the services say ----------------------------------------------------------------------


def test_prometheus_text_is_read_without_the_namespace_and_summed_by_label() -> None:
    before = parse_prometheus("# HELP x y\nabrkit_edge_cache_hits_total 3\n"
                              'abrkit_edge_origin_fetches_total{outcome="ok"} 2\n')
    after = parse_prometheus('abrkit_edge_cache_hits_total 10\nabrkit_edge_origin_fetches_total{outcome="ok"} 5\n'
                             'abrkit_edge_origin_fetches_total{outcome="not_modified"} 1\nbroken line x\n')
    delta = diff(after, before)
    assert total(delta, "edge_cache_hits_total") == 7.0
    assert by_label(delta, "edge_origin_fetches_total", "outcome") == {"ok": 3.0, "not_modified": 1.0}
    assert total(delta, "edge_origin_fetches_total", outcome="ok") == 3.0


def test_origin_requests_per_segment_come_from_the_origins_access_log(tmp_path: Path) -> None:
    lines = [{"ts": 10.0, "method": "GET", "path": "/new/video/v1/1.m4s", "status": 200},
             {"ts": 11.0, "method": "GET", "path": "/new/video/v1/1.m4s", "status": 200},
             {"ts": 12.0, "method": "GET", "path": "/new/video/v2/1.m4s", "status": 200},
             {"ts": 12.5, "method": "GET", "path": "/new/manifest.mpd", "status": 200},
             {"ts": 13.0, "method": "GET", "path": "/old/video/v1/1.m4s", "status": 200},
             {"ts": 99.0, "method": "GET", "path": "/new/video/v1/2.m4s", "status": 200}]
    log = tmp_path / "origin.log"
    log.write_text("starting\n" + "\n".join(json.dumps(line) for line in lines) + "\n")
    assert origin_requests(log, "new", 10.0, 50.0) == {"requests": 3, "segments": 2}
    assert origin_requests(tmp_path / "missing.log", "new", 0.0, 1.0) is None


def test_titles_are_linked_into_a_private_content_root(tmp_path: Path, packaged: PackagedTitles) -> None:
    source = packaged.content_root / ENCRYPTED_TITLE
    root = prepare_content(tmp_path / "content", {"premiere": source, "premiere-playing": source})
    for name in ("premiere", "premiere-playing"):
        assert (root / name / "manifest.mpd").read_bytes() == (source / "manifest.mpd").read_bytes()
        assert (root / name / "keys.json").is_file()
    assert os.stat(root / "premiere" / "segments.json").st_ino == os.stat(source / "segments.json").st_ino
    with pytest.raises(CliError, match="not a valid title name"):
        prepare_content(tmp_path / "c2", {"bad name": source})
    with pytest.raises(CliError, match="not a packaged title"):
        prepare_content(tmp_path / "c3", {"ok": tmp_path})


# --- whole runs ---------------------------------------------------------------------------------


async def _crowd(packaged: PackagedTitles, tmp_path: Path, config: CrowdConfig):  # type: ignore[no-untyped-def]
    setup = CrowdSetup(release_dir=packaged.content_root / ENCRYPTED_TITLE,
                       catalogue_dir=packaged.content_root / CLEAR_TITLE, work_dir=tmp_path)
    return await asyncio.wait_for(run_crowd_stack(config, setup), timeout=HANG_GUARD_S)


@pytest.mark.slow
async def test_a_crowd_of_fifty_from_a_worker_process_against_a_real_stack(
        packaged: PackagedTitles, tmp_path: Path) -> None:
    config = CrowdConfig(sessions=50, within_s=5.0, speed=10.0, playing=3, lead_s=3.0, link_mean_bps=2e6, workers=1,
                         start_margin_s=MARGIN_S)
    report = await _crowd(packaged, tmp_path, config)
    f = report.figures
    crowd = f["crowd"]
    assert (crowd["started"], crowd["failed"]) == (50, 0), crowd["errors"]
    assert 0 < crowd["startup_s"]["p50"] <= crowd["startup_s"]["p95"] <= crowd["startup_s"]["max"]
    assert set(crowd["bootstrap_wall"]) == {"playback", "manifest", "license"}  # signed in before: no login
    segments = f["origin"]["media_segment_requests"]
    assert segments is not None and 1 <= segments["segments"] <= segments["requests"]
    assert segments["segments"] <= 4 * 3  # the release's media segments (3 video renditions and audio)
    pairs = f["origin"]["edge_segment_pairs"]
    assert segments["segments"] <= pairs <= 2 * segments["segments"]  # served by one edge or both
    assert f["origin"]["per_media_segment"] == pytest.approx(segments["requests"] / pairs)
    assert f["origin"]["fetches"] >= segments["requests"] and f["origin"]["objects_at_edges"] > 0
    assert 0.5 < f["edges"]["crowd_hit_ratio"] < 1.0 and 0.5 < f["edges"]["hit_ratio"] < 1.0
    assert f["shedding"]["shed_requests"] == 0 and f["shedding"]["gateway_rejected"] == {}
    playing = f["playing"]
    assert playing["with_crowd"]["played"] == playing["baseline"]["played"] == 3
    assert playing["paired"]["pairs"] == 3
    assert [p["failed"] for p in report.preposition] == [0, 0]
    cpu = f["service_cpu_s"]
    assert set(cpu) == {"origin", "playback", "edge-0", "edge-1", "auth", "license", "gateway"}
    assert all(v >= 0 for v in cpu.values()) and cpu["gateway"] > 0
    for row in report.crowd.crowd:
        assert row["statuses"]["edge"].get("200", 0) > 0 and "none" not in row["statuses"]["edge"]
        assert row["late_s"] >= 0.0
    assert crowd["arrival_late_s_max"] == max(row["late_s"] for row in report.crowd.crowd)
    json.dumps(report.as_dict())
    text = "\n".join(summary_lines(report))
    assert "50 of 50 started playing" in text and "per segment" in text


@pytest.mark.slow
async def test_a_crowd_that_logs_in_at_once_meets_the_gateways_limit(packaged: PackagedTitles, tmp_path: Path) -> None:
    # 60 logins within 0.1 s wall from one address: over the gateway's anonymous per-client bucket.
    config = CrowdConfig(sessions=60, within_s=1.0, speed=10.0, playing=0, lead_s=0.0, login="each", workers=0,
                         baseline=False, watch_s=4.0, start_margin_s=MARGIN_S)
    report = await _crowd(packaged, tmp_path, config)
    f = report.figures
    shed = f["shedding"]
    assert shed["client"]["auth"].get("429", 0) > 0 and shed["gateway_rate_limited"].get("auth", 0) > 0
    assert shed["shed_requests"] >= shed["client"]["auth"]["429"]
    assert "token" in f["crowd"]["bootstrap_wall"]
    failed = [r for r in report.crowd.crowd if r["error"]]
    # Refused (429), or timed out behind the other logins' password checks (504): never anything else.
    assert all("login failed" in r["error"] for r in failed), [r["error"] for r in failed[:3]]
    assert f["crowd"]["started"] + len(failed) == 60


@pytest.mark.slow
async def test_a_crowd_longer_than_its_devices_tokens_is_refused_before_it_starts(
        packaged: PackagedTitles, tmp_path: Path) -> None:
    config = CrowdConfig(sessions=5, within_s=100.0, speed=0.1, playing=0, workers=0)
    with pytest.raises(CliError, match="longer than its devices' access tokens live"):
        await _crowd(packaged, tmp_path, config)


@pytest.mark.parametrize(("argv", "message"), [
    (["crowd", "--sessions", "0"], "sessions must be >= 1"),
    (["crowd", "--title", "other"], "--title and --playing-title name titles under --content"),
    (["crowd", "--content", "{root}", "--title", "missing"], "no packaged title 'missing'"),
    (["crowd", "--content", "{root}", "--title", "clip", "--playing-title", "clip"], "--playing-title must be another"),
    (["crowd", "--abr", "nosuchabr"], "nosuchabr"),
])
def test_crowd_command_errors_are_one_line(argv: list[str], message: str, packaged: PackagedTitles,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from player.cli import main

    assert main([a.replace("{root}", str(packaged.content_root)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.slow
def test_a_crowd_on_a_dask_cluster(packaged: PackagedTitles, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed", reason="dask.distributed is not installed (extra 'dist')")
    with distributed.LocalCluster(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as cluster:
        config = CrowdConfig(sessions=12, within_s=2.0, speed=10.0, playing=1, lead_s=1.0, baseline=False,
                             dask_address=cluster.scheduler_address, sessions_per_task=6, start_margin_s=MARGIN_S)
        report = asyncio.run(_crowd(packaged, tmp_path, config))
    assert report.figures["crowd"]["started"] == 12
    assert len([k for k in report.figures["fidelity"]["loop_lag_p99_ms"] if k.startswith("crowd-")]) == 2
