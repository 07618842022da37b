"""Model selection with the tail weighted, and training traces with falling bandwidth."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from abr.algorithms.learned import load_model
from netsim.trace import Trace
from player.research.expert import ExpertConfig
from player.research.falling import FallingSpec, falling_copies
from player.research.folds import split_traces
from player.research.selection import Selection
from player.research.sim import PROFILES
from player.research.train import TrainConfig, train
from player.video import Video


def test_tail_rule_counts_the_worst_differences_again_and_the_reference_scores_its_mean() -> None:
    reference = np.array([50.0, 40.0, 30.0, 20.0, 10.0, 60.0, 55.0, 45.0, 35.0, 25.0])
    assert Selection().score(reference + 1.0) == pytest.approx(np.mean(reference) + 1.0)  # "mean": the mean
    tail = Selection(rule="tail", share=0.1, weight=2.0)
    assert tail.score(reference, reference) == pytest.approx(np.mean(reference))
    small_gains = reference + np.array([1.0] * 9 + [-8.0])  # mean +0.1: the mean would take it
    assert np.mean(small_gains) > np.mean(reference) and tail.score(small_gains, reference) < np.mean(reference)
    assert tail.score(small_gains, reference) == pytest.approx(np.mean(reference) + (9 - 8 - 8) / 10)
    assert tail.score(reference + 1.0, reference) == pytest.approx(np.mean(reference) + 1.1)
    with pytest.raises(ValueError, match="rule"):
        Selection(rule="median")
    with pytest.raises(ValueError, match="share"):
        Selection(rule="tail", share=0)
    with pytest.raises(ValueError, match="weight"):
        Selection(rule="tail", weight=0.5)
    with pytest.raises(ValueError, match="sessions"):
        tail.score(reference, reference[:3])


def test_training_with_the_tail_rule_records_its_score_against_the_initial_policy(video_10: Video,
                                                                                  traces_4: list[Trace]) -> None:
    config = TrainConfig(iterations=1, max_epochs=10, ensemble=1, engine="batch", validation_fraction=0.25,
                         validation_fold=2, teacher="policy", switch_margins=(0.0, 0.4), selection=Selection(rule="tail"))
    lines: list[str] = []
    result = train(video_10, traces_4, PROFILES["pensieve"], config, init_policy=load_model(), log=lines.append)
    meta = result.model.metadata
    assert meta["selection"] == {"rule": "tail", "share": 0.1, "weight": 2.0}
    assert isinstance(meta["selection_score"], float) and isinstance(meta["selection_score_init"], float)
    assert "worst_tenth_sessions" in meta["validation_vs_init"]
    fit, validation = split_traces(traces_4, 0.25, 0, fold=2)  # a cross-validation fold: another held-out trace
    assert result.validation_traces == tuple(t.name for t in validation) != tuple(t.name for t in split_traces(
        traces_4, 0.25, 0)[1]) and result.fit_traces == tuple(t.name for t in fit) and meta["validation_fold"] == 2
    # The margin the next round rolls out is chosen by the tail scores too: for the best round they are the
    # scores the final selection prints (same policy, sessions and reference), and the best of them wins.
    rollout = [line for line in lines if line.startswith(f"round {result.best_round}: rolls out next")]
    assert len(rollout) == 1 and "(by tail: " in rollout[0]
    scores = dict(pair.split(": ") for pair in rollout[0].split("(by tail: ")[1].rstrip(")").split(", "))
    selected = next(line for line in lines if line.startswith("selected by"))
    assert selected.endswith("; " + ", ".join(f"{m}: {k}" for m, k in scores.items()) + ")")
    best = max(scores, key=lambda m: (float(scores[m]), -float(m)))
    assert rollout[0].startswith(f"round {result.best_round}: rolls out next with switch margin {best} ")


def test_split_seed_keeps_the_validation_sessions_of_another_seed(video_10: Video, traces_4: list[Trace]) -> None:
    """Seed copies of a recipe (`--seed S --split-seed 0`) differ in rollouts and fits only: they hold out
    the same traces from the same offsets, so the initial policy scores the same validation mean."""
    config = TrainConfig(iterations=0, max_epochs=10, ensemble=1, engine="batch", validation_fraction=0.25,
                         validation_offsets=2, teacher="policy", switch_margins=(0.0,), selection=Selection(rule="tail"))
    init = load_model()
    runs = {name: train(video_10, traces_4, PROFILES["pensieve"], dataclasses.replace(config, **change), init_policy=init)
            for name, change in (("base", {}), ("copy", {"seed": 3, "split_seed": 0}), ("plain", {"seed": 3}))}
    base, copy, plain = (runs[n] for n in ("base", "copy", "plain"))
    assert copy.validation_traces == base.validation_traces != plain.validation_traces
    assert copy.fit_traces == base.fit_traces
    assert copy.model.metadata["selection_score_init"] == base.model.metadata["selection_score_init"]
    assert plain.model.metadata["selection_score_init"] != base.model.metadata["selection_score_init"]
    assert copy.model.metadata["split_seed"] == 0 and "split_seed" not in base.model.metadata
    assert copy.model.metadata["seed"] == 3 and [w.tolist() for w in copy.model.coefs_] != [
        w.tolist() for w in base.model.coefs_]  # its own rollouts and fit
    assert TrainConfig(seed=3).held_out_seed == 3 and TrainConfig(seed=3, split_seed=0).held_out_seed == 0


def test_falling_copies_keep_the_trace_and_lay_seeded_drops_over_it(traces_4: list[Trace]) -> None:
    spec = FallingSpec(normal_s=(20.0, 40.0), drop_s=(5.0, 10.0), factor=(0.1, 0.2))
    copies = falling_copies(traces_4, 2, seed=5, spec=spec)
    assert [c.name for c in copies[:2]] == [f"{traces_4[0].name}~falling0", f"{traces_4[0].name}~falling1"]
    again = falling_copies(traces_4, 2, seed=5, spec=spec)
    assert all(np.array_equal(a.bandwidth_bps, b.bandwidth_bps) for a, b in zip(copies, again))
    for copy, source in zip(copies, [t for t in traces_4 for _ in range(2)]):
        assert copy.durations_s.sum() == pytest.approx(source.durations_s.sum())
        ends = np.cumsum(copy.durations_s) - copy.durations_s / 2  # each piece's middle, on the source
        original = source.bandwidth_bps[np.minimum(np.searchsorted(np.cumsum(source.durations_s), ends, side="right"),
                                                   len(source.durations_s) - 1)]
        ratio = copy.bandwidth_bps[original > 0] / original[original > 0]
        assert np.all(ratio <= 1 + 1e-12) and np.any(ratio == 1) and ratio.min() < 0.2 + 1e-12
        assert np.all((ratio > 0.1 - 1e-12))
    assert not np.array_equal(copies[0].bandwidth_bps, copies[1].bandwidth_bps)
    with pytest.raises(ValueError, match="factor"):
        FallingSpec(factor=(0.5, 2.0))


def test_abrkit_train_refuses_bad_selection_and_falling_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from player.bundled import ENVIVIO_DIR, TRACES_DIR
    from player.cli import main

    args = ["train", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR), "--out", str(tmp_path / "m.json"),
            "--no-progress"]
    assert main([*args, "--select", "tail", "--tail-share", "0"]) != 0
    assert "--select: selection share must be in (0, 1]" in capsys.readouterr().err
    assert main([*args, "--falling-copies", "-1"]) != 0
    assert "--falling-copies must be >= 0" in capsys.readouterr().err
    assert main([*args, "--falling-depth", "0.3:0.7"]) != 0
    assert "--falling-depth and --falling-every shape the drops of --falling-copies, which is 0" in capsys.readouterr().err
    assert main([*args, "--falling-copies", "1", "--falling-depth", "0.5:2"]) != 0
    assert "--falling-depth is a fraction of the bandwidth (<= 1), got (0.5, 2.0)" in capsys.readouterr().err
    assert main([*args, "--falling-copies", "1", "--falling-every", "60:30"]) != 0
    assert "--falling-every must be a range 0 < low <= high, got (60.0, 30.0)" in capsys.readouterr().err
    assert main([*args, "--falling-copies", "1", "--falling-every", "soon"]) != 0
    assert "--falling-every must be a number or lo:hi, got 'soon'" in capsys.readouterr().err
    assert main([*args, "--validation-fold", "9"]) != 0
    assert "--validation-fold: validation fold 9 does not exist: 4 traces" in capsys.readouterr().err
    assert main([*args, "--safety-floors", "0,soon"]) != 0
    assert "--safety-floors must be seconds separated by commas, got '0,soon'" in capsys.readouterr().err
    assert main([*args, "--safety-floors", "0,-2"]) != 0
    assert "--safety-floors must be finite values >= 0 s, got '0,-2'" in capsys.readouterr().err
    assert main([*args, "--validation-fold", "-1"]) != 0
    assert "--validation-fold must be >= 0, got -1" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()


def test_abrkit_train_shapes_the_falling_drops_from_its_options() -> None:
    from player.cli import build_parser
    from player.commands.train import _command_line, falling_spec

    base = ["train", "--traces", "T", "--video", "V", "--out", "m.json", "--falling-copies", "2"]
    args = build_parser().parse_args([*base, "--falling-depth", "0.3:0.7", "--falling-every", "90",
                                      "--validation-fold", "3"])
    assert falling_spec(args) == FallingSpec(factor=(0.3, 0.7), normal_s=(90.0, 90.0))
    assert "--falling-copies 2 --falling-depth 0.3:0.7 --falling-every 90 --validation-fold 3" in _command_line(args)
    assert falling_spec(build_parser().parse_args(base)) == FallingSpec()
    assert "--safety-floors" not in _command_line(build_parser().parse_args(base))
    assert _command_line(build_parser().parse_args([*base, "--safety-floors", "0,4,8"])).endswith(" --safety-floors 0,4,8")


@pytest.mark.parametrize("teacher", ["expert", "policy"])
def test_training_ranks_each_round_at_its_best_switch_margin(video_10: Video, traces_4: list[Trace], teacher: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # Validation scores by (round, switch margin): round 1 is ahead at margin 0, round 0 at margin 0.4 is the
    # best of all. Ranking rounds by their margin-0 score (until wave 11) kept round 1 and never saw it.
    import player.research.dagger_batch as dagger_batch

    table = {(0, 0.0): 10.0, (0, 0.4): 15.0, (1, 0.0): 12.0, (1, 0.4): 11.0}

    def scored(policy: object, video: Video, prof: object, traces: list[Trace], model: object, *,
               offsets_s: list[list[float]]) -> np.ndarray:
        meta = policy.metadata  # type: ignore[attr-defined]
        value = table.get((meta.get("round", -1), policy.switch_margin), 0.0)  # type: ignore[attr-defined]
        return np.full(sum(1 + len(o) for o in offsets_s), value)

    monkeypatch.setattr(dagger_batch, "evaluate_lockstep", scored)
    config = TrainConfig(iterations=1, max_epochs=5, ensemble=1, engine="batch", validation_fraction=0.25,
                         teacher=teacher, switch_margins=(0.0, 0.4), expert=ExpertConfig(horizon_segments=3))
    lines: list[str] = []
    result = train(video_10, traces_4, PROFILES["pensieve"], config, log=lines.append,
                   init_policy=load_model() if teacher == "policy" else None)
    assert (result.best_round, result.model.switch_margin) == (0, 0.4)
    assert dict(result.margin_scores) == {0.0: 10.0, 0.4: 15.0}
    assert [r["switch_margin"] for r in result.model.metadata["rounds"]] == [0.4, 0.0]
    assert "switch margin 0.4: validation QoE 15.00 (0: 10.00, 0.4: 15.00)" in lines


def test_a_safety_floor_steps_a_greedy_policy_down_before_a_collapse_stalls_it(video_10: Video) -> None:
    from abr import features
    from abr.algorithms.learned import Learned, PolicyModel
    from abr.qoe import QOE_MODELS
    from abr.types import Decision, Observation
    from netsim import synthetic
    from player.research.sim import run_session

    ladder, schema = video_10.ladder, features.schema(len(video_10.ladder))
    greedy = PolicyModel(  # scores every rung by its index whatever it sees: holds the top rung into anything
        feature_schema=schema, ladder_bitrates_bps=ladder.bitrates_bps, segment_duration_s=ladder.segment_duration_s,
        sklearn_version="test", activation="relu", input_mean_=np.zeros(schema.size), input_scale_=np.ones(schema.size),
        coefs_=(np.zeros((schema.size, 4)), np.zeros((4, len(ladder)))),
        intercepts_=(np.zeros(4), np.arange(len(ladder), dtype=np.float64)))
    collapsing = synthetic.step([8e6, 4e5], step_s=16.0)  # 16 s at 8 Mbit/s, 16 s at 0.4 Mbit/s, again

    class Recorded:
        name = "learned"

        def __init__(self, inner: Learned) -> None:
            self.inner, self.seen = inner, []  # type: ignore[var-annotated]

        def decide(self, obs: Observation) -> Decision:
            decision = self.inner.decide(obs)
            self.seen.append((obs.buffer_s, obs.last_quality, decision.quality))
            return decision

    played = {}
    for floor in (0.0, 8.0):
        abr = Recorded(Learned(dataclasses.replace(greedy, safety_floor_s=floor)))
        played[floor] = (run_session("learned", video_10, collapsing, PROFILES["pensieve"], abr=abr,
                                     models=(QOE_MODELS["lin"],)).metrics, abr.seen)
    unguarded, (guarded, seen) = played[0.0][0], played[8.0]
    assert all(q == 5 for _, _, q in played[0.0][1])
    assert unguarded.rebuffer_s > 1.0 and guarded.rebuffer_s < unguarded.rebuffer_s  # 1.88 s, then none
    below = [(last, q) for b, last, q in seen if b < 8.0 and last is not None]
    assert below and all(q == max(last - 1, 0) for last, q in below)
    assert all(q == 5 for b, last, q in seen if b >= 8.0 or last is None)


def test_training_chooses_the_safety_floor_with_the_switch_margin(video_10: Video, traces_4: list[Trace],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import player.research.dagger_batch as dagger_batch

    # Round 0 is best; with a 4 s floor its best margin moves from 0.4 to 0 and scores higher still.
    table = {(0, 0.0, 0.0): 10.0, (0, 0.4, 0.0): 15.0, (1, 0.0, 0.0): 12.0, (1, 0.4, 0.0): 11.0,
             (0, 0.0, 4.0): 16.0, (0, 0.4, 4.0): 14.0}

    def scored(policy: object, video: Video, prof: object, traces: list[Trace], model: object, *,
               offsets_s: list[list[float]]) -> np.ndarray:
        key = (policy.metadata.get("round", -1), policy.switch_margin, policy.safety_floor_s)  # type: ignore[attr-defined]
        return np.full(sum(1 + len(o) for o in offsets_s), table.get(key, 0.0))

    monkeypatch.setattr(dagger_batch, "evaluate_lockstep", scored)
    config = TrainConfig(iterations=1, max_epochs=5, ensemble=1, engine="batch", validation_fraction=0.25,
                         switch_margins=(0.0, 0.4), safety_floors_s=(0.0, 4.0), expert=ExpertConfig(horizon_segments=3))
    lines: list[str] = []
    result = train(video_10, traces_4, PROFILES["pensieve"], config, log=lines.append)
    model = result.model
    assert (result.best_round, model.switch_margin, model.safety_floor_s) == (0, 0.0, 4.0)
    assert dict(result.margin_scores) == {0.0: 16.0, 0.4: 14.0}
    assert model.metadata["safety_floor_scores"] == {"0": 15.0, "4": 16.0}
    assert "safety floor 4 s (by mean, each at its best margin: 0 s: 15.00 at 0.4, 4 s: 16.00 at 0)" in lines
    assert TrainConfig(safety_floors_s=(0.0, 4.0)).safety_floors_s == (0.0, 4.0)
    with pytest.raises(ValueError, match="safety_floors_s"):
        TrainConfig(safety_floors_s=(-1.0,))
