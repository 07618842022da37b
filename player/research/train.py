"""Training the `learned` ABR: imitation of the offline optimum with DAgger.

Comyco (Huang et al., ACM MM 2019) trains a policy to imitate an "instant solver" that knows the
future bandwidth; DAgger (Ross, Gordon and Bagnell, AISTATS 2011) collects the states where the
expert is asked from the learner's own rollouts, so the policy learns to recover from its mistakes:

    round 0:  roll out the expert, label every decision with the expert's quality;
    round i:  roll out the mixture (expert with probability beta^i, else the policy of round i-1),
              label every decision with the expert's quality, add to the data set, refit;
    keep the round whose policy scores best on validation traces held out of the training set.

The expert is the simulator's own offline optimum (`player.research.optimal.offline_optimal`) started from
the session's exact state (segment, trace time, buffer, last quality) and looking `horizon_segments`
ahead with the true future trace: Comyco's instant solver. Rollouts are `player.research.sim.run_session`
sessions, so training sees exactly the sessions `abrkit sim` runs. The model is a scikit-learn MLP
whose parameters are exported to `abr.algorithms.learned.PolicyModel` (JSON, loaded without pickle).

Every random draw comes from a generator seeded by (seed, round, trace, rollout), and fitting runs on
one BLAS thread, so a seed gives the same model file bytes for any number of workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from abr.algorithms.learned import Learned, PolicyModel
from abr.features import observation_features, schema
from abr.qoe import QOE_MODELS
from abr.types import Decision, Observation
from netsim.trace import Trace
from player.research.ensemble import average_networks, restandardise, split_members
from player.research.expert import ExpertConfig, expert_qoe, expert_values, session_trace_time_s
from player.research.folds import split_traces, traces_digest
from player.research.folds import validation_offsets as held_out_offsets
from player.research.selection import MarginChoice, Selection, best_guard, best_margin, versus_init
from player.research.sim import SimProfile, run_session
from player.video import Video

Progress = Callable[[int], None]
_TARGETS = ("regret", "action")
_ENGINES = ("batch", "session")
_TEACHERS = ("expert", "policy")
_LOCKSTEP_SESSIONS = 128  # sessions per lock-step rollout batch (bounds the expert's frontier)


@dataclass(frozen=True, kw_only=True, slots=True)
class TrainConfig:
    """DAgger and model settings.

    `iterations` DAgger rounds follow the expert round, each with `rollouts_per_trace` rollouts per
    fitting trace from random offsets; round i plays the expert with probability `beta ** i` (Ross et
    al. section 3) and labels `label_fraction` of the policy's own decisions. `validation_fraction` of
    the training traces (at least one; the `validation_fold`-th such share, `player.research.folds`)
    are held out to pick the best round, each scored from offset 0
    and `validation_offsets` seeded offsets. The model: `ensemble` MLPs of `hidden_sizes` (L2
    `l2_alpha`, Adam at `learning_rate`, `max_epochs`) fitted to `target` ("regret": each quality's
    regret clipped at `regret_clip`; "action": the expert's best quality), their outputs averaged.
    The best round's decision rule then gets the hysteresis of `switch_margins` (keep the last
    quality unless another scores this much higher) that scores best on the validation traces.
    `engine` "batch" plays each round's rollouts in lock-step with the batched expert
    (`player.research.dagger_batch`); "session" plays them one `run_session` at a time, in `workers`
    processes (results do not depend on the number of workers; the batch engine uses them only for
    fitting).

    `teacher` "policy" (batch engine, with `train(init_policy=...)`) replaces the clairvoyant expert
    by the value of each quality under the previous round's policy (`player.research.rollout_teacher`,
    approximate policy iteration): round 0 rolls out `init_policy`, round i the policy of round i-1
    with the switch margin that scored best on validation, each playing a random quality with
    probability `explore` per decision; each round fits on the data of its last `window_rounds`
    rounds (older labels price an older policy's continuation). `beta` and `label_fraction` do not
    apply. `warm_start`: each round's networks start from the previous round's (round 0 from
    `init_policy` when given) instead of a fresh draw. `selection` picks the best round and switch
    margin (`player.research.selection`: the mean, or with the tail of the differences from
    `init_policy` weighted), and so does the margin the policy teacher rolls out next; a round is ranked
    at its best margin. The chosen round's decision rule then gets the safety floor of `safety_floors_s`
    (`PolicyModel.safety_floor_s`, chosen with the margin by the same rule; rollouts do not use it).

    `seed` seeds every draw; `split_seed`, when given, seeds the held-out split and the validation
    offsets instead (`held_out_seed`), so copies of a recipe that differ only in their rollouts and fits
    (`seed`) validate on the same sessions and can be told apart from seed noise (docs/LEARNED.md, round 11)."""

    seed: int = 0
    split_seed: int | None = None
    iterations: int = 8
    rollouts_per_trace: int = 1
    beta: float = 0.5
    label_fraction: float = 1.0
    validation_fraction: float = 0.2
    validation_fold: int = 0
    hidden_sizes: tuple[int, ...] = (64, 64)
    l2_alpha: float = 1e-3
    max_epochs: int = 60
    learning_rate: float = 1e-3
    target: str = "regret"
    ensemble: int = 3
    regret_clip: float = 20.0
    validation_offsets: int = 2
    switch_margins: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.7, 1.0)
    expert: ExpertConfig = field(default_factory=ExpertConfig)
    workers: int = 1
    engine: str = "session"
    teacher: str = "expert"
    explore: float = 0.05
    window_rounds: int = 2
    warm_start: bool = False
    selection: Selection = field(default_factory=Selection)
    safety_floors_s: tuple[float, ...] = (0.0,)

    @property
    def held_out_seed(self) -> int:
        """The seed of the held-out split and the validation offsets: `split_seed`, else `seed`."""
        return self.seed if self.split_seed is None else self.split_seed

    def __post_init__(self) -> None:
        if not self.safety_floors_s or any(not (f >= 0 and math.isfinite(f)) for f in self.safety_floors_s):
            raise ValueError(f"safety_floors_s must be finite values >= 0 s, got {self.safety_floors_s}")
        if self.iterations < 0:
            raise ValueError(f"iterations must be >= 0, got {self.iterations}")
        if self.rollouts_per_trace < 1:
            raise ValueError(f"rollouts_per_trace must be >= 1, got {self.rollouts_per_trace}")
        if not 0 <= self.beta <= 1:
            raise ValueError(f"beta must be in [0, 1], got {self.beta}")
        if not 0 < self.label_fraction <= 1:
            raise ValueError(f"label_fraction must be in (0, 1], got {self.label_fraction}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if not self.hidden_sizes or any(h < 1 for h in self.hidden_sizes):
            raise ValueError(f"hidden_sizes must be positive layer widths, got {self.hidden_sizes}")
        if not (self.l2_alpha >= 0 and math.isfinite(self.l2_alpha)):
            raise ValueError(f"l2_alpha must be finite and >= 0, got {self.l2_alpha}")
        if self.max_epochs < 1 or not self.learning_rate > 0:
            raise ValueError("max_epochs must be >= 1 and learning_rate > 0")
        if self.ensemble < 1:
            raise ValueError(f"ensemble must be >= 1 network, got {self.ensemble}")
        if self.target not in _TARGETS:
            raise ValueError(f"unknown target {self.target!r}; choose from {', '.join(_TARGETS)}")
        if not self.regret_clip > 0:
            raise ValueError(f"regret_clip must be > 0, got {self.regret_clip}")
        if self.validation_fold < 0:
            raise ValueError(f"validation_fold must be >= 0, got {self.validation_fold}")
        if self.validation_offsets < 0:
            raise ValueError(f"validation_offsets must be >= 0, got {self.validation_offsets}")
        if not self.switch_margins or any(not (m >= 0 and math.isfinite(m)) for m in self.switch_margins):
            raise ValueError(f"switch_margins must be finite values >= 0, got {self.switch_margins}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.engine not in _ENGINES:
            raise ValueError(f"unknown engine {self.engine!r}; choose from {', '.join(_ENGINES)}")
        if self.teacher not in _TEACHERS:
            raise ValueError(f"unknown teacher {self.teacher!r}; choose from {', '.join(_TEACHERS)}")
        if self.teacher == "policy" and self.engine != "batch":
            raise ValueError("the policy teacher runs on the batch engine only (engine 'batch')")
        if not 0 <= self.explore <= 1:
            raise ValueError(f"explore must be in [0, 1], got {self.explore}")
        if self.window_rounds < 1:
            raise ValueError(f"window_rounds must be >= 1, got {self.window_rounds}")
        if self.warm_start and self.target != "regret":
            raise ValueError("warm_start needs the regret target")


@dataclass(frozen=True, kw_only=True, slots=True)
class RoundStats:
    """What one round collected and how its refitted policy scored."""

    round: int
    beta: float  # probability of executing the expert's quality in this round's rollouts
    samples: int  # labelled decisions in the data set after this round
    rollout_qoe: float  # mean QoE of this round's rollouts as played (the mixture, or the policy with exploration)
    agreement: float | None  # share of this round's decisions where the previous policy chose the expert's best
    #                          quality (None in round 0, which has no policy yet)
    validation_qoe: float  # mean QoE of the refitted policy on the validation traces (switch margin 0)
    policy_qoe: float | None = None  # policy teacher: its own mean QoE on the rollout sessions, without exploration


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class TrainResult:
    model: PolicyModel  # the best round's policy
    rounds: tuple[RoundStats, ...]
    best_round: int
    margin_scores: tuple[tuple[float, float], ...]  # (switch margin, validation QoE) of the best round's policy
    fit_traces: tuple[str, ...]
    validation_traces: tuple[str, ...]


# -- rollouts --------------------------------------------------------------------------------------------------


class _DaggerRollout:
    """An ABR for one rollout: asks the expert at every decision, records (features, expert values),
    and executes the expert's best quality with probability `beta`, else the policy's."""

    name = "dagger-rollout"

    def __init__(self, expert: Callable[[Observation], np.ndarray], policy: PolicyModel | None, beta: float,
                 label_fraction: float, rng: np.random.Generator) -> None:
        self._expert = expert
        self._policy = policy
        self._beta = beta
        self._label_fraction = label_fraction
        self._rng = rng
        self.features: list[np.ndarray] = []
        self.values: list[np.ndarray] = []
        self.agreed = 0

    def decide(self, obs: Observation) -> Decision:
        x = observation_features(obs)
        if self._policy is None:
            use_expert, labelled = True, True
        else:
            # Both draws every time, so the random stream does not depend on what the expert said.
            use_expert = self._rng.random() < self._beta
            labelled = self._rng.random() < self._label_fraction or use_expert
        choice = None if self._policy is None else int(self._policy.predict(x)[0])
        if not labelled:
            assert choice is not None
            return Decision(quality=choice, reason="policy")
        values = self._expert(obs)
        best = int(np.argmax(values))
        self.features.append(x[0])
        self.values.append(values)
        self.agreed += choice == best
        quality = best if use_expert or choice is None else choice
        return Decision(quality=quality, reason="expert" if use_expert else "policy")


@dataclass(frozen=True, kw_only=True, slots=True)
class _Rollout:
    trace: Trace
    offset_s: float
    beta: float
    seed: tuple[int, ...]


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class _RolloutBatch:
    video: Video
    prof: SimProfile
    expert: ExpertConfig
    policy: PolicyModel | None
    label_fraction: float
    rollouts: tuple[_Rollout, ...]


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class _RolloutData:
    features: np.ndarray  # (n, F)
    values: np.ndarray  # (n, Q) expert values of each quality
    qoe: float  # the rollout session's QoE
    agreed: int  # labelled decisions where the rolled-out policy chose the expert's best quality
    policy_qoe: float | None = None  # policy teacher: the session's QoE under the policy alone (no exploration)


def _run_rollouts(batch: _RolloutBatch) -> list[_RolloutData]:
    out = []
    rungs = len(batch.video.ladder)
    for task in batch.rollouts:
        def ask(obs: Observation, task: _Rollout = task) -> np.ndarray:
            return expert_values(batch.video, task.trace, batch.prof, obs,
                                 session_trace_time_s(obs, task.offset_s, batch.prof), batch.expert)

        rng = np.random.default_rng(list(task.seed))
        roller = _DaggerRollout(ask, batch.policy, task.beta, batch.label_fraction, rng)
        result = run_session("dagger-rollout", batch.video, task.trace, batch.prof, abr=roller, offset_s=task.offset_s,
                             models=(QOE_MODELS[batch.expert.qoe],))
        count = len(roller.values)
        out.append(_RolloutData(features=np.array(roller.features).reshape(count, -1),
                                values=np.array(roller.values).reshape(count, rungs),
                                qoe=result.metrics.qoe[batch.expert.qoe], agreed=roller.agreed))
    return out


# -- fitting ---------------------------------------------------------------------------------------------------


def fit_policy(x: np.ndarray, values: np.ndarray, video: Video, config: TrainConfig, *, seed: int,
               metadata: Mapping[str, Any] | None = None, executor: Executor | None = None,
               init: PolicyModel | None = None, extra_names: Sequence[str] = ()) -> PolicyModel:
    """Standardise the features, fit `config.ensemble` MLPs to the expert's values (in `executor` when
    given, one member per task), average them into one network and export its parameters. With `init`
    (regret target only), member k starts from `init`'s member k (`player.research.warm_start`).

    target "action": a classifier of the expert's best quality (Comyco's cross-entropy imitation);
    rungs the data never shows get a score no input reaches. target "regret": a regressor of each
    quality's regret against the expert's best (clipped at `regret_clip`), i.e. cost-sensitive
    imitation: a near-tie costs little, a quality that stalls costs what it loses.
    `extra_names` name input columns appended to the schema's (research on other inputs: such a
    model scores, but `learned` cannot build its features, so `load_model` refuses its file).
    """
    import sklearn
    from sklearn.preprocessing import StandardScaler

    rungs = len(video.ladder)
    feature_schema = schema(rungs)
    if extra_names:
        feature_schema = dataclasses.replace(feature_schema, names=feature_schema.names + tuple(extra_names))
    if x.ndim != 2 or x.shape[1] != feature_schema.size or values.shape != (x.shape[0], rungs):
        raise ValueError(f"need (n, {feature_schema.size}) features and (n, {rungs}) values, got {x.shape} and "
                         f"{values.shape}")
    scaler = StandardScaler().fit(x)
    standard = scaler.transform(x)
    if config.target == "regret":
        target = np.maximum(values - values.max(axis=1, keepdims=True), -config.regret_clip)
    else:
        target = np.argmax(values, axis=1)
    starts: list[Any] = [None] * config.ensemble
    if init is not None:
        if config.target != "regret":
            raise ValueError("a warm start needs the regret target")
        starts = [restandardise(m, init.input_mean_, init.input_scale_, scaler.mean_, scaler.scale_)
                  for m in split_members(init, config.ensemble, config.hidden_sizes)]
    tasks = [(standard, target, rungs, config, seed + member, starts[member]) for member in range(config.ensemble)]
    if executor is None:
        members = [_fit_member(*task) for task in tasks]
    else:
        members = [future.result() for future in [executor.submit(_fit_member, *task) for task in tasks]]
    coefs, intercepts = average_networks(members)
    return PolicyModel(
        feature_schema=feature_schema, ladder_bitrates_bps=video.ladder.bitrates_bps,
        segment_duration_s=video.ladder.segment_duration_s, sklearn_version=sklearn.__version__, activation="relu",
        input_mean_=scaler.mean_, input_scale_=scaler.scale_, coefs_=tuple(coefs), intercepts_=tuple(intercepts),
        metadata=dict(metadata or {}),
    )


def _fit_member(x: np.ndarray, target: np.ndarray, rungs: int, config: TrainConfig, seed: int,
                start: Any = None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """One network's (weights, biases): a regressor of the regrets (from `start`'s weights when given)
    or a classifier of the best rung."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from threadpoolctl import threadpool_limits

    params = dict(hidden_layer_sizes=config.hidden_sizes, alpha=config.l2_alpha, max_iter=config.max_epochs,
                  learning_rate_init=config.learning_rate, random_state=seed, shuffle=True)
    with threadpool_limits(limits=1), warnings.catch_warnings():
        # One BLAS thread: the fit is then bit-reproducible whatever the machine's thread count.
        warnings.simplefilter("ignore", ConvergenceWarning)
        if target.ndim == 2:
            net = MLPRegressor(**params, warm_start=start is not None)
            if start is not None:
                from player.research.ensemble import start_regressor

                start_regressor(net, start, x, target.shape[1])
            net.fit(x, target)
            return [np.asarray(w) for w in net.coefs_], [np.asarray(b) for b in net.intercepts_]
        return _fit_classifier(x, target, rungs, config.hidden_sizes, params, MLPClassifier)


def _fit_classifier(x: np.ndarray, y: np.ndarray, rungs: int, hidden: tuple[int, ...], params: dict[str, Any],
                    classifier: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    classes = np.unique(y)
    if classes.size >= 2:
        net = classifier(**params).fit(x, y)
        coefs = [np.asarray(w) for w in net.coefs_]
        intercepts = [np.asarray(b) for b in net.intercepts_]
        if classes.size == 2:  # a single logistic output scores class 1 against class 0
            coefs[-1] = np.concatenate([np.zeros_like(coefs[-1]), coefs[-1]], axis=1)
            intercepts[-1] = np.concatenate([np.zeros(1), intercepts[-1]])
    else:  # one quality everywhere: a network whose only output is that quality
        widths = (x.shape[1], *hidden, 1)
        coefs = [np.zeros((a, b)) for a, b in zip(widths, widths[1:])]
        intercepts = [np.zeros(b) for b in widths[1:]]
    # Spread the outputs over every rung; a rung never seen in training can never win.
    floor = min(float(np.min(intercepts[-1])), 0.0) - 1e6
    last_w = np.zeros((coefs[-1].shape[0], rungs))
    last_b = np.full(rungs, floor)
    last_w[:, classes] = coefs[-1]
    last_b[classes] = intercepts[-1]
    coefs[-1], intercepts[-1] = last_w, last_b
    return coefs, intercepts


def evaluate_policy(model: PolicyModel, video: Video, traces: Sequence[Trace], prof: SimProfile, *,
                    qoe: str = "lin", offsets_s: Sequence[Sequence[float]] | None = None) -> np.ndarray:
    """QoE of the policy per session: each trace from trace time 0 (as `abrkit sim` runs it) and from
    each of its `offsets_s[j]`."""
    starts = [(t, o) for j, t in enumerate(traces) for o in (0.0, *(offsets_s[j] if offsets_s else ()))]
    return np.array([run_session("learned", video, t, prof, abr=Learned(model), offset_s=o,
                                 models=(QOE_MODELS[qoe],)).metrics.qoe[qoe] for t, o in starts])


# -- the DAgger loop -------------------------------------------------------------------------------------------------


def _rollout_tasks(traces: Sequence[Trace], config: TrainConfig, round_index: int, beta: float) -> list[_Rollout]:
    tasks = []
    for j, trace in enumerate(traces):
        for k in range(config.rollouts_per_trace):
            seed = (config.seed, round_index, j, k)
            offset = float(np.random.default_rng([*seed, 1]).uniform(0.0, trace.duration_s))
            tasks.append(_Rollout(trace=trace, offset_s=offset, beta=beta, seed=seed))
    return tasks


def _collect(video: Video, prof: SimProfile, config: TrainConfig, policy: PolicyModel | None,
             tasks: list[_Rollout], pool: Executor | None, progress: Progress) -> list[_RolloutData]:
    chunk = 2
    batches = [_RolloutBatch(video=video, prof=prof, expert=config.expert, policy=policy,
                             label_fraction=config.label_fraction, rollouts=tuple(tasks[i:i + chunk]))
               for i in range(0, len(tasks), chunk)]
    results: list[_RolloutData] = []
    if pool is None:
        for batch in batches:
            results.extend(_run_rollouts(batch))
            progress(len(batch.rollouts))
    else:
        for batch, future in zip(batches, [pool.submit(_run_rollouts, b) for b in batches]):
            results.extend(future.result())
            progress(len(batch.rollouts))
    return results


def _collect_lockstep(video: Video, prof: SimProfile, config: TrainConfig, policy: PolicyModel | None,
                      traces: Sequence[Trace], tasks: list[_Rollout], round_index: int,
                      progress: Progress, *, teacher: PolicyModel | None = None) -> list[_RolloutData]:
    """`_collect` on the batch engine: the same sessions (traces and offsets), played in lock-step
    batches with the batched expert; the mixture's draws come from one generator per round. With a
    `teacher` (the policy teacher), the sessions are played by it (with exploration) and labelled with
    each quality's value under it (`rollout_teacher.policy_rollouts`) instead."""
    from player.research.dagger_batch import LockStepRollouts, lockstep_rollouts
    from player.research.rollout_teacher import policy_rollouts

    model = expert_qoe(config.expert)
    slot = {id(t): j for j, t in enumerate(traces)}
    rng = np.random.default_rng([config.seed, round_index, 0xDA66E5 if teacher is None else 0x7EAC])
    out: list[_RolloutData] = []
    for i in range(0, len(tasks), _LOCKSTEP_SESSIONS):
        chunk = tasks[i:i + _LOCKSTEP_SESSIONS]
        which, offsets = [slot[id(t.trace)] for t in chunk], [t.offset_s for t in chunk]
        data: LockStepRollouts
        if teacher is None:
            data = lockstep_rollouts(video, prof, traces, which, offsets, policy=policy, beta=chunk[0].beta,
                                     label_fraction=config.label_fraction, rng=rng, model=model,
                                     horizon_segments=config.expert.horizon_segments, grid_s=config.expert.grid_s)
        else:
            data = policy_rollouts(video, prof, traces, which, offsets, policy=Learned(teacher), model=model,
                                   explore=config.explore, rng=rng)
        order = np.argsort(data.session, kind="stable")
        bounds = np.searchsorted(data.session[order], np.arange(len(chunk) + 1))
        for j in range(len(chunk)):
            rows = order[bounds[j]:bounds[j + 1]]
            # The agreement is a round total; it is booked on the chunk's first session.
            out.append(_RolloutData(features=data.features[rows], values=data.values[rows], qoe=float(data.qoe[j]),
                                    agreed=data.agreed if j == 0 else 0,
                                    policy_qoe=None if data.policy_qoe is None else float(data.policy_qoe[j])))
        progress(len(chunk))
    return out


def _policy_digest(policy: PolicyModel) -> str:
    from abr.algorithms.learned import encode_model

    return hashlib.sha256(encode_model(policy)).hexdigest()[:16]


def total_rollouts(traces: Sequence[Trace], config: TrainConfig, extra_traces: Sequence[Trace] = ()) -> int:
    """How many rollouts `train` runs (for a progress bar)."""
    fit, _ = split_traces(traces, config.validation_fraction, config.held_out_seed, config.validation_fold)
    return (len(fit) + len(extra_traces)) * config.rollouts_per_trace * (config.iterations + 1)


def train(video: Video, traces: Sequence[Trace], prof: SimProfile, config: TrainConfig, *,
          extra_traces: Sequence[Trace] = (), metadata: Mapping[str, Any] | None = None,
          progress: Progress | None = None, log: Callable[[str], None] | None = None,
          on_round: Callable[[int, PolicyModel], None] | None = None,
          init_policy: PolicyModel | None = None) -> TrainResult:
    """Run DAgger on `traces` (training traces only) and return the best round's policy. A video with
    audio trains on its one-pipeline view (`Video.folded`), the model the expert (the offline optimum) solves.
    `extra_traces` (e.g. generated ones, `abrkit trace generate`) are rolled out and fitted on like the
    fit share of `traces`, never used for validation, which stays on held-out real traces. `on_round(r, policy)`
    gets every round's refitted policy (switch margin 0), e.g. to score the rounds on other traces later."""
    if not traces:
        raise ValueError("training needs at least one trace")
    if (config.teacher == "policy") != (init_policy is not None):
        raise ValueError("the policy teacher needs an initial policy (and only it takes one)")
    if config.warm_start and init_policy is not None:  # refuse another network shape before any rollout
        split_members(init_policy, config.ensemble, config.hidden_sizes)
    video = video.folded()
    tick = progress or (lambda n: None)
    say = log or (lambda line: None)
    fit_traces, validation = split_traces(traces, config.validation_fraction, config.held_out_seed, config.validation_fold)
    rollout_traces = [*fit_traces, *extra_traces]
    seg_s = video.ladder.segment_duration_s
    if config.engine == "batch" and max(prof.session.startup_threshold_s, prof.session.rebuffer_resume_s) > seg_s:
        raise ValueError(f"profile {prof.name!r} starts playback with more than one segment, which the batch "
                         "engine cannot run; train with engine 'session'")
    base_meta: dict[str, Any] = {
        "method": ("DAgger imitation of the instant-solver offline optimum (Comyco + DAgger)" if init_policy is None else
                   "approximate policy iteration: regression of each quality's value under the previous policy"),
        "seed": config.seed, "iterations": config.iterations, "rollouts_per_trace": config.rollouts_per_trace,
        "beta": config.beta, "label_fraction": config.label_fraction, "hidden_sizes": list(config.hidden_sizes),
        "l2_alpha": config.l2_alpha, "max_epochs": config.max_epochs, "learning_rate": config.learning_rate,
        "target": config.target, "ensemble": config.ensemble,
        "regret_clip": config.regret_clip, "validation_offsets": config.validation_offsets,
        "switch_margins": list(config.switch_margins),
        "expert": {"horizon_segments": config.expert.horizon_segments, "grid_s": config.expert.grid_s,
                   "qoe": config.expert.qoe, "rebuffer_penalty": config.expert.rebuffer_penalty},
        "profile": prof.name, "video": video.name, "traces": len(traces), "traces_sha256_16": traces_digest(traces),
        "validation_traces": len(validation) if validation is not fit_traces else 0,
        **({"validation_fold": config.validation_fold} if config.validation_fold else {}),
        **({"split_seed": config.split_seed} if config.split_seed is not None else {}),
        "engine": config.engine, "extra_traces": len(extra_traces),
        **({"warm_start": True} if config.warm_start else {}), "selection": config.selection.metadata(),
        **({} if config.safety_floors_s == (0.0,) else {"safety_floors_s": list(config.safety_floors_s)}),
        **({"teacher": "policy", "explore": config.explore, "window_rounds": config.window_rounds,
            "init_policy_sha256_16": _policy_digest(init_policy),
            "init_policy_command": init_policy.metadata.get("command")}
           if init_policy is not None else {}),
        **({"extra_traces_sha256_16": traces_digest(extra_traces)} if extra_traces else {}),
        **dict(metadata or {}),
    }
    pool = ProcessPoolExecutor(max_workers=config.workers) if config.workers > 1 else None
    xs: list[np.ndarray] = []
    vs: list[np.ndarray] = []
    validation_offsets = held_out_offsets(validation, config.held_out_seed, config.validation_offsets)

    def validate_sessions(policy: PolicyModel) -> np.ndarray:  # per session, trace by trace, offset 0 first
        if config.engine == "batch":
            from player.research.dagger_batch import evaluate_lockstep

            return evaluate_lockstep(policy, video, prof, validation, QOE_MODELS[config.expert.qoe],
                                     offsets_s=validation_offsets)
        return evaluate_policy(policy, video, validation, prof, qoe=config.expert.qoe, offsets_s=validation_offsets)

    reference = None if init_policy is None or config.selection.rule == "mean" else validate_sessions(init_policy)

    def rank(policy: PolicyModel) -> tuple[float, float]:  # (selection score, mean validation QoE)
        sessions = validate_sessions(policy)
        return config.selection.score(sessions, reference), float(np.mean(sessions))

    rounds: list[RoundStats] = []
    best: tuple[float, int, PolicyModel] | None = None
    choices: list[MarginChoice] = []
    policy: PolicyModel | None = None
    teacher = init_policy
    try:
        for r in range(config.iterations + 1):
            beta = 1.0 if r == 0 else config.beta ** r  # recorded, unused by the policy teacher
            started = time.process_time()
            tasks = _rollout_tasks(rollout_traces, config, r, beta)
            if teacher is not None:
                results = _collect_lockstep(video, prof, config, None, rollout_traces, tasks, r, tick, teacher=teacher)
                del xs[:max(0, len(xs) - (config.window_rounds - 1) * len(results))]
                del vs[:max(0, len(vs) - (config.window_rounds - 1) * len(results))]
            elif config.engine == "batch":
                results = _collect_lockstep(video, prof, config, policy, rollout_traces, tasks, r, tick)
            else:
                results = _collect(video, prof, config, policy, tasks, pool, tick)
            xs.extend(d.features for d in results)
            vs.extend(d.values for d in results)
            decisions = sum(d.values.shape[0] for d in results)
            agreement = (sum(d.agreed for d in results) / max(decisions, 1)
                         if policy is not None or init_policy is not None else None)
            x_all, v_all = np.concatenate(xs), np.concatenate(vs)
            meta = {**base_meta, "round": r, "samples": int(v_all.shape[0])}
            policy = fit_policy(x_all, v_all, video, config, seed=config.seed, metadata=meta, executor=pool,
                                init=(policy or init_policy) if config.warm_start else None)
            key, score = rank(policy)
            stats = RoundStats(round=r, beta=beta, samples=int(v_all.shape[0]),
                               rollout_qoe=float(np.mean([d.qoe for d in results])), agreement=agreement,
                               validation_qoe=score, policy_qoe=None if teacher is None else
                               float(np.mean([d.policy_qoe for d in results])))
            rounds.append(stats)
            agreed = "-" if agreement is None else f"{agreement:.3f}"
            played = (f"beta {beta:.3f}, {stats.samples} samples, rollout QoE {stats.rollout_qoe:.2f} (the mixture)"
                      if teacher is None else f"policy teacher, margin {teacher.switch_margin:g}, {stats.samples} "
                      f"samples, rollout QoE {stats.policy_qoe:.2f} ({stats.rollout_qoe:.2f} as played, with "
                      f"{config.explore:.0%} random qualities)")
            say(f"round {r}: {played}, "
                f"agreement {agreed}, validation QoE {score:.2f} ({time.process_time() - started:.0f} s CPU here)")
            if on_round is not None:
                on_round(r, policy)
            # A round is ranked at its best switch margin (the one it would ship with), not at margin 0.
            choice = best_margin(lambda m: (key, score) if m == 0 else rank(dataclasses.replace(policy, switch_margin=m)),
                                 config.switch_margins)
            choices.append(choice)
            if best is None or choice.score > best[0]:
                best = (choice.score, r, policy)
            scored = f"(by {config.selection.rule}: " + ", ".join(f"{m:g}: {k:.2f}" for m, k, _ in choice.scores) + ")"
            if teacher is not None:  # the next round rolls out this policy with its best margin
                teacher = dataclasses.replace(policy, switch_margin=choice.margin)
                say(f"round {r}: rolls out next with switch margin {choice.margin:g} {scored}")
            else:
                say(f"round {r}: best switch margin {choice.margin:g} {scored}")
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    assert best is not None
    _, best_round, model = best
    floor, choice, by_floor = best_guard(lambda m, f: rank(dataclasses.replace(model, switch_margin=m, safety_floor_s=f)),
                                         choices[best_round], config.safety_floors_s)
    ranked = choice.scores
    margin_scores = [(m, q) for m, _, q in ranked]
    margin, key, margin_score = choice.margin, choice.score, choice.mean_qoe
    if config.safety_floors_s != (0.0,):
        say(f"safety floor {floor:g} s (by {config.selection.rule}, each at its best margin: " +
            ", ".join(f"{f:g} s: {c.score:.2f} at {c.margin:g}" for f, c in by_floor.items()) + ")")
    say(f"switch margin {margin:g}: validation QoE {margin_score:.2f} (" +
        ", ".join(f"{m:g}: {q:.2f}" for m, q in margin_scores) + ")")
    if reference is not None:
        say(f"selected by {config.selection.describe()}: {key:.2f} (the initial policy {np.mean(reference):.2f}; " +
            ", ".join(f"{m:g}: {k:.2f}" for m, k, _ in ranked) + ")")
    history = [{"round": s.round, "beta": s.beta, "samples": s.samples, "rollout_qoe": round(s.rollout_qoe, 4),
                "agreement": None if s.agreement is None else round(s.agreement, 4),
                "validation_qoe": round(s.validation_qoe, 4), "switch_margin": c.margin,
                "selection_score_at_margin": round(c.score, 4),
                **({} if s.policy_qoe is None else {"policy_qoe": round(s.policy_qoe, 4)})} for s, c in zip(rounds, choices)]
    chosen = dataclasses.replace(model, switch_margin=margin, safety_floor_s=floor)
    versus = {} if init_policy is None else {"validation_vs_init": versus_init(
        validate_sessions(chosen), validate_sessions(init_policy), [t.name for t in validation], say)}
    final = dataclasses.replace(
        chosen, metadata={**model.metadata, **versus, "best_round": best_round, "rounds": history,
                  "switch_margin_validation_qoe": {f"{m:g}": round(q, 4) for m, q in margin_scores},
                  **({} if config.safety_floors_s == (0.0,) else {"safety_floor_scores": {
                      f"{f:g}": round(c.score, 4) for f, c in by_floor.items()}}),
                  **({} if reference is None else {"selection_score": round(key, 4), "selection_score_init":
                                                   round(float(np.mean(reference)), 4)})},
    )
    return TrainResult(model=final, rounds=tuple(rounds), best_round=best_round, margin_scores=tuple(margin_scores),
                       fit_traces=tuple(t.name for t in fit_traces),
                       validation_traces=tuple(t.name for t in validation))
