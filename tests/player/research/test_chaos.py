"""Chaos scenarios against a real stack in processes mode: a fault is injected for real (a process
SIGKILLed, an edge's fault hook, a shaped link cut) while headless sessions play, and each scenario
asserts what the service promises: no crash or hang, no unhandled error in any service log, sessions
with buffer left finish, rebuffering in the fault window bounded, recovery measured, and every
failed request accounted for by request ID (or client-side where no server answered)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from player.research.chaos import (
    SCENARIOS,
    ChaosConfig,
    ChaosReport,
    ChaosStackConfig,
    chaos_stack,
    probe_interval_s,
    run_chaos,
)
from player.research.chaos_region import region_summary_lines, write_default_regions
from server.packager import PackageConfig, package_source, parse_ladder
from server.packaging.demo import DemoClipConfig
from server.packaging.source import DemoSource

pytestmark = pytest.mark.slow

TITLE = "chaos"
SEGMENT_S = 4.0
SPEED = 4.0
FAULT_AT_S = 8.0
BUFFER_CAP_S = 12.0
HANG_GUARD_S = 150.0  # wall seconds for one whole scenario (stack start, sessions, fault, stop)


@pytest.fixture(scope="module")
def chaos_content(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 36 s encrypted title (9 segments) at low resolution: long enough that the fault lands
    while the sessions still have segments to fetch, encrypted so sessions need the license. Packaged
    straight from the demo clip: no MP4 in between (the file input path is tested with `packaged`), at
    12 frames/s since the sessions never decode (segment sizes follow the ladder's bitrates, not the rate)."""
    content = tmp_path_factory.mktemp("chaos") / "content"
    clip = DemoClipConfig(duration_s=36.0, width=384, height=216, frame_rate=12)
    package_source(DemoSource(clip), content / TITLE,
                   PackageConfig(ladder=parse_ladder("144p:200k,180p:400k,216p:700k"), preset="veryfast",
                                 encrypt=True), title=TITLE)
    return content


async def _run(scenario: str, content: Path, tmp_path: Path, sessions: int = 2, *,
               client_regions: tuple[str, ...] = (), regions_path: Path | None = None,
               fault_s: float | None = None) -> ChaosReport:
    config = ChaosConfig(scenario=scenario, sessions=sessions, speed=SPEED, fault_at_s=FAULT_AT_S,
                         buffer_cap_s=BUFFER_CAP_S, session_timeout_s=90.0, recovery_wait_s=15.0,
                         client_regions=client_regions, fault_s=fault_s,
                         probe_interval_s=0.3)  # several new sessions try during a service outage
    stack_config = ChaosStackConfig(content_root=content, work_dir=tmp_path / "stack",
                                    log_dir=tmp_path / "logs", edges=2, heartbeat_s=0.5, regions_path=regions_path)

    async def go() -> ChaosReport:
        async with chaos_stack(stack_config) as (stack, password):
            return await run_chaos(config, stack, title=TITLE, password=password, out_dir=tmp_path / "out")

    return await asyncio.wait_for(go(), timeout=HANG_GUARD_S)


def _assert_common(report: ChaosReport) -> None:
    """What every scenario must hold."""
    assert "fault_error" not in report.service, report.service.get("fault_error")
    assert report.fault_start_s is not None and report.fault_end_s is not None
    for s in report.sessions:
        assert s.crashed is None, s.crashed
        assert not s.hung, f"session {s.index} hung"
        assert s.buffer_at_fault_s is not None, f"session {s.index} was not playing when the fault hit"
        if s.buffer_at_fault_s > 0:
            assert s.finished, f"session {s.index} had {s.buffer_at_fault_s} s buffered but did not finish: {s.error}"
        # Rebuffering the fault can cause is bounded by how far the fault outlasts the buffer, plus
        # one segment's download on the recovered path.
        fault_s = report.fault_end_s - report.fault_start_s
        assert s.fault_rebuffer_s <= max(0.0, fault_s - s.buffer_at_fault_s) + SEGMENT_S
        if s.buffer_at_fault_s >= 8.0 and report.scenario != "link-outage":
            assert s.fault_rebuffer_s == 0.0, f"session {s.index} stalled {s.fault_rebuffer_s} s"
        # A session that fetched its last segment before the fault ended has nothing to recover.
        assert s.recovery_s is not None or s.done_before_fault_end, f"session {s.index}: no successful request after the fault"
    assert report.log_problems == (), "\n".join(report.log_problems)
    acc = report.accounting
    assert acc["unaccounted"] == [], acc["unaccounted"]
    assert acc["matched_in_logs"] + acc["client_side"] == acc["failed"]


async def test_kill_edge_fails_over_without_rebuffering_and_steering_drops_the_edge(
        chaos_content: Path, tmp_path: Path) -> None:
    report = await _run("kill-edge", chaos_content, tmp_path)
    _assert_common(report)
    service = report.service
    assert service["steering_drop_wall_s"] is not None
    # The registry forgets an edge two heartbeats after its last one; one more heartbeat of slack
    # covers the polling of a loaded machine.
    assert service["steering_drop_heartbeats"] <= 3.0
    assert service["new_sessions_steered_to_victim"] is False
    assert service["rejoin_wall_s"] is not None
    hit = [s for s in report.sessions if s.failed_requests]
    assert hit, "no session ever asked the killed edge (the fault landed too late to matter)"
    assert all(s.failover_s is not None for s in hit)
    assert all(s.fault_rebuffer_s == 0.0 for s in report.sessions)
    # A SIGKILLed process answers nothing: accounted client-side, and only ever on the victim.
    assert report.accounting["client_side"] == report.accounting["failed"] > 0
    assert report.accounting["client_side_hosts"] == [service["victim_url"]]


async def test_slow_edge_delays_responses_without_failures(chaos_content: Path, tmp_path: Path) -> None:
    report = await _run("slow-edge", chaos_content, tmp_path)
    _assert_common(report)
    assert report.service["matched_requests"] > 0, "the fault hook delayed nothing"
    assert report.service["injected_errors"] == 0
    assert report.service["service_recovery_wall_s"] is not None
    assert all(s.fault_rebuffer_s == 0.0 for s in report.sessions)


async def test_edge_5xx_burst_is_retried_on_the_other_edge_and_logged_by_request_id(
        chaos_content: Path, tmp_path: Path) -> None:
    report = await _run("edge-5xx", chaos_content, tmp_path)
    _assert_common(report)
    assert report.service["injected_errors"] > 0
    acc = report.accounting
    assert acc["failed"] > 0 and acc["matched_in_logs"] == acc["failed"]
    assert set(acc["by_kind"]) == {"HTTP 503"}
    assert all(s.failover_s is not None for s in report.sessions if s.failed_requests)


async def test_origin_outage_edges_serve_what_they_hold_and_misses_fail_fast(
        chaos_content: Path, tmp_path: Path) -> None:
    report = await _run("origin-outage", chaos_content, tmp_path)
    _assert_common(report)
    assert all(p["failed"] == 0 for p in report.service["preposition"])
    assert report.service["miss_statuses"] == [502], "a miss must fail with 502 while the origin is down"
    # "Fast": refused at once, not after the edge's origin timeout (10 s).
    assert report.service["miss_wall_s_max"] < 10.0
    assert report.accounting["failed"] == 0, "a pre-positioned title must play from the edges' caches"
    assert report.service["service_recovery_wall_s"] is not None


@pytest.mark.parametrize("scenario, step", [("license-outage", "license request failed"),
                                            ("auth-outage", "login failed")])
async def test_service_outage_fails_new_sessions_fast_while_running_ones_play_on(
        chaos_content: Path, tmp_path: Path, scenario: str, step: str) -> None:
    report = await _run(scenario, chaos_content, tmp_path)
    _assert_common(report)
    service = report.service
    assert service["baseline"]["ok"], service["baseline"]
    during = service["new_sessions_during"]
    assert during and all(not p["ok"] and step in p["error"] for p in during), during
    statuses = {code for p in during for code in p["statuses"]}
    assert statuses <= {502, 503} and 503 in statuses, f"the gateway's breaker never opened: {statuses}"
    assert service["service_recovery_wall_s"] is not None, service["after"]
    assert all(s.failed_requests == 0 for s in report.sessions), "running sessions must not need the service"
    assert report.accounting["matched_in_logs"] == report.accounting["failed"] > 0


async def test_link_outage_recovers_when_the_link_returns(chaos_content: Path, tmp_path: Path) -> None:
    report = await _run("link-outage", chaos_content, tmp_path)
    _assert_common(report)  # every session recovered (a successful request after the fault)
    # With the buffer the sessions hold, the outage may cost nothing visible: at least make sure it happened.
    assert report.service["links_cut"] == len(report.sessions) > 0


async def test_region_outage_moves_its_clients_to_the_next_region(chaos_content: Path, tmp_path: Path) -> None:
    regions = write_default_regions(tmp_path / "regions.json")
    # A 6 s outage: the 36 s title still has segments to fetch after it (the common checks ask for one).
    report = await _run("region-outage", chaos_content, tmp_path, sessions=4, client_regions=("eu", "us"),
                        regions_path=regions, fault_s=6.0)
    _assert_common(report)
    service = report.service
    assert service["outage_region"] == "eu" and report.victim == "region eu (eu-1, eu-2)"
    assert service["steering_drop_wall_s"] is not None and service["rejoin_wall_s"] is not None
    # Every eu client got a segment from a us edge (within a buffer's worth of the outage: it asks for one
    # when its buffer has room); us clients never failed a request.
    recovery = service["region_recovery_s"]
    assert set(recovery) == {"0", "2"} and all(r is not None and r < BUFFER_CAP_S + SEGMENT_S
                                               for r in recovery.values()), recovery
    assert all(s.failed_requests == 0 for s in report.sessions if s.index % 2 == 1)
    assert all(s.failed_requests > 0 for s in report.sessions if s.index % 2 == 0)
    # The failed requests went to the dead region only: refused connections, accounted client-side.
    assert report.accounting["client_side"] == report.accounting["failed"]
    lines = region_summary_lines(report)
    assert lines[0].startswith("  clients in eu: 2 sessions") and "recovery (outage -> first segment" in lines[0]
    assert lines[1].startswith("  clients in us: 2 sessions")


def test_every_scenario_is_tested() -> None:
    tested = {"kill-edge", "slow-edge", "edge-5xx", "origin-outage", "license-outage", "auth-outage", "link-outage",
              "region-outage"}
    assert set(SCENARIOS) == tested


def test_cli_refuses_a_content_root_without_a_title(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from player.cli import main

    assert main(["chaos", "kill-edge", "--content", str(tmp_path)]) == 2
    assert "--content and --title go together" in capsys.readouterr().err
    assert main(["chaos", "kill-edge", "--content", str(tmp_path), "--title", "missing"]) == 2
    assert "no packaged title 'missing'" in capsys.readouterr().err


def test_a_short_service_outage_is_probed_often_enough_to_open_the_breaker() -> None:
    assert probe_interval_s(1.0, 30.0, 5) == 1.0  # a long outage: the configured spacing
    short = probe_interval_s(1.0, 4.0, 5)
    assert short < 1.0 and 4.0 / short > 5  # more failures than the threshold fit in the fault
