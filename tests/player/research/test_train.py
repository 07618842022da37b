"""Training the learned ABR: the expert, the DAgger loop, reproducibility and `abrkit train`."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

import abr
from abr.algorithms.learned import load_model
from abr.types import Decision, Observation
from netsim import synthetic
from netsim.formats import load_traces
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.research.expert import ExpertConfig, expert_values, session_trace_time_s
from player.research.folds import fold_count, split_traces
from player.research.optimal import OptimalConfig, offline_optimal
from player.research.sim import PROFILES, run_session
from player.research.train import TrainConfig, fit_policy, train
from player.video import Video, load_video


@pytest.fixture(scope="module")
def short_video() -> Video:
    return load_video(ENVIVIO_DIR).truncated(8)


@pytest.fixture(scope="module")
def bundled_traces() -> list[Trace]:
    return load_traces([TRACES_DIR])


class _Expert:
    """Plays the expert's best quality, re-planning from the session's exact state at every segment."""

    name = "expert"

    def __init__(self, video: Video, trace: Trace, profile_name: str, offset_s: float, config: ExpertConfig) -> None:
        self.args = (video, trace, PROFILES[profile_name])
        self.offset_s, self.config = offset_s, config

    def decide(self, obs: Observation) -> Decision:
        video, trace, prof = self.args
        values = expert_values(video, trace, prof, obs, session_trace_time_s(obs, self.offset_s, prof), self.config)
        return Decision(quality=int(np.argmax(values)), reason="expert")


@pytest.mark.parametrize("profile_name", ["pensieve", "default"])
def test_expert_replanning_over_the_whole_video_reaches_the_offline_optimum(
        profile_name: str, short_video: Video, bundled_traces: list[Trace]) -> None:
    # The expert's state (trace time, buffer, last quality) must be the session's exactly, or re-planning
    # from it every segment would not land on the optimum it planned. With a free first segment
    # (profile "default") the whole-session DP can miss paths whose longer startup banked buffer, which
    # the expert (which plays segment 0 itself, then plans from an explicit buffer) finds: >= there.
    prof = PROFILES[profile_name]
    config = ExpertConfig(horizon_segments=short_video.segment_count, grid_s=0.02)
    for trace, offset_s in ((bundled_traces[0], 0.0), (bundled_traces[2], 37.5)):
        played = run_session("expert", short_video, trace, prof, offset_s=offset_s,
                             abr=_Expert(short_video, trace, profile_name, offset_s, config)).qoe_lin
        optimum = offline_optimal(short_video, trace.rotated(offset_s), prof, config=OptimalConfig(grid_s=0.02)).qoe
        if prof.session.initial_quality is None:
            assert played >= optimum - 0.05
        else:
            assert played == pytest.approx(optimum, abs=0.05)


def test_expert_values_peak_at_the_windowed_optimum(short_video: Video, bundled_traces: list[Trace]) -> None:
    prof = PROFILES["pensieve"]
    config = ExpertConfig(horizon_segments=4, grid_s=0.02)
    for buffer_s, last in ((0.5, 4), (9.0, 1), (30.0, 5)):
        obs = Observation(time_s=20.0, buffer_s=buffer_s, segment_index=3, segment_count=8, ladder=short_video.ladder,
                          last_quality=last)
        values = expert_values(short_video, bundled_traces[1], prof, obs, 20.0 - 3 * prof.rtt_s, config)
        window = offline_optimal(short_video.truncated(7), bundled_traces[1], prof, config=OptimalConfig(grid_s=0.02),
                                 start_segment=3, start_trace_time_s=20.0 - 3 * prof.rtt_s, start_buffer_s=buffer_s,
                                 start_quality=last)
        assert values.shape == (6,)
        assert values.max() == pytest.approx(window.qoe, abs=0.05)


def test_split_holds_out_a_seeded_share_of_traces(bundled_traces: list[Trace]) -> None:
    traces = [dataclasses.replace(t, name=f"t{i}") for i in range(10) for t in bundled_traces[:1]]
    fit, validation = split_traces(traces, 0.2, seed=4)
    assert len(validation) == 2 and not {t.name for t in fit} & {t.name for t in validation}
    assert [t.name for t in split_traces(traces, 0.2, seed=4)[1]] == [t.name for t in validation]
    assert split_traces(traces[:1], 0.2, seed=4) == (traces[:1], traces[:1])  # nothing to hold out


def test_validation_folds_hold_out_every_trace_once_and_fold_0_is_the_old_split(bundled_traces: list[Trace]) -> None:
    traces = [dataclasses.replace(t, name=f"t{i:02d}") for i in range(23) for t in bundled_traces[:1]]
    assert fold_count(23, 0.2) == 4 and fold_count(1, 0.2) == 1 and fold_count(23, 0.0) == 1
    folds = [split_traces(traces, 0.2, seed=4, fold=k) for k in range(4)]
    # fold 0 is the split every model before wave 9 was trained with (measured with that code)
    assert [t.name for t in folds[0][1]] == ["t04", "t06", "t11", "t13", "t14"] == [t.name for t in split_traces(
        traces, 0.2, seed=4)[1]]
    held = [t.name for _, validation in folds for t in validation]
    assert sorted(held) == [t.name for t in traces] and [len(v) for _, v in folds] == [5, 5, 5, 8]
    for fit, validation in folds:
        assert len(fit) + len(validation) == 23 and not {t.name for t in fit} & {t.name for t in validation}
    with pytest.raises(ValueError, match=r"validation fold 4 does not exist: 23 traces .* make 4 folds \(0..3\)"):
        split_traces(traces, 0.2, seed=4, fold=4)
    with pytest.raises(ValueError, match="validation_fold must be >= 0"):
        TrainConfig(validation_fold=-1)


def test_fit_policy_learns_the_best_rung_and_never_picks_unseen_classes(short_video: Video) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 40))
    best = np.where(x[:, 0] > 0, 1, 3)  # only rungs 1 and 3 are ever best
    values = np.zeros((200, 6))
    values[np.arange(200), best] = 1.0
    action = fit_policy(x, values, short_video, TrainConfig(target="action", max_epochs=100), seed=0)
    assert set(np.unique(action.predict(x))) <= {1, 3} and action.coefs_[-1].shape[1] == 6
    regret = fit_policy(x, values, short_video, TrainConfig(target="regret", max_epochs=100), seed=0)
    assert np.mean(regret.predict(x) == best) > 0.9 and np.mean(action.predict(x) == best) > 0.9


def test_fit_policy_takes_named_extra_columns_for_research(short_video: Video) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 42))
    best = np.where(x[:, 41] > 0, 2, 4)  # only the second extra column tells the best rung
    values = np.zeros((200, 6))
    values[np.arange(200), best] = 1.0
    with pytest.raises(ValueError, match=r"need \(n, 40\) features"):
        fit_policy(x, values, short_video, TrainConfig(max_epochs=100), seed=0)
    model = fit_policy(x, values, short_video, TrainConfig(max_epochs=100), seed=0, extra_names=("oracle", "hint"))
    assert model.feature_schema.names[-2:] == ("oracle", "hint") and model.feature_schema.size == 42
    assert np.mean(model.predict(x) == best) > 0.9


def test_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="target"):
        TrainConfig(target="reward")
    with pytest.raises(ValueError, match="horizon"):
        ExpertConfig(horizon_segments=0)
    with pytest.raises(ValueError, match="validation_fraction"):
        TrainConfig(validation_fraction=1.0)


def test_same_seed_gives_the_same_model_for_any_worker_count(short_video: Video,
                                                              bundled_traces: list[Trace]) -> None:
    config = TrainConfig(iterations=1, rollouts_per_trace=1, max_epochs=30, expert=ExpertConfig(horizon_segments=4))
    one = train(short_video, bundled_traces, PROFILES["pensieve"], config)
    two = train(short_video, bundled_traces, PROFILES["pensieve"], dataclasses.replace(config, workers=2))
    other = train(short_video, bundled_traces, PROFILES["pensieve"], dataclasses.replace(config, seed=1))
    from abr.algorithms.learned import encode_model

    assert encode_model(one.model) == encode_model(two.model) != encode_model(other.model)
    assert [r.round for r in one.rounds] == [0, 1] and one.rounds[0].agreement is None


def test_abrkit_train_writes_a_model_that_abrkit_sim_runs(tmp_path: Path, shared_dir: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    train_dir = tmp_path / "traces"
    train_dir.mkdir()
    for name in sorted(p.name for p in (shared_dir / "traces/pensieve/train").iterdir() if p.name != "README.md")[:3]:
        (train_dir / name).write_bytes((shared_dir / "traces/pensieve/train" / name).read_bytes())
    out = tmp_path / "model.json"
    video = str(shared_dir / "video/pensieve-envivio")
    code = main(["train", "--traces", str(train_dir), "--video", video, "--out", str(out), "--seed", "7",
                 "--split-seed", "0", "--iterations", "1", "--horizon", "4", "--validation-offsets", "1", "--keep-rounds",
                 str(tmp_path / "rounds")])
    captured = capsys.readouterr()
    assert code == 0 and "wrote" in captured.out
    assert "training: 4/4 rollouts (100%)" in captured.err  # progress lines although stderr is no terminal
    model = load_model(out)
    assert model.metadata["command"].startswith("abrkit train --traces ")
    assert model.metadata["seed"] == 7 and len(model.metadata["rounds"]) == 2
    assert model.metadata["split_seed"] == 0 and " --seed 7 --split-seed 0 " in model.metadata["command"]
    assert model.metadata["validation_offsets"] == 1
    rounds = [load_model(tmp_path / "rounds" / f"round-{r}.json") for r in (0, 1)]
    assert [r.metadata["round"] for r in rounds] == [0, 1] and all(r.switch_margin == 0 for r in rounds)
    best = rounds[model.metadata["best_round"]]
    assert [w.tolist() for w in best.coefs_] == [w.tolist() for w in model.coefs_]
    assert main(["sim", "--abr", f"learned:{out},bba", "--traces", str(ENVIVIO_DIR.parent / "traces"), "--video", video,
                 "--profile", "pensieve", "--no-optimal"]) == 0
    assert "learned:" in capsys.readouterr().out


def test_constant_link_policy_is_sane(short_video: Video) -> None:
    # Trained on a fast constant link, the policy must pick the top rung there.
    traces = [synthetic.constant(20e6, duration_s=200.0)] * 2
    result = train(short_video, traces, PROFILES["pensieve"],
                   TrainConfig(iterations=0, max_epochs=100, expert=ExpertConfig(horizon_segments=3)))
    played = run_session("learned", short_video, traces[0], PROFILES["pensieve"],
                         abr=abr.make("learned", model=result.model))
    assert played.qualities[2:].min() == 5
