"""Synthetic traces: constant, steps, a seeded log-normal random walk and a seeded Markov chain.

Generators are deterministic for a seed (numpy `default_rng`), so experiments can be repeated.
A spec string form is accepted by `from_spec` for the CLI, e.g. `constant:3e6`, `step:4e6,1e6,8e6@5`,
`walk:2e6@seed=1`, `markov:0.5e6,2e6,6e6@seed=3`, and the low-latency test profiles by name,
`profile:cascade` (`LOW_LATENCY_PROFILES`).
"""

from __future__ import annotations

import numpy as np

from netsim.trace import Trace


def constant(rate_bps: float, *, duration_s: float = 60.0, latency_s: float | None = None) -> Trace:
    """A link of fixed capacity."""
    if not rate_bps > 0 or not duration_s > 0:
        raise ValueError("constant trace needs rate_bps > 0 and duration_s > 0")
    return Trace(
        name=f"constant-{rate_bps:g}bps",
        durations_s=np.array([duration_s]),
        bandwidth_bps=np.array([rate_bps]),
        latency_s=None if latency_s is None else np.array([latency_s]),
    )


def step(rates_bps: list[float] | tuple[float, ...], *, step_s: float = 10.0) -> Trace:
    """Capacity `rates_bps[i]` for `step_s` seconds each, in order (then looped)."""
    if not rates_bps or any(r < 0 for r in rates_bps) or not step_s > 0:
        raise ValueError("step trace needs non-negative rates and step_s > 0")
    return Trace(
        name="step-" + "-".join(f"{r:g}" for r in rates_bps),
        durations_s=np.full(len(rates_bps), float(step_s)),
        bandwidth_bps=np.asarray(rates_bps, dtype=np.float64),
    )


def random_walk(*, mean_bps: float = 2e6, volatility: float = 0.25, interval_s: float = 1.0,
                duration_s: float = 300.0, floor_bps: float = 50e3, seed: int = 0) -> Trace:
    """A mean-reverting walk in log space (Ornstein-Uhlenbeck, reversion 0.1 per interval)."""
    if not mean_bps > 0 or volatility < 0 or not interval_s > 0 or not duration_s >= interval_s:
        raise ValueError("random walk needs mean_bps > 0, volatility >= 0, 0 < interval_s <= duration_s")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s / interval_s))
    log_mean = np.log(mean_bps)
    values = np.empty(n)
    x = log_mean
    for i in range(n):
        x += 0.1 * (log_mean - x) + volatility * rng.standard_normal()
        values[i] = x
    rates = np.maximum(np.exp(values), floor_bps)
    return Trace(name=f"walk-{mean_bps:g}bps-seed{seed}", durations_s=np.full(n, interval_s), bandwidth_bps=rates)


def markov(states_bps: list[float] | tuple[float, ...], *, stay_probability: float = 0.9, interval_s: float = 1.0,
           duration_s: float = 300.0, jitter: float = 0.1, seed: int = 0) -> Trace:
    """A Markov chain over capacity levels: stay with `stay_probability`, else move to a neighbour.

    Each interval's rate is the state's level times (1 + jitter * N(0, 1)), floored at 10% of it.
    """
    if not states_bps or any(s <= 0 for s in states_bps):
        raise ValueError("markov trace needs positive state rates")
    if not 0 <= stay_probability <= 1 or not interval_s > 0 or not duration_s >= interval_s or jitter < 0:
        raise ValueError("markov trace needs 0 <= stay_probability <= 1, 0 < interval_s <= duration_s, jitter >= 0")
    rng = np.random.default_rng(seed)
    n = int(round(duration_s / interval_s))
    levels = np.asarray(states_bps, dtype=np.float64)
    state = len(levels) // 2
    rates = np.empty(n)
    for i in range(n):
        if len(levels) > 1 and rng.random() > stay_probability:
            state = int(np.clip(state + rng.choice((-1, 1)), 0, len(levels) - 1))
        rates[i] = max(levels[state] * (1 + jitter * rng.standard_normal()), 0.1 * levels[state])
    return Trace(name=f"markov-{len(levels)}-seed{seed}", durations_s=np.full(n, interval_s), bandwidth_bps=rates)


# The network profiles of Twitch's ACM MMSys 2020 Grand Challenge ("Adaptation Algorithm for Near-Second
# Latency"; twitchtv/acm-mmsys-2020-grand-challenge `normal-network-patterns.js`, the five the entries
# were judged on with the "Normal" 200/600/1000 kbit/s ladder), as (kbit/s, seconds) steps run in order.
# The dash.js low-latency samples use the same ones.
LOW_LATENCY_PROFILES: dict[str, tuple[tuple[float, float], ...]] = {
    # smooth, long-term changes that lie comfortably between renditions
    "cascade": ((1200, 30), (800, 30), (400, 30), (800, 30), (1200, 30)),
    # a cascade with an intermediate step between renditions
    "intra-cascade": ((1000, 15), (800, 15), (600, 15), (400, 15), (200, 15), (400, 15), (600, 15), (800, 15),
                      (1000, 15)),
    # a sharp downward and upward spike
    "spike": ((1200, 10), (300, 10), (800, 10)),
    # jitter much slower than the buffer is long
    "slow-jitters": ((500, 5), (1200, 5), (500, 5), (1200, 5), (500, 5), (1200, 5)),
    # jitter faster than the buffer is long
    "fast-jitters": ((500, 0.25), (1200, 5), (500, 0.1), (1200, 1), (500, 0.25), (1200, 5)),
}


def low_latency_profile(name: str, *, scale: float = 1.0) -> Trace:
    """One of `LOW_LATENCY_PROFILES` as a trace (looped like any trace), its rates times `scale` (the
    profiles fit a 1 Mbit/s ladder; scale them to test another)."""
    try:
        steps = LOW_LATENCY_PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown network profile {name!r}; choose from {', '.join(LOW_LATENCY_PROFILES)}") from None
    if not scale > 0:
        raise ValueError(f"profile scale must be > 0, got {scale}")
    return Trace(
        name=f"profile-{name}" + (f"-x{scale:g}" if scale != 1.0 else ""),
        durations_s=np.array([duration for _, duration in steps], dtype=np.float64),
        bandwidth_bps=np.array([kbps * 1e3 * scale for kbps, _ in steps], dtype=np.float64),
    )


def from_spec(spec: str) -> Trace:
    """Parse `kind:values[@options]`, e.g. `step:4e6,1e6@5` (5 s per step), `walk:2e6@seed=3` or
    `profile:spike` (`profile:spike@scale=4` for a ladder four times higher)."""
    kind, _, rest = spec.partition(":")
    if kind == "profile":
        name, _, options_text = rest.partition("@")
        key, eq, value = options_text.partition("=")
        if options_text and (key.strip() != "scale" or not eq):
            raise ValueError(f"bad profile spec {spec!r}: the one option is @scale=X")
        try:
            scale = float(value) if options_text else 1.0
        except ValueError:
            raise ValueError(f"bad profile spec {spec!r}: scale must be a number") from None
        return low_latency_profile(name.strip(), scale=scale)
    values_text, _, options_text = rest.partition("@")
    try:
        values = [float(v) for v in values_text.split(",") if v]
        options: dict[str, float] = {}
        for item in filter(None, options_text.split(",")):
            key, eq, value = item.partition("=")
            if not eq:
                key, value = {"step": "step_s", "constant": "duration_s"}.get(kind, "interval_s"), key
            options[key.strip()] = float(value)
    except ValueError:
        raise ValueError(f"bad synthetic trace spec {spec!r}") from None
    seed = int(options.pop("seed", 0))
    if kind == "constant" and len(values) == 1:
        return constant(values[0], **options)
    if kind == "step" and values:
        return step(values, **options)
    if kind == "walk" and len(values) <= 1:
        return random_walk(mean_bps=values[0] if values else 2e6, seed=seed, **options)
    if kind == "markov" and values:
        return markov(values, seed=seed, **options)
    raise ValueError(f"bad synthetic trace spec {spec!r}: use constant:R, step:R1,R2@S, walk:MEAN@seed=N "
                     "markov:R1,R2,...@seed=N (rates in bit/s) or profile:NAME")
