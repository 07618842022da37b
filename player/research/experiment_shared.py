"""Experiments with several players behind one link (`abrkit run --players-per-link N`).

The N cells of a group (same mode, ABR, trace and offset) play together: simulated ones in the
shared-link simulator (`sim_shared.run_shared`), emulated ones as N headless players whose
connections all cross one shaper (one bottleneck, max-min fair per connection), started together
once all have bootstrapped, player i joining `i * join_spacing_s` of trace time after the first.
Each player writes its own results line, with the group's fairness figures (`link_*` fields).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import aiohttp
import numpy as np

from abr.plugins import load_plugins
from netsim.clock import sleep_on
from netsim.link import LinkModel
from netsim.shaper import Shaper, ShaperConfig
from netsim.sharing import replay
from netsim.trace import Trace
from player.client.eventlog import EventLog
from player.client.harness import LinkConfig, TitleTarget, pipeline_factory, play_headless
from player.client.headless import PlaybackReport
from player.errors import CliError
from player.research.experiment_cells import (
    Cell,
    EmulationSettings,
    Row,
    _lag_probe,
    _p99_ms,
    base_row,
    emulate_row,
    emulation_fetch,
    player_config,
    session_result,
    sim_row,
)
from player.research.fairness import LinkFairness, festive_instability
from player.research.sim import LatencyLookup, SessionResult, SimProfile
from player.research.sim_shared import RESPONSE_HEADER_BYTES, fairness_of, join_times_s, run_shared
from player.session import SegmentRecord
from player.video import Video

TaskSpec = tuple[Callable[..., list[Row]], tuple[Any, ...]]


def groups_of(cells: Sequence[Cell]) -> list[list[Cell]]:
    """The cells grouped by the link they share, in first-seen order, players in order."""
    groups: dict[tuple[str, ...], list[Cell]] = {}
    for cell in cells:
        groups.setdefault(cell.group, []).append(cell)
    return [sorted(g, key=lambda c: c.player) for g in groups.values()]


def whole_groups(cells: Sequence[Cell], todo: Sequence[Cell]) -> list[Cell]:
    """Every cell of a group any of whose cells is to run (players of one link run together)."""
    wanted = {c.group for c in todo}
    return [c for c in cells if c.group in wanted]


def _link_fields(fairness: LinkFairness | None, player: int, join_s: float, instability: float | None) -> Row:
    figures = {} if fairness is None else fairness.as_dict()
    return {"link_players": figures.get("players"), "link_player": player, "link_join_s": join_s,
            "instability": None if instability is None else round(instability, 6),
            **{f"link_{k}": (round(v, 6) if isinstance(v, float) else v) for k, v in figures.items() if k != "players"}}


def shared_model_download_s(trace: Trace, profile: SimProfile, offset_s: float, joins_s: Sequence[float],
                            players: Sequence[tuple[Sequence[SegmentRecord], Sequence[SegmentRecord]]], *,
                            header_bytes: int = RESPONSE_HEADER_BYTES,
                            abandoned: Sequence[Sequence[tuple[float, int]]] = ()) -> list[np.ndarray]:
    """How long each emulated video request of each player takes in the link model the shaper applies
    (`experiment_cells.model_download_s`: goodput = trace rate, latency on the trace clock) when every
    player's requests (video and audio: `players[i]` = (records, audio records)), made when they were
    made, share the link processor-sharing fairly (`netsim.sharing`). Player i's first media request
    is at link time `joins_s[i]` (`offset_s` into the trace), as its results line says. Abandoned
    downloads are in no record: `abandoned[i]` gives player i's as (session time requested, bytes
    received; `abandoned_downloads`), each on the link with what it received (without them, an ABR
    that abandons makes the model faster than the link was). Each response carries `header_bytes` on
    the link besides its segment, as in the shaper and the shared-link simulator
    (`sim_shared.RESPONSE_HEADER_BYTES`)."""
    shaper_model = replace(profile, payload_factor=1.0, latency_on_trace_clock=True)
    made: list[float] = []
    sizes: list[float] = []
    spans: list[tuple[int, int]] = []  # each player's video requests in `made`
    given_up = list(abandoned) or [()] * len(players)
    if len(given_up) != len(players):
        raise ValueError("give the abandoned downloads of every player or of none")
    for join_s, (records, audio_records), dropped in zip(joins_s, players, given_up):
        both = [(r.request_time_s, r.size_bytes) for r in [*records, *audio_records]]
        if not both and not dropped:
            spans.append((len(made), len(made)))
            continue
        t0 = offset_s + join_s - min(t for t, _ in [*both, *dropped])
        spans.append((len(made), len(made) + len(records)))
        made += [t0 + t for t, _ in [*both, *dropped]]
        sizes += [float(size + header_bytes) for _, size in [*both, *dropped]]
    if not made:
        return [np.zeros(0) for _ in players]
    times = np.asarray(made)
    waits = LatencyLookup([trace], shaper_model).at(times, np.zeros(len(made), dtype=np.int64))
    finish = np.asarray(replay(LinkModel(trace), [(float(t), float(w), s) for t, w, s in zip(times, waits, sizes)]))
    return [finish[a:b] - times[a:b] for a, b in spans]


def abandoned_downloads(events: Sequence[Mapping[str, Any]]) -> list[tuple[float, int]]:
    """A session's abandoned video downloads from its event log (`EventLog.events`): (session time of
    the request, which is its decision's, bytes received by the abandonment)."""
    out: list[tuple[float, int]] = []
    requested: float | None = None
    for event in events:
        if event.get("media", "video") != "video":
            continue
        if event["type"] == "decision":
            requested = float(event["t"])
        elif event["type"] == "abandon" and "bytes_received" in event and requested is not None:
            out.append((requested, int(event["bytes_received"])))
            requested = None
    return out


def _group_rows(cells: Sequence[Cell], rows: Sequence[Row], results: Sequence[SessionResult | None], video: Video,
                trace: Trace, profile: SimProfile) -> list[Row]:
    """The players' rows with the group's fairness (None where a player failed: no group figures)."""
    joins = join_times_s(len(cells), cells[0].join_spacing_s)
    fairness = None
    if all(r is not None for r in results):
        ok: list[SessionResult] = [r for r in results if r is not None]
        link = LinkModel(trace, payload_factor=profile.payload_factor)
        fairness = fairness_of(ok, video, link, cells[0].offset_s, joins, profile.qoe.name)
    seg_s = video.ladder.segment_duration_s
    out = []
    for cell, row, result, join in zip(cells, rows, results, joins):
        instability = None if result is None else festive_instability(result.bitrates_bps, seg_s)
        out.append({**row, "trace_offset_s": round(cell.offset_s + join, 3),
                    **_link_fields(fairness, cell.player, join, instability)})
    return out


def simulate_group_task(abr: str, video: Video, traces: list[Trace], groups: list[list[Cell]], profile: SimProfile,
                        plugins: tuple[str, ...] = ()) -> list[Row]:
    load_plugins(plugins)
    rows: list[Row] = []
    for group, trace in zip(groups, traces):
        shared = run_shared([abr] * len(group), video, trace, profile, offset_s=group[0].offset_s,
                            join_spacing_s=group[0].join_spacing_s)
        rows += _group_rows(group, [sim_row(c, r) for c, r in zip(group, shared.players)], shared.players, video,
                            trace, profile)
    return rows


def emulate_group_task(groups: list[list[Cell]], traces: list[Trace], endpoint: TitleTarget,
                       settings: EmulationSettings) -> list[Row]:
    """Runs the groups concurrently in one event loop, each behind its own shaper; one row per cell."""
    load_plugins(settings.plugins)
    return asyncio.run(_emulate_groups(groups, traces, endpoint, settings))


async def _emulate_groups(groups: list[list[Cell]], traces: list[Trace], endpoint: TitleTarget,
                          settings: EmulationSettings) -> list[Row]:
    lags_s: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags_s))
    try:
        spacing = settings.start_spacing_s
        done = await asyncio.gather(*(
            _emulate_group(group, trace, endpoint, settings, delay_s=i * spacing * len(group))
            for i, (group, trace) in enumerate(zip(groups, traces))))
    finally:
        probe.cancel()
    lag_ms = _p99_ms(lags_s) or 0.0
    return [{**row, "loop_lag_p99_ms": lag_ms} for rows in done for row in rows]


class StartGate:
    """Opens once each of `count` players has arrived or withdrawn (failed before playing)."""

    def __init__(self, count: int) -> None:
        self._waiting = count
        self._open = asyncio.Event()
        if count <= 0:
            self._open.set()

    def _leave(self) -> None:
        self._waiting -= 1
        if self._waiting <= 0:
            self._open.set()

    async def arrive(self) -> None:
        self._leave()
        await self._open.wait()

    def withdraw(self) -> None:
        self._leave()


async def _emulate_group(cells: list[Cell], trace: Trace, endpoint: TitleTarget, settings: EmulationSettings, *,
                         delay_s: float) -> list[Row]:
    await asyncio.sleep(delay_s)
    profile, first = settings.profile, cells[0]
    assert first.speed is not None
    speed = first.speed
    # The group's one bottleneck; its clock starts at the first media request (bootstrap is unshaped).
    # Its clock stands still while any request is at the server (netsim.clock), and so do the players'
    # session clocks, which read it: the stack's own time is no trace time, as for one player alone.
    # As for one player alone too, it leaves out the event loop's stalls and each player's own time
    # from a response's last byte to its next request or wait (`exclude_client_time`): with N players
    # in one loop, one player's decision or a late wake-up would otherwise be link time for all.
    link = ShaperConfig(upstream_host="127.0.0.1", upstream_port=9, trace=trace, rtt_ms=profile.rtt_s * 1000,
                        speed=speed, start_offset_s=first.offset_s, exclude_server_time=True,
                        exclude_loop_stalls=True, exclude_client_time=True)
    joins = join_times_s(len(cells), first.join_spacing_s)
    gate = StartGate(len(cells))

    logs = [EventLog(keep=True) for _ in cells]  # for the abandoned downloads (the link model column)

    async def play(cell: Cell, join_s: float, log: EventLog) -> tuple[Row, SessionResult | None, PlaybackReport | None]:
        arrived = False

        async def start() -> None:
            nonlocal arrived
            arrived = True
            await gate.arrive()
            await sleep_on(shaper.clock.now, join_s / speed)  # trace seconds on the link's clock

        started = time.monotonic()
        try:
            report = await play_headless(endpoint, player_config(cell, settings), link=LinkConfig(shape_bootstrap=False),
                                         fetch=emulation_fetch(settings.profile), events=log, decoder_factory=pipeline_factory(settings.decode),
                                         shared_link=shaper, before_playback=start)
        except (CliError, OSError, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
            return {**base_row(cell), "error": f"{type(exc).__name__}: {exc}"}, None, None
        finally:
            if not arrived:
                gate.withdraw()
        row = emulate_row(replace(cell, offset_s=cell.offset_s + join_s), report, trace, profile,
                          time.monotonic() - started, settings.video)
        row["key"] = cell.key
        if report.error is not None or settings.video is None:
            return row, None, report
        return row, replace(session_result(row), audio_records=tuple(report.audio_records)), report

    async with Shaper(link) as shaper:
        played = await asyncio.gather(*(play(c, j, log) for c, j, log in zip(cells, joins, logs)))
    from player.research.experiment import clock_accounting  # (experiment imports this module)

    accounting = clock_accounting(shaper.clock)  # the link's clock, which every player of it read
    rows, results = [{**p[0], "warp_clock": accounting} for p in played], [p[1] for p in played]
    # Each row's link-model column so far has its player alone on the link: give it all players' requests.
    reports = [((p[2].records, p[2].audio_records) if p[2] is not None else ((), ())) for p in played]
    dropped = [abandoned_downloads(log.events) for log in logs]
    for row, model_s in zip(rows, shared_model_download_s(trace, profile, first.offset_s, joins, reports,
                                                          abandoned=dropped)):
        if "timeline" in row:
            row["timeline"]["model_download_s"] = [round(float(v), 4) for v in model_s]
    if settings.video is None:
        return rows
    return _group_rows(cells, rows, results, settings.video, trace, profile)


def shared_link_tasks(todo: Sequence[Cell], traces: Mapping[str, Trace], video: Video, profile: SimProfile, *,
                      plugins: tuple[str, ...], sim_sessions_per_task: int, emulation: EmulationSettings | None,
                      endpoint: TitleTarget | None, sessions_per_worker: int) -> list[TaskSpec]:
    """(function, arguments) of the tasks that run `todo` (whole groups) a group at a time."""
    tasks: list[TaskSpec] = []
    sim_groups = [g for g in groups_of(todo) if g[0].mode == "sim"]
    for abr in dict.fromkeys(g[0].abr for g in sim_groups):
        mine = [g for g in sim_groups if g[0].abr == abr]
        size = max(1, sim_sessions_per_task // len(mine[0]))
        for i in range(0, len(mine), size):
            chunk = mine[i: i + size]
            tasks.append((simulate_group_task, (abr, video, [traces[g[0].trace] for g in chunk], chunk, profile,
                                                plugins)))
    emulated = [g for g in groups_of(todo) if g[0].mode == "emulate"]
    if emulated:
        assert endpoint is not None and emulation is not None
        size = max(1, sessions_per_worker // len(emulated[0]))  # at most M players per task, whole groups
        for i in range(0, len(emulated), size):
            chunk = emulated[i: i + size]
            tasks.append((emulate_group_task, (chunk, [traces[g[0].trace] for g in chunk], endpoint, emulation)))
    return tasks


FAIRNESS_COLUMNS = ("link_jain_bitrate", "link_qoe_mean", "link_qoe_spread", "link_instability_mean",
                    "link_utilisation")


def fairness_summary(rows: Sequence[Row]) -> dict[tuple[str, str], dict[str, float]]:
    """Per (mode, ABR): the mean over links of each group figure (links with a failed player left out),
    and `links`, how many links that is."""
    per_link: dict[tuple[str, str], dict[str, Row]] = {}
    for row in rows:
        if row.get("link_players") is None or row.get("error"):
            continue
        group = (row["mode"], row["abr"], row["trace"], row["key"].rsplit("#", 1)[0])
        per_link.setdefault((row["mode"], row["abr"]), {})[str(group)] = row
    summary = {}
    for key, links in per_link.items():
        figures = {c: sum(r[c] for r in links.values()) / len(links) for c in FAIRNESS_COLUMNS}
        summary[key] = {"links": float(len(links)), **figures}
    return summary


def format_fairness(summary: Mapping[tuple[str, str], Mapping[str, float]]) -> str:
    """The summary as a text table."""
    lines = [f"{'mode':8} {'abr':14} {'links':>5} {'jain':>6} {'qoe':>9} {'spread':>8} {'instab':>7} {'util':>6}"]
    for (mode, abr), f in sorted(summary.items()):
        lines.append(f"{mode:8} {abr:14} {int(f['links']):5d} {f['link_jain_bitrate']:6.3f} {f['link_qoe_mean']:9.2f} "
                     f"{f['link_qoe_spread']:8.2f} {f['link_instability_mean']:7.3f} {f['link_utilisation']:6.3f}")
    return "\n".join(lines)
