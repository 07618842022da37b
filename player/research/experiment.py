"""Experiments: ABR algorithms x traces, simulated and emulated, resumable, on a pool or a Dask cluster.

A cell is one session: (mode, abr, trace). Simulated cells run the simulator, many per task.
Emulated cells run the headless player unchanged, M per task at once in one asyncio loop (each
through its own shaper), against a stack this process serves. Tasks go through the
`concurrent.futures` interface: a local process pool, or a Dask client's executor, one code path.
Each finished cell is one flushed line of OUT/results.jsonl; a rerun skips the cells found there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import multiprocessing
import signal
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import numpy as np

from abr.plugins import load_plugins
from netsim.clock import WarpClock
from netsim.shaper import Shaper
from netsim.trace import Trace
from player.client.eventlog import EventLog
from player.client.harness import LinkConfig, TitleTarget, pipeline_factory, play_headless
from player.errors import CliError
from player.media.modes import DECODE_MODES
from player.research.experiment_cells import (  # noqa: F401 (re-exported: the rows' public home was here)
    Cell,
    EmulationSettings,
    Row,
    _lag_probe,
    _p99_ms,
    base_row,
    emulate_row,
    emulation_fetch,
    model_download_s,
    player_config,
    rescored,
    session_result,
    sim_row,
)
from player.research.experiment_shared import shared_link_tasks, whole_groups
from player.research.provenance import ProgressLines, video_digest
from player.research.sim import SimProfile, simulate
from player.research.sweep import trace_keys
from player.video import Video, load_packaged_video, load_video
from server.formats.names import is_valid_title

MODES = ("sim", "emulate")
RESULTS_NAME = "results.jsonl"
Notify = Callable[[str], None]


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- what is played ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class Content:
    """What the sessions play: the simulator's view, and the packaged title that emulation serves."""

    video: Video
    digest: str  # of ladder and segment sizes: part of every cell key
    title_dir: Path | None = None  # None: a Pensieve or Sabre video (simulation only)

    @property
    def name(self) -> str:
        return self.title_dir.name if self.title_dir is not None else self.video.name


def open_content(spec: str, *, cache_dir: Path, notify: Notify = _stderr) -> Content:
    """A packaged title directory (or its segments.json), a Pensieve/Sabre video, or `demo`."""
    if spec == "demo":
        from server.stack import ensure_demo_title

        content_root = cache_dir / "content"
        if not (content_root / "demo" / "segments.json").is_file():
            notify("packaging the demo title on first use (a few minutes; cached afterwards)")
        title_dir = ensure_demo_title(content_root)
    else:
        path = Path(spec)
        if not path.exists():
            raise CliError(f"{spec}: no such title or video (give a packaged title directory, a Pensieve "
                           "video_size folder, a Sabre JSON, or 'demo')")
        title_dir = path if (path / "segments.json").is_file() else path.parent if path.name == "segments.json" else None
    if title_dir is None:
        video = load_video(spec)
        for note in video.notes:
            notify(f"note: {note}")
        return Content(video=video, digest=video_digest(video))
    video = load_packaged_video(title_dir)
    return Content(video=video, digest=video_digest(video), title_dir=title_dir.resolve())


def check_emulatable(content: Content) -> Path:
    """The title directory emulation serves, or one clear error saying why there is none."""
    if content.title_dir is None:
        raise CliError(f"emulation needs a packaged title (abrkit package); {content.video.name!r} is a "
                       "Pensieve/Sabre video with sizes only: use --mode sim")
    if not (content.title_dir / "manifest.mpd").is_file():
        raise CliError(f"{content.title_dir}: no manifest.mpd, so it cannot be served for emulation")
    if not is_valid_title(content.title_dir.name):
        raise CliError(f"{content.title_dir}: the directory name is not a valid title name")
    return content.title_dir


# -- configuration and cells ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class ExperimentConfig:
    """One experiment. `seed` None: every session starts at its trace's beginning; else at a seeded
    random offset per trace, the same for every algorithm and mode (so sessions stay paired)."""

    abrs: tuple[str, ...]
    modes: tuple[str, ...]
    profile: SimProfile
    speed: float = 1.0  # emulation clock scale
    workers: int = 1  # local worker processes (ignored with `dask_address`)
    sessions_per_worker: int = 16  # emulated sessions at once per task (one asyncio loop)
    sim_sessions_per_task: int = 64
    dask_address: str | None = None
    seed: int | None = None
    decode: str = "none"
    stack_processes: bool = False  # serve the title with one process per service
    # Wall seconds between session starts within a task: each login costs the auth service a ~40 ms
    # scrypt check, and a crowd of them at once would slow the stack for the sessions already playing.
    start_spacing_s: float = 0.1
    plugins: tuple[str, ...] = ()  # files (absolute paths) or modules every worker imports first (--plugin)
    # Players behind each link (>1: `experiment_shared`), the later ones joining this many trace seconds apart.
    players_per_link: int = 1
    join_spacing_s: float = 0.0

    def __post_init__(self) -> None:
        if not self.abrs:
            raise ValueError("give at least one ABR algorithm")
        if len(set(self.abrs)) != len(self.abrs):
            raise ValueError(f"an ABR is listed twice: {','.join(self.abrs)}")
        if not self.modes or any(m not in MODES for m in self.modes):
            raise ValueError(f"modes must be among {', '.join(MODES)}, got {self.modes}")
        if not (math.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"speed must be > 0, got {self.speed}")
        if self.workers < 1 or self.sessions_per_worker < 1 or self.sim_sessions_per_task < 1:
            raise ValueError("workers, sessions per worker and sim sessions per task must be >= 1")
        if self.decode not in DECODE_MODES:
            raise ValueError(f"decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}")
        if self.start_spacing_s < 0:
            raise ValueError("start_spacing_s must be >= 0")
        if not isinstance(self.players_per_link, int) or self.players_per_link < 1:
            raise ValueError(f"players per link must be an integer >= 1, got {self.players_per_link!r}")
        if not (math.isfinite(self.join_spacing_s) and self.join_spacing_s >= 0):
            raise ValueError(f"join spacing must be >= 0 s, got {self.join_spacing_s!r}")


def trace_offsets_s(traces: Sequence[Trace], seed: int | None) -> list[float]:
    if seed is None:
        return [0.0] * len(traces)
    rng = np.random.default_rng(seed)
    return [round(float(rng.uniform(0.0, t.duration_s)), 3) for t in traces]


def plan_cells(config: ExperimentConfig, content: Content, traces: Sequence[Trace]) -> list[Cell]:
    """Every (mode, abr, trace) of the experiment, in a stable order."""
    keys = trace_keys([t.name for t in traces])
    offsets = trace_offsets_s(traces, config.seed)
    cells = []
    for mode in config.modes:
        emulate = mode == "emulate"
        variant = f"{config.profile.name},decode={config.decode}" if emulate else config.profile.name
        for abr in config.abrs:
            cells += [Cell(mode=mode, abr=abr, trace=key, offset_s=offset, speed=config.speed if emulate else None,
                           variant=variant, content=content.digest, player=player, players=config.players_per_link,
                           join_spacing_s=config.join_spacing_s)
                      for key, offset in zip(keys, offsets) for player in range(config.players_per_link)]
    return cells


# -- the results file -------------------------------------------------------------------------------


class ResultStore:
    """OUT/results.jsonl: one JSON object per finished cell, each line written whole and flushed."""

    def __init__(self, path: Path, *, notify: Notify = _stderr) -> None:
        self.path = path
        self._notify = notify
        self._file: Any = None
        self.appended = 0  # rows written by this store

    def load(self) -> dict[str, Row]:
        """Rows by cell key (a later row of a key wins). A damaged last line - an interrupted write -
        is dropped with a warning and cut from the file, so the next append starts a fresh line."""
        if not self.path.is_file():
            return {}
        data = self.path.read_bytes()
        rows: dict[str, Row] = {}
        lines = data.split(b"\n")
        last = max((i for i, line in enumerate(lines) if line.strip()), default=-1)
        start = 0
        for index, line in enumerate(lines):
            if line.strip():
                try:
                    row = json.loads(line)
                    rows[row["key"]] = row
                except (ValueError, KeyError, TypeError):
                    if index != last:
                        raise CliError(f"{self.path}:{index + 1}: not a result line; delete it and rerun") from None
                    self._notify(f"warning: {self.path}:{index + 1}: dropping a truncated last line "
                                 "(an interrupted run); its cell runs again")
                    with self.path.open("r+b") as fh:
                        fh.truncate(start)
                    return rows
            start += len(line) + 1
        if not data.endswith(b"\n") and last >= 0:
            with self.path.open("ab") as fh:  # a whole last row that lost only its newline
                fh.write(b"\n")
        return rows

    def append(self, rows: Sequence[Row]) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("a", encoding="utf-8")
        for row in rows:
            self._file.write(json.dumps(row, separators=(",", ":")) + "\n")
            self._file.flush()
            self.appended += 1

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# -- worker tasks (module-level so both process pools and Dask can ship them) -----------------------


def simulate_task(abr: str, video: Video, traces: list[Trace], cells: list[Cell], profile: SimProfile,
                  plugins: tuple[str, ...] = ()) -> list[Row]:
    load_plugins(plugins)  # a worker process registers the plugins' algorithms before it makes one
    results = simulate(abr, video, traces, profile, offsets_s=[c.offset_s for c in cells])
    return [sim_row(c, r) for c, r in zip(cells, results)]


def emulate_task(cells: list[Cell], traces: list[Trace], endpoint: TitleTarget,
                 settings: EmulationSettings) -> list[Row]:
    """Runs the cells' sessions concurrently in one event loop; one row per cell."""
    load_plugins(settings.plugins)
    return asyncio.run(_emulate_all(cells, traces, endpoint, settings))


async def _emulate_all(cells: list[Cell], traces: list[Trace], endpoint: TitleTarget,
                       settings: EmulationSettings) -> list[Row]:
    lags_s: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags_s))
    try:
        rows = await asyncio.gather(*(
            _emulate_one(cell, trace, endpoint, settings, delay_s=i * settings.start_spacing_s)
            for i, (cell, trace) in enumerate(zip(cells, traces))))
    finally:
        probe.cancel()
    # How late this loop woke (p99): the players and shapers in it are at least this late.
    lag_ms = _p99_ms(lags_s) or 0.0
    for row in rows:
        row["loop_lag_p99_ms"] = lag_ms
    return list(rows)


async def _emulate_one(cell: Cell, trace: Trace, endpoint: TitleTarget, settings: EmulationSettings, *,
                       delay_s: float) -> Row:
    await asyncio.sleep(delay_s)
    profile = settings.profile
    config = player_config(cell, settings)
    # Bootstrap (token, playback, MPD, license) unshaped, as the simulator has no bootstrap; session
    # time starts at the first media request, the pre-roll apart in the row's `preroll_s`.
    link = LinkConfig(trace=trace, rtt_ms=profile.rtt_s * 1000, offset_s=cell.offset_s, shape_bootstrap=False,
                      exclude_server_time=True, exclude_loop_stalls=True, exclude_client_time=True)
    started = time.monotonic()
    shapers: list[Shaper] = []
    try:
        report = await play_headless(endpoint, config, link=link, fetch=emulation_fetch(profile), events=EventLog(keep=False),
                                     decoder_factory=pipeline_factory(settings.decode), on_link=shapers.append)
    except (CliError, OSError, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        # One session failing must not end the others: its row records why, and a rerun retries it.
        return {**base_row(cell), "error": f"{type(exc).__name__}: {exc}"}
    row = emulate_row(cell, report, trace, profile, time.monotonic() - started, settings.video)
    if shapers:
        row["warp_clock"] = clock_accounting(shapers[0].clock)
    return row


def clock_accounting(clock: WarpClock) -> dict[str, float | int]:
    """What the session's warp clock left out, in loop seconds: held (the stack, connecting, the player
    acting), stalled (the loop late, timers late included); and how often (docs/EXPERIMENTS.md, "Time-warp")."""
    return {"held_s": round(clock.held_s, 4), "stalled_s": round(clock.stalled_s, 4),
            "late_timers_s": round(clock.late_s, 4), "holds": clock.holds_total, "client_holds": clock.client_holds,
            "client_timeouts": clock.client_timeouts, "timers": clock.timers_run}


# -- execution --------------------------------------------------------------------------------------


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; the parent alone handles it (and stops the workers).
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Cancel queued tasks and end the running ones now (Python 3.14 has `terminate_workers`)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()


class ExecutorChoice(Protocol):
    """Where tasks run: `workers` local processes, or the Dask scheduler at `dask_address` when set."""

    @property
    def workers(self) -> int: ...

    @property
    def dask_address(self) -> str | None: ...


@contextlib.contextmanager
def open_executor(config: ExecutorChoice) -> Iterator[Executor]:
    """A local process pool, or the `concurrent.futures` executor of a Dask client."""
    if config.dask_address is None:
        pool = ProcessPoolExecutor(max_workers=config.workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_ignore_sigint)
        try:
            yield pool
        except BaseException:
            _stop_workers(pool)
            raise
        pool.shutdown(wait=True)
        return
    try:
        from distributed import Client
    except ImportError:
        raise CliError("--dask needs dask.distributed: pip install 'abrkit[dist]'") from None
    try:
        client = Client(config.dask_address, timeout="10s")
    except (OSError, TimeoutError) as exc:
        raise CliError(f"cannot reach the Dask scheduler at {config.dask_address}: {exc}") from None
    try:
        executor = client.get_executor(pure=False)  # pure=False: equal arguments still run again
        try:
            yield executor
        except BaseException:
            executor.shutdown(wait=False)
            raise
        executor.shutdown(wait=True)
    finally:
        client.close()


@contextlib.asynccontextmanager
async def serve_title(title_dir: Path, *, processes: bool = False) -> AsyncIterator[TitleTarget]:
    """An embedded stack on free ports serving the title's content root, with a throwaway demo account."""
    from server.config import BackendPolicy, RateLimitPolicy, StackConfig
    from server.stack import start_stack_with_demo_user

    with tempfile.TemporaryDirectory(prefix="abrkit-run-") as state:
        config = StackConfig(
            config_path=Path(state) / "stack.json", content_root=title_dir.parent, port=0, access_log=False,
            processes=processes,
            # Every emulated viewer is the one demo account on one address: the per-client rate limits,
            # in-flight cap and the bulkhead would refuse a crowd of them starting together, and logins queued behind
            # each other's password checks would trip the gateway's timeout and circuit breaker.
            rate_limit=RateLimitPolicy(rate_per_s=1e6, burst=1_000_000),
            login_rate_limit=RateLimitPolicy(rate_per_s=1e6, burst=1_000_000), max_concurrent_per_client=100_000,
            backend_policy=BackendPolicy(timeout_s=60.0, failure_threshold=1_000_000, max_concurrent=100_000),
        )
        async with start_stack_with_demo_user(config) as (stack, credentials):
            yield TitleTarget(gateway_url=stack.gateway_url, title=title_dir.name, username=credentials.username,
                              password=credentials.password)


def check_abrs(config: ExperimentConfig) -> None:
    """Every algorithm can be made with the profile's parameters (an unknown name lists the known ones)."""
    load_plugins(config.plugins)
    for abr in config.abrs:
        config.profile.make_abr(abr)


@dataclass(frozen=True, kw_only=True, slots=True)
class _Task:
    fn: Callable[..., list[Row]]
    args: tuple[Any, ...]


def _tasks(config: ExperimentConfig, content: Content, traces: Mapping[str, Trace], todo: Sequence[Cell],
           endpoint: TitleTarget | None) -> list[_Task]:
    settings = EmulationSettings(profile=config.profile, decode=config.decode, start_spacing_s=config.start_spacing_s,
                                 plugins=config.plugins, video=content.video)
    if config.players_per_link > 1:
        return [_Task(fn=fn, args=args) for fn, args in shared_link_tasks(
            todo, traces, content.video, config.profile, plugins=config.plugins,
            sim_sessions_per_task=config.sim_sessions_per_task, emulation=settings, endpoint=endpoint,
            sessions_per_worker=config.sessions_per_worker)]
    tasks = []
    for abr in config.abrs:
        cells = [c for c in todo if c.mode == "sim" and c.abr == abr]
        size = config.sim_sessions_per_task
        for i in range(0, len(cells), size):
            chunk = cells[i: i + size]
            tasks.append(_Task(fn=simulate_task, args=(abr, content.video, [traces[c.trace] for c in chunk], chunk,
                                                       config.profile, config.plugins)))
    emulated = [c for c in todo if c.mode == "emulate"]
    if emulated:
        assert endpoint is not None
        # Spread the cells over the workers, at most M per task.
        size = min(config.sessions_per_worker, max(1, math.ceil(len(emulated) / config.workers)))
        for i in range(0, len(emulated), size):
            chunk = list(emulated[i: i + size])
            tasks.append(_Task(fn=emulate_task,
                               args=(chunk, [traces[c.trace] for c in chunk], endpoint, settings)))
    return tasks


@dataclass(frozen=True, kw_only=True, slots=True)
class RunSummary:
    """What a run did, and the experiment's rows (the latest per cell, in plan order)."""

    planned: int
    skipped: int
    ran: int
    failed: int  # rows with an error (retried on the next run)
    rows: tuple[Row, ...]
    wall_s: float
    loop_lag_p99_ms: float | None = None  # this process's event loop (the stack's, when emulating)


def run_experiment(config: ExperimentConfig, content: Content, traces: Sequence[Trace], out_dir: Path, *,
                   progress: bool = True, notify: Notify = _stderr) -> RunSummary:
    """Runs the cells not yet in OUT/results.jsonl and returns every row of the plan."""
    check_abrs(config)
    if "emulate" in config.modes:
        check_emulatable(content)
    if not traces:
        raise CliError("no traces given")
    if out_dir.exists() and not out_dir.is_dir():
        raise CliError(f"{out_dir}: exists and is not a directory")
    cells = plan_cells(config, content, traces)
    by_key = dict(zip(trace_keys([t.name for t in traces]), traces))
    store = ResultStore(out_dir / RESULTS_NAME, notify=notify)
    done = store.load()
    todo = [c for c in cells if c.key not in done or done[c.key].get("error")]
    if config.players_per_link > 1:
        todo = whole_groups(cells, todo)  # the players of one link run together
    skipped = len(cells) - len(todo)
    if skipped:
        notify(f"skipping {skipped} of {len(cells)} cells already in {store.path}")
    started = time.monotonic()
    failed, lag_ms = 0, None
    if todo:
        try:
            with ProgressLines(len(todo), unit="session", desc="running", enabled=progress) as bar:
                failed, lag_ms = asyncio.run(_execute(config, content, by_key, todo, store, bar.update))
        except KeyboardInterrupt:
            notify(f"interrupted: {store.appended} finished cells are saved in {store.path}; "
                   "the same command runs the rest")
            raise
        finally:
            store.close()
    rows = store.load()
    plan_rows = tuple(rows[c.key] for c in cells if c.key in rows)
    return RunSummary(planned=len(cells), skipped=skipped, ran=len(todo), failed=failed, rows=plan_rows,
                      wall_s=time.monotonic() - started, loop_lag_p99_ms=lag_ms)


async def _execute(config: ExperimentConfig, content: Content, traces: Mapping[str, Trace], todo: Sequence[Cell],
                   store: ResultStore, tick: Callable[[int], object]) -> tuple[int, float | None]:
    """Runs the cells; (failed sessions, p99 lateness of this process's loop in ms)."""
    failed = 0
    lags_s: list[float] = []
    probe = asyncio.create_task(_lag_probe(lags_s))
    try:
        with open_executor(config) as executor:
            async with contextlib.AsyncExitStack() as stack:
                endpoint = None
                if any(c.mode == "emulate" for c in todo):
                    assert content.title_dir is not None
                    endpoint = await stack.enter_async_context(serve_title(content.title_dir,
                                                                           processes=config.stack_processes))
                futures: list[Future[list[Row]]] = [executor.submit(t.fn, *t.args)
                                                    for t in _tasks(config, content, traces, todo, endpoint)]
                waiting = [asyncio.wrap_future(f) for f in futures]
                try:
                    for finished in asyncio.as_completed(waiting):
                        rows = await finished
                        store.append(rows)
                        failed += sum(1 for r in rows if r.get("error"))
                        tick(len(rows))
                finally:
                    for future in waiting:  # on an error: cancel the rest, and mark failures as seen
                        if future.done() and not future.cancelled():
                            future.exception()
                        else:
                            future.cancel()
    finally:
        probe.cancel()
    return failed, _p99_ms(lags_s)
