"""The plain-data ABR interface: what an algorithm sees (`Observation`) and what it says (`Decision`).

Algorithms are pure and synchronous: no I/O, no clocks, no globals. The same observation sequence
must give the same decisions, so the simulator, the headless player and the desktop player can all
drive the same object and be compared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import MISSING, dataclass, field, fields
from typing import Protocol, TypeVar, runtime_checkable

import numpy as np


@dataclass(frozen=True, kw_only=True, slots=True)
class Ladder:
    """The renditions an algorithm may choose from, ascending by bitrate; `quality` indexes it."""

    bitrates_bps: tuple[int, ...]
    segment_duration_s: float

    def __post_init__(self) -> None:
        if not self.bitrates_bps:
            raise ValueError("ladder has no bitrates")
        if any(b <= 0 for b in self.bitrates_bps):
            raise ValueError(f"ladder bitrates must be positive, got {self.bitrates_bps}")
        if any(b2 <= b1 for b1, b2 in zip(self.bitrates_bps, self.bitrates_bps[1:])):
            raise ValueError(f"ladder bitrates must be strictly ascending, got {self.bitrates_bps}")
        if not self.segment_duration_s > 0:
            raise ValueError(f"segment duration must be > 0 s, got {self.segment_duration_s}")

    def __len__(self) -> int:
        return len(self.bitrates_bps)

    @property
    def top(self) -> int:
        """The highest quality index."""
        return len(self.bitrates_bps) - 1

    def highest_at_most(self, rate_bps: float) -> int:
        """The highest quality whose bitrate is <= `rate_bps` (quality 0 if none is)."""
        best = 0
        for quality, bitrate_bps in enumerate(self.bitrates_bps):
            if bitrate_bps <= rate_bps:
                best = quality
        return best


@dataclass(frozen=True, kw_only=True, slots=True)
class Download:
    """One finished segment download as the player measured it."""

    segment_index: int
    quality: int
    size_bytes: int
    duration_s: float  # request sent -> last byte received (includes ttfb_s)
    ttfb_s: float = 0.0  # request sent -> first byte received
    start_time_s: float = 0.0
    abandoned: bool = False
    # Seconds the network was delivering this download's bytes, where the driver knows them to differ
    # from the transfer time: a low-latency segment arrives chunk by chunk as the encoder makes them,
    # and the idle gaps between chunks are not network time (`abr.estimators.sample_bps`, `chunk_active_s`).
    # None: the transfer was continuous.
    active_s: float | None = None

    @property
    def throughput_bps(self) -> float:
        """Bytes over the whole request time, as most ABR papers measure a sample."""
        return self.size_bytes * 8.0 / self.duration_s if self.duration_s > 0 else float("inf")


@dataclass(frozen=True, kw_only=True, slots=True)
class Observation:
    """Everything an algorithm may base a decision on, at the moment the next segment is chosen."""

    time_s: float  # session time (0 = session start)
    buffer_s: float  # media buffered ahead of the playhead
    segment_index: int  # the segment about to be fetched (0-based)
    segment_count: int
    ladder: Ladder
    last_quality: int | None  # quality of the previous segment, None before the first
    downloads: tuple[Download, ...] = ()  # recent downloads, oldest first
    # sizes of upcoming segments: next_sizes_bytes[k][q] is segment (segment_index + k) at quality q
    next_sizes_bytes: tuple[tuple[int, ...], ...] = ()
    rebuffering: bool = False
    buffer_cap_s: float = 60.0
    # objective quality of the same upcoming segments (next_quality[k][q]; dB or VMAF, whatever the
    # content measured), empty when the content has none: what a quality-aware QoE optimises
    next_quality: tuple[tuple[float, ...], ...] = ()
    # Live playback only (`player.live`): the latency to the live edge (s) and the playback rate the
    # catch-up control runs at. None and 1.0 for video on demand.
    latency_s: float | None = None
    playback_rate: float = 1.0

    @property
    def segments_left(self) -> int:
        return self.segment_count - self.segment_index


@dataclass(frozen=True, kw_only=True, slots=True)
class Decision:
    """The quality for the next segment; optionally wait `delay_s` before fetching it."""

    quality: int
    delay_s: float = 0.0
    reason: str = ""


@dataclass(frozen=True, kw_only=True, slots=True)
class Progress:
    """A download in flight, offered to algorithms that can abandon it."""

    time_s: float
    buffer_s: float
    segment_index: int
    quality: int
    bytes_received: int
    size_bytes: int  # expected total, 0 when unknown
    elapsed_s: float
    ladder: Ladder
    next_sizes_bytes: tuple[tuple[int, ...], ...] = ()
    ttfb_s: float | None = None  # request sent -> first byte, once known (None: the driver does not say)


@runtime_checkable
class AbrAlgorithm(Protocol):
    """What every algorithm provides. State, if any, comes only from the observations given."""

    name: str

    def decide(self, obs: Observation) -> Decision:
        """Choose the quality of segment `obs.segment_index`."""
        ...


class UnsupportedLadder(ValueError):
    """An algorithm cannot decide on this ladder (a learned model trained for another ladder, say)."""


@runtime_checkable
class LadderBound(Protocol):
    """Optional: an algorithm that decides only on some ladders says so before a session starts."""

    def check_ladder(self, ladder: Ladder) -> None:
        """Raise `UnsupportedLadder`, naming what it supports, if `ladder` is not one of them."""
        ...


def check_ladder(algorithm: object, ladder: Ladder) -> None:
    """`algorithm.check_ladder(ladder)` where the algorithm declares one (sessions call it at start)."""
    # What isinstance(algorithm, LadderBound) decides, without a runtime protocol check's ~14 us:
    # the simulator starts thousands of sessions a second.
    check = getattr(algorithm, "check_ladder", None)
    if check is not None:
        check(ladder)


def supports_ladder(algorithm: object, ladder: Ladder) -> bool:
    try:
        check_ladder(algorithm, ladder)
    except UnsupportedLadder:
        return False
    return True


@runtime_checkable
class Abandoning(Protocol):
    """Optional: an algorithm that may abandon a slow download (returns a lower quality or None)."""

    def should_abandon(self, progress: Progress) -> Decision | None: ...


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class BatchObservation:
    """Observations of B sessions advancing in lock-step (all choosing segment `segment_index`).

    Used only by the vectorised simulator; an algorithm's `decide_batch` must choose exactly what
    its `decide` would for each session's scalar `Observation` (the conformance check verifies it).
    """

    time_s: np.ndarray  # (B,)
    buffer_s: np.ndarray  # (B,)
    segment_index: int
    segment_count: int
    ladder: Ladder
    last_quality: np.ndarray  # (B,) int; -1 before the first segment
    # The last H downloads, oldest first (H = min(downloads so far, history length)); same H for all.
    download_bytes: np.ndarray  # (B, H)
    download_s: np.ndarray  # (B, H) whole request time, ttfb included
    next_sizes_bytes: np.ndarray  # (K, Q): the same upcoming sizes for every session (one video)
    buffer_cap_s: float = 60.0
    next_quality: np.ndarray | None = None  # (K, Q) quality scores of the same segments, if known

    @property
    def batch_size(self) -> int:
        return int(self.buffer_s.shape[0])


@runtime_checkable
class BatchAbr(Protocol):
    """Optional: a vectorised twin of `decide` for B sessions at once (returns (B,) qualities).

    One instance serves one batch for its whole run (its state arrays are per session).
    """

    def decide_batch(self, obs: BatchObservation) -> np.ndarray: ...


_Record = TypeVar("_Record")


def positional_maker(cls: type[_Record], *names: str) -> Callable[..., _Record]:
    """A constructor of the frozen slots dataclass `cls` for hot loops: the fields `names`
    positionally, in that order; every other field takes its default. No `__post_init__`: give it
    values already valid.

    The object is the one `cls(**fields)` makes (equal, hashable, frozen, same repr); only the
    frozen `__init__`'s keyword parsing and its `object.__setattr__` per field are skipped, which
    halves the cost of building one (the simulator builds several records per segment). Naming the
    fields at the call site keeps a maker right if the class's fields are reordered, and a field
    added without a default fails here, at import, not in a session.
    """
    if getattr(cls, "__slots__", None) is None or not hasattr(cls, "__dataclass_fields__"):
        raise TypeError(f"{cls.__name__} is not a slots dataclass")
    declared = {f.name: f for f in fields(cls)}  # type: ignore[arg-type]
    unknown = [name for name in names if name not in declared]
    if unknown or len(set(names)) != len(names):
        raise TypeError(f"{cls.__name__} has no field(s) {', '.join(unknown)} or a field is named twice")
    namespace: dict[str, object] = {"_new": object.__new__, "_cls": cls}
    body = []
    for name, spec in declared.items():
        namespace[f"_set_{name}"] = getattr(cls, name).__set__  # the slot's own descriptor
        if name in names:
            value = name
        elif spec.default is not MISSING:
            namespace[f"_default_{name}"] = spec.default
            value = f"_default_{name}"
        elif spec.default_factory is not MISSING:
            namespace[f"_factory_{name}"] = spec.default_factory
            value = f"_factory_{name}()"
        else:
            raise TypeError(f"{cls.__name__}.{name} has no default: name it")
        body.append(f"    _set_{name}(obj, {value})\n")
    # Generated as dataclasses generate __init__: one statement per field, no loop.
    bound = ", ".join(f"{key}={key}" for key in namespace)
    source = f"def make({''.join(n + ', ' for n in names)}*, {bound}):\n    obj = _new(_cls)\n{''.join(body)}    return obj\n"
    exec(source, namespace)  # noqa: S102 - the source holds only the dataclass's own field names
    make = namespace["make"]
    make.__name__ = make.__qualname__ = f"make_{cls.__name__}"  # type: ignore[attr-defined]
    make.__doc__ = f"{cls.__name__}({', '.join(names)}) positionally, unvalidated (`positional_maker`)."
    return make  # type: ignore[return-value]


@dataclass(frozen=True, kw_only=True, slots=True)
class AbrSpec:
    """A registry entry: a name, a factory and a one-line description."""

    name: str
    description: str
    factory: object = field(repr=False)  # Callable[..., AbrAlgorithm]; typed loosely to stay picklable
