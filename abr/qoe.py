"""QoE models and per-session quality metrics.

The three models of Pensieve (Mao et al., SIGCOMM 2017, section 5.1), which most later work reuses:
    QoE = sum_n q(R_n) - mu * T_n - sum_n |q(R_n) - q(R_{n-1})|
with q(R) = R in Mbit/s and mu = 4.3 (lin), q(R) = log(R / R_min) and mu = 2.66 (log), and
q from the HD table {300:1, 750:2, 1200:3, 1850:12, 2850:15, 4300:20} kbit/s with mu = 8 (hd).
Pensieve's mu for lin and log is the utility of its ladder's top rung (4.3 Mbit/s, ln(4300/300)): a
stalled second costs what one segment at the top rung earns. `QoeConfig` keeps that convention on
other ladders unless a profile fixes mu. Quality-aware QoE puts a per-segment quality score
(PSNR or SSIM in dB, VMAF) in place of q(R), as Comyco (Huang et al., MM 2019: VMAF) and Puffer's
Fugu (Yan et al., NSDI 2020: SSIM dB, 1 per dB of change, 100 per stalled second) do.
Segment 0 is not counted: its download time is the startup delay, charged by `startup_penalty`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

Utility = Callable[[np.ndarray, np.ndarray], np.ndarray]  # (bitrates_bps, ladder_bps) -> utility


def _utility_lin(bitrates_bps: np.ndarray, ladder_bps: np.ndarray) -> np.ndarray:
    return bitrates_bps / 1e6


def _utility_log(bitrates_bps: np.ndarray, ladder_bps: np.ndarray) -> np.ndarray:
    return np.log(bitrates_bps / ladder_bps[0])


_HD_TABLE_KBPS = np.array([300, 750, 1200, 1850, 2850, 4300], dtype=np.float64)
_HD_TABLE_UTILITY = np.array([1, 2, 3, 12, 15, 20], dtype=np.float64)


def _utility_hd(bitrates_bps: np.ndarray, ladder_bps: np.ndarray) -> np.ndarray:
    # Pensieve defines the HD reward on its own ladder; other ladders interpolate it by bitrate
    # (and extrapolate with the slope of the last step above 4.3 Mbit/s).
    kbps = bitrates_bps / 1e3
    values = np.interp(kbps, _HD_TABLE_KBPS, _HD_TABLE_UTILITY)
    slope = (_HD_TABLE_UTILITY[-1] - _HD_TABLE_UTILITY[-2]) / (_HD_TABLE_KBPS[-1] - _HD_TABLE_KBPS[-2])
    above = kbps > _HD_TABLE_KBPS[-1]
    values[above] = _HD_TABLE_UTILITY[-1] + slope * (kbps[above] - _HD_TABLE_KBPS[-1])
    return values


def _utility_score(scores: np.ndarray, ladder_bps: np.ndarray) -> np.ndarray:
    return scores  # quality-aware: the segment's own score is its utility


BITRATE_UTILITIES: dict[str, Utility] = {"lin": _utility_lin, "log": _utility_log, "hd": _utility_hd}
UTILITY_KINDS = (*BITRATE_UTILITIES, "quality")


@dataclass(frozen=True, kw_only=True, slots=True)
class QoeModel:
    """A linear QoE model: utility minus rebuffer, switching and startup penalties, summed over segments.

    With `quality_metric`, the utility of a segment is its quality score in that metric, and the
    scoring methods need the per-segment scores (`quality`, same shape as the bitrates)."""

    name: str
    utility: Utility = field(repr=False)
    rebuffer_penalty: float  # per second of stall
    switch_penalty: float = 1.0  # per unit of |utility change|
    first_counted_segment: int = 1  # Pensieve skips segment 0 (startup)
    startup_penalty: float = 0.0  # per second of startup delay
    quality_metric: str | None = None

    def segment_utility(self, bitrates_bps: Sequence[float] | np.ndarray, ladder_bps: Sequence[float] | np.ndarray,
                        quality: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """Utility of each segment: of its bitrate, or its quality score for a quality-aware model."""
        ladder = np.asarray(ladder_bps, dtype=np.float64)
        if self.quality_metric is None:
            return self.utility(np.asarray(bitrates_bps, dtype=np.float64), ladder)
        if quality is None:
            raise ValueError(f"QoE model {self.name!r} needs per-segment {self.quality_metric} scores, "
                             "and the video has none")
        return self.utility(np.asarray(quality, dtype=np.float64), ladder)

    def segment_values(self, bitrates_bps: Sequence[float] | np.ndarray, rebuffer_s: Sequence[float] | np.ndarray,
                       ladder_bps: Sequence[float] | np.ndarray,
                       quality: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
        """Per-segment QoE contributions (segment 0 compares with itself, so no switch term).

        Works along axis 0, so (segments, sessions) arrays score many sessions at once.
        """
        utility = self.segment_utility(bitrates_bps, ladder_bps, quality)
        previous = np.concatenate((utility[:1], utility[:-1]), axis=0)
        return utility - self.rebuffer_penalty * np.asarray(rebuffer_s, dtype=np.float64) \
            - self.switch_penalty * np.abs(utility - previous)

    def score(self, bitrates_bps: Sequence[float] | np.ndarray, rebuffer_s: Sequence[float] | np.ndarray,
              ladder_bps: Sequence[float] | np.ndarray, quality: Sequence[float] | np.ndarray | None = None,
              startup_s: float = 0.0) -> float:
        """Session QoE: the sum of segment values from `first_counted_segment` on, less the startup penalty."""
        return float(self.scores(bitrates_bps, rebuffer_s, ladder_bps, quality, startup_s))

    def scores(self, bitrates_bps: Sequence[float] | np.ndarray, rebuffer_s: Sequence[float] | np.ndarray,
               ladder_bps: Sequence[float] | np.ndarray, quality: Sequence[float] | np.ndarray | None = None,
               startup_s: float | np.ndarray = 0.0) -> np.ndarray:
        """`score` of each column of (segments, sessions) arrays."""
        values = self.segment_values(bitrates_bps, rebuffer_s, ladder_bps, quality)[self.first_counted_segment:]
        total = values.sum(axis=0)
        if self.startup_penalty:
            total = total - self.startup_penalty * np.asarray(startup_s, dtype=np.float64)
        return total


QOE_MODELS: dict[str, QoeModel] = {  # Pensieve's, with its fixed stall penalties
    "lin": QoeModel(name="lin", utility=_utility_lin, rebuffer_penalty=4.3),
    "log": QoeModel(name="log", utility=_utility_log, rebuffer_penalty=2.66),
    "hd": QoeModel(name="hd", utility=_utility_hd, rebuffer_penalty=8.0),
}


def qoe_model(name: str) -> QoeModel:
    try:
        return QOE_MODELS[name]
    except KeyError:
        raise ValueError(f"unknown QoE model {name!r}; choose from {', '.join(QOE_MODELS)}") from None


# -- QoE you configure -------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class QoeConfig:
    """A QoE to report and to optimise, before it meets a video: a utility and its weights.

    `utility` is lin, log or hd (of the bitrate) or quality (the segment's score in the video's
    metric, or in `quality_metric` when it is named). `rebuffer` None takes the utility of the top
    rung (mean score of the top rendition for quality), Pensieve's convention, unless the simulation
    profile fixes it (the `pensieve` profile keeps 4.3 and 2.66).
    """

    name: str = "lin"
    utility: str = "lin"
    rebuffer: float | None = None  # per second of stall
    switch: float = 1.0  # per unit of utility change
    startup: float = 0.0  # per second of startup delay
    quality_metric: str | None = None  # e.g. psnr_db, ssim_db, vmaf

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"QoE name must be letters, digits, - or _, got {self.name!r}")
        if self.utility not in UTILITY_KINDS:
            raise ValueError(f"QoE utility must be one of {', '.join(UTILITY_KINDS)}, got {self.utility!r}")
        for label, value in (("rebuffer", self.rebuffer), ("switch", self.switch), ("startup", self.startup)):
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"QoE weight {label} must be finite and >= 0, got {value!r}")
        if self.quality_metric is not None and self.utility != "quality":
            raise ValueError("quality_metric goes with utility 'quality'")

    def with_weights(self, weights: Mapping[str, float], *, name: str | None = None) -> QoeConfig:
        """This QoE with some of `rebuffer`, `switch`, `startup` changed (a new name unless given)."""
        unknown = sorted(set(weights) - {"rebuffer", "switch", "startup"})
        if unknown:
            raise ValueError(f"unknown QoE weight(s) {', '.join(unknown)}; choose from rebuffer, switch, startup")
        return replace(self, name=name or "custom", **weights)  # type: ignore[arg-type]

    def model(self, ladder_bps: Sequence[float] | np.ndarray, *, quality_metric: str | None = None,
              top_quality: float | None = None, fixed_rebuffer: float | None = None) -> QoeModel:
        """The QoE model on a video: its ladder, and its quality metric and top rendition's mean score."""
        ladder = np.asarray(ladder_bps, dtype=np.float64)
        metric = None
        if self.utility == "quality":
            if quality_metric is None:
                raise ValueError(f"QoE {self.name!r} is quality-aware, and the video carries no per-segment quality "
                                 "(package it with abrkit package, which measures it)")
            if self.quality_metric is not None and self.quality_metric != quality_metric:
                raise ValueError(f"QoE {self.name!r} needs {self.quality_metric} scores; the video has {quality_metric}")
            metric = quality_metric
        rebuffer = self.rebuffer if self.rebuffer is not None else fixed_rebuffer
        if rebuffer is None:
            if metric is not None:
                if top_quality is None:
                    raise ValueError(f"QoE {self.name!r}: the top rendition's mean quality is needed for its stall penalty")
                rebuffer = float(top_quality)
            else:
                rebuffer = float(BITRATE_UTILITIES[self.utility](ladder[-1:], ladder)[0])
        utility = _utility_score if metric is not None else BITRATE_UTILITIES[self.utility]
        return QoeModel(name=self.name, utility=utility, rebuffer_penalty=rebuffer, switch_penalty=self.switch,
                        startup_penalty=self.startup, quality_metric=metric)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "utility": self.utility, "rebuffer": self.rebuffer, "switch": self.switch,
                "startup": self.startup, "quality_metric": self.quality_metric}


QOE_CONFIGS: dict[str, QoeConfig] = {
    "lin": QoeConfig(name="lin", utility="lin"),
    "log": QoeConfig(name="log", utility="log"),
    "hd": QoeConfig(name="hd", utility="hd", rebuffer=8.0),  # Pensieve's mu for hd is not its top utility (20)
    "quality": QoeConfig(name="quality", utility="quality"),
    # Puffer's Fugu objective (StanfordSNR/puffer src/abr/puffer.hh: SSIM_DIFF_COEFF 1, REBUFFER_LENGTH_COEFF 100).
    "ssim": QoeConfig(name="ssim", utility="quality", quality_metric="ssim_db", switch=1.0, rebuffer=100.0),
}
PENSIEVE_REBUFFER_PENALTIES: dict[str, float] = {"lin": 4.3, "log": 2.66}


def qoe_config(name: str) -> QoeConfig:
    try:
        return QOE_CONFIGS[name]
    except KeyError:
        raise ValueError(f"unknown QoE {name!r}; choose from {', '.join(QOE_CONFIGS)}") from None


def parse_qoe_weights(text: str) -> dict[str, float]:
    """`rebuffer=4.3,switch=1,startup=2` as a dict (what `--qoe-weights` takes)."""
    weights: dict[str, float] = {}
    for item in filter(None, (i.strip() for i in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"QoE weight {item!r} is not key=value (e.g. rebuffer=4.3,switch=1)")
        try:
            weights[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"QoE weight {key.strip()!r} must be a number, got {value!r}") from None
    if not weights:
        raise ValueError("no QoE weights given (e.g. rebuffer=4.3,switch=1)")
    return weights


def qoe_config_from_mapping(data: object, source: str) -> QoeConfig:
    """A `QoeConfig` from a JSON object (`--qoe-config FILE`); errors name `source` and the field."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: a QoE config must be a JSON object")
    known = set(QoeConfig.__dataclass_fields__) | {"base"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown field(s) {', '.join(unknown)}; choose from {', '.join(sorted(known))}")
    base = qoe_config(str(data.get("base", data.get("utility", "lin")))) if "base" in data else QoeConfig()
    fields = {k: v for k, v in data.items() if k != "base"}
    for key in ("rebuffer", "switch", "startup"):
        if key in fields and fields[key] is not None and (isinstance(fields[key], bool)
                                                           or not isinstance(fields[key], (int, float))):
            raise ValueError(f"{source}: {key!r} must be a number, got {fields[key]!r}")
    for key in ("name", "utility", "quality_metric"):
        if key in fields and fields[key] is not None and not isinstance(fields[key], str):
            raise ValueError(f"{source}: {key!r} must be a string, got {fields[key]!r}")
    try:
        return replace(base, **{"name": fields.get("name", "custom"), **fields})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{source}: {exc}") from None


@dataclass(frozen=True, kw_only=True, slots=True)
class SessionMetrics:
    """What a viewer experienced in one session."""

    segments: int
    startup_s: float
    rebuffer_s: float  # stall time after startup
    rebuffer_count: int
    rebuffer_ratio: float  # stall time / (stall time + media played)
    avg_bitrate_bps: float
    switches: int
    avg_switch_bps: float  # mean |bitrate change| over all switches (0 without switches)
    qoe: dict[str, float]  # by model name; the per-segment mean is qoe / counted segments
    sabre: SabreMetrics | None = None  # Sabre's report, where the simulation profile asks for it

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "segments": self.segments, "startup_s": self.startup_s, "rebuffer_s": self.rebuffer_s,
            "rebuffer_count": self.rebuffer_count, "rebuffer_ratio": self.rebuffer_ratio,
            "avg_bitrate_bps": self.avg_bitrate_bps, "switches": self.switches, "avg_switch_bps": self.avg_switch_bps,
        }
        out.update({f"qoe_{name}": value for name, value in self.qoe.items()})
        if self.sabre is not None:
            out.update(self.sabre.as_dict())
        return out


def session_metrics(*, bitrates_bps: Sequence[float] | np.ndarray, rebuffer_s: Sequence[float] | np.ndarray,
                    ladder_bps: Sequence[float] | np.ndarray, segment_duration_s: float, startup_s: float,
                    rebuffer_count: int | None = None, models: Sequence[QoeModel] = tuple(QOE_MODELS.values()),
                    quality: Sequence[float] | np.ndarray | None = None) -> SessionMetrics:
    """Metrics of one session from its per-segment bitrates and stall times."""
    rates = np.asarray(bitrates_bps, dtype=np.float64)
    stalls = np.asarray(rebuffer_s, dtype=np.float64)
    if rates.shape != stalls.shape or rates.ndim != 1:
        raise ValueError("one rebuffer time per segment is needed")
    counts = None if rebuffer_count is None else np.array([rebuffer_count])
    scores = None if quality is None else np.asarray(quality, dtype=np.float64)[:, None]
    return session_metrics_batch(bitrates_bps=rates[:, None], rebuffer_s=stalls[:, None], ladder_bps=ladder_bps,
                                 segment_duration_s=segment_duration_s, startup_s=np.array([startup_s]),
                                 rebuffer_count=counts, models=models, quality=scores)[0]


def session_metrics_batch(*, bitrates_bps: np.ndarray, rebuffer_s: np.ndarray, ladder_bps: Sequence[float] | np.ndarray,
                          segment_duration_s: float, startup_s: np.ndarray, rebuffer_count: np.ndarray | None = None,
                          models: Sequence[QoeModel] = tuple(QOE_MODELS.values()),
                          sabre_gamma_p: float | None = None, quality: np.ndarray | None = None) -> list[SessionMetrics]:
    """Metrics of many sessions at once from (segments, sessions) arrays (`quality`: each played
    segment's score, for quality-aware models); with `sabre_gamma_p`, Sabre's report too."""
    rates = np.asarray(bitrates_bps, dtype=np.float64)
    stalls = np.asarray(rebuffer_s, dtype=np.float64)
    if rates.shape != stalls.shape or rates.ndim != 2:
        raise ValueError("bitrates and rebuffer times must be (segments, sessions) arrays of one shape")
    segments, sessions = rates.shape
    steps = np.abs(np.diff(rates, axis=0))
    switches = np.count_nonzero(steps > 0, axis=0)
    switch_sum = steps.sum(axis=0)
    total_stall = stalls.sum(axis=0)
    played_s = segments * segment_duration_s
    ratio = np.divide(total_stall, total_stall + played_s, out=np.zeros(sessions), where=(total_stall + played_s) > 0)
    mean_rate = rates.mean(axis=0) if segments else np.zeros(sessions)
    counts = np.count_nonzero(stalls > 0, axis=0) if rebuffer_count is None else np.asarray(rebuffer_count)
    qoe = {m.name: m.scores(rates, stalls, ladder_bps, quality, startup_s).tolist() for m in models}
    avg_switch = np.divide(switch_sum, switches, out=np.zeros(sessions), where=switches > 0)
    startup = np.asarray(startup_s, dtype=np.float64).tolist()
    stall_list, ratio_list, mean_list = total_stall.tolist(), ratio.tolist(), mean_rate.tolist()
    switch_list, avg_switch_list, count_list = switches.tolist(), avg_switch.tolist(), counts.tolist()
    sabre: list[SabreMetrics | None] = [None] * sessions
    if sabre_gamma_p is not None:
        sabre = list(sabre_metrics_batch(bitrates_bps=rates, ladder_bps=ladder_bps, segment_duration_s=segment_duration_s,
                                         startup_s=np.asarray(startup_s, dtype=np.float64), rebuffer_s=total_stall,
                                         rebuffer_events=counts, gamma_p=sabre_gamma_p))
    return [
        SessionMetrics(
            segments=segments, startup_s=startup[j], rebuffer_s=stall_list[j], rebuffer_count=int(count_list[j]),
            rebuffer_ratio=ratio_list[j], avg_bitrate_bps=mean_list[j], switches=int(switch_list[j]),
            avg_switch_bps=avg_switch_list[j], qoe={name: values[j] for name, values in qoe.items()}, sabre=sabre[j],
        )
        for j in range(sessions)
    ]


# -- Sabre's metrics -----------------------------------------------------------------------------------

SABRE_GAMMA_P = 5.0  # Sabre's -gp default: BOLA's gamma x segment duration, its score's stall weight


@dataclass(frozen=True, kw_only=True, slots=True)
class SabreMetrics:
    """Sabre's session report (UMass-LIDS/sabre, `sabre.py`, its closing metrics).

    Everything "per segment" is divided by n_T = T / segment duration, where T is the whole session:
    startup (the first download, latency included) + the media played + the stalls. So startup and
    stall time count as segments in which nothing was gained. Utility is ln(bitrate / lowest bitrate).
    """

    play_time_s: float  # T
    time_avg_bitrate_bps: float  # sum of played bitrates / n_T
    utility_per_segment: float  # sum of utilities / n_T
    rebuffer_s: float  # stall time after startup
    rebuffer_ratio: float  # stall time / T
    rebuffer_events: int
    switch_bps_per_segment: float  # sum of |bitrate change| between played segments / n_T
    score: float  # (sum of utilities - gamma_p x stall time / segment duration) / n_T

    def as_dict(self) -> dict[str, float | int]:
        return {f"sabre_{name}": getattr(self, name) for name in self.__slots__}  # type: ignore[attr-defined]


def sabre_metrics_batch(*, bitrates_bps: np.ndarray, ladder_bps: Sequence[float] | np.ndarray,
                        segment_duration_s: float, startup_s: np.ndarray, rebuffer_s: np.ndarray,
                        rebuffer_events: np.ndarray, gamma_p: float = SABRE_GAMMA_P) -> list[SabreMetrics]:
    """Sabre's metrics of many sessions from (segments, sessions) played bitrates and per-session
    startup, total stall time and stall count."""
    rates = np.asarray(bitrates_bps, dtype=np.float64)
    if rates.ndim != 2:
        raise ValueError("bitrates must be a (segments, sessions) array")
    if not gamma_p >= 0:
        raise ValueError(f"gamma_p must be >= 0, got {gamma_p}")
    segments = rates.shape[0]
    stall = np.asarray(rebuffer_s, dtype=np.float64)
    play_s = np.asarray(startup_s, dtype=np.float64) + segments * segment_duration_s + stall
    chunks = play_s / segment_duration_s
    lowest = float(np.asarray(ladder_bps, dtype=np.float64)[0])
    utility = np.log(rates / lowest).sum(axis=0)  # Sabre: ln of kbit/s ratios, the same number
    switches = np.abs(np.diff(rates, axis=0)).sum(axis=0)
    score = (utility - gamma_p * stall / segment_duration_s) / chunks
    columns = (play_s, rates.sum(axis=0) / chunks, utility / chunks, stall, stall / play_s, switches / chunks, score)
    events = np.asarray(rebuffer_events).tolist()
    return [
        SabreMetrics(play_time_s=p, time_avg_bitrate_bps=b, utility_per_segment=u, rebuffer_s=s, rebuffer_ratio=r,
                     rebuffer_events=int(events[j]), switch_bps_per_segment=w, score=c)
        for j, (p, b, u, s, r, w, c) in enumerate(zip(*(c.tolist() for c in columns)))
    ]


# -- live ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, slots=True)
class LiveQoe:
    """The QoE of the ACM MMSys 2020 Grand Challenge ("Adaptation Algorithm for Near-Second Latency",
    Twitch; the NQoE of Bentaleb et al., and dash.js `LoLpQoEEvaluator.js`), summed over segments s:

        QoE = sum_s [ a * R_s - b * E_s - c(L_s) * L_s - d * |1 - P_s| ] - sum_s m * |R_s - R_{s-1}|

    with R_s the segment's bitrate in kbit/s, E_s the stall time (s) charged to it, L_s the live
    latency (s) and P_s the playback rate when it was played. The weights are dash.js's (Bentaleb,
    last updated 30 Mar 2020): a = the segment duration (s), m = 1, b = the top bitrate (kbit/s),
    c(L) = 0.05 x the lowest bitrate (kbit/s) while L <= 1.1 s, else 0.1 x the top bitrate, and
    d = the lowest bitrate (kbit/s). `for_ladder` builds them from a ladder.
    """

    bitrate_reward: float  # a, per kbit/s
    switch_penalty: float = 1.0  # m, per kbit/s of change
    rebuffer_penalty: float  # b, per stalled second
    latency_threshold_s: float = 1.1
    latency_penalty_low: float  # c per second of latency while at most the threshold
    latency_penalty_high: float  # c above it
    speed_penalty: float  # d, per unit of |1 - rate|

    def __post_init__(self) -> None:
        weights = (self.bitrate_reward, self.switch_penalty, self.rebuffer_penalty, self.latency_penalty_low,
                   self.latency_penalty_high, self.speed_penalty)
        if any(not (w >= 0 and math.isfinite(w)) for w in weights) or not self.latency_threshold_s >= 0:
            raise ValueError(f"live QoE weights must be finite and >= 0, got {self}")

    @classmethod
    def for_ladder(cls, bitrates_bps: Sequence[float], segment_duration_s: float) -> LiveQoe:
        """The challenge's weights for a ladder (`bitrates_bps`) of segments `segment_duration_s` long."""
        if not bitrates_bps or not segment_duration_s > 0:
            raise ValueError("the live QoE needs a ladder and a segment duration > 0 s")
        low_kbps, top_kbps = min(bitrates_bps) / 1e3, max(bitrates_bps) / 1e3
        return cls(bitrate_reward=segment_duration_s, rebuffer_penalty=top_kbps, latency_penalty_low=0.05 * low_kbps,
                   latency_penalty_high=0.1 * top_kbps, speed_penalty=low_kbps)

    def terms(self, *, bitrates_bps: Sequence[float] | np.ndarray, rebuffer_s: Sequence[float] | np.ndarray,
              latency_s: Sequence[float] | np.ndarray, playback_rate: Sequence[float] | np.ndarray) -> dict[str, float]:
        """Each term summed over the segments (bitrate is the reward; the others are penalties, >= 0)
        and `total` = bitrate - switch - rebuffer - latency - speed. One value per segment each."""
        kbps = np.asarray(bitrates_bps, dtype=np.float64) / 1e3
        stalls = np.asarray(rebuffer_s, dtype=np.float64)
        latency = np.asarray(latency_s, dtype=np.float64)
        rate = np.asarray(playback_rate, dtype=np.float64)
        if not kbps.ndim == 1 or not kbps.shape == stalls.shape == latency.shape == rate.shape:
            raise ValueError("the live QoE needs one bitrate, stall, latency and playback rate per segment")
        weight = np.where(latency <= self.latency_threshold_s, self.latency_penalty_low, self.latency_penalty_high)
        out = {
            "bitrate": float(self.bitrate_reward * kbps.sum()),
            "switch": float(self.switch_penalty * np.abs(np.diff(kbps)).sum()),
            "rebuffer": float(self.rebuffer_penalty * stalls.sum()),
            "latency": float((weight * latency).sum()),
            "speed": float(self.speed_penalty * np.abs(1.0 - rate).sum()),
        }
        out["total"] = out["bitrate"] - out["switch"] - out["rebuffer"] - out["latency"] - out["speed"]
        return out

    def score(self, **per_segment: Sequence[float] | np.ndarray) -> float:
        """The total (`terms(...)["total"]`)."""
        return self.terms(**per_segment)["total"]
