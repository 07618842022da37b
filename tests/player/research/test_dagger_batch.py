"""DAgger on the batch engine: the batched expert, lock-step rollouts and validation agree with the
one-session-at-a-time path, and `train` / `abrkit train` run on it (with extra traces)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from abr.algorithms.learned import encode_model, load_model
from abr.qoe import QOE_MODELS
from netsim import synthetic
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.research.dagger_batch import batch_expert_values, evaluate_lockstep, lockstep_rollouts
from player.research.expert import ExpertConfig, expert_values
from player.research.sim import PROFILES, LatencyLookup, LockStep
from player.research.train import TrainConfig, _Rollout, _RolloutBatch, _run_rollouts, evaluate_policy, train
from player.video import Video


class _State:
    """The scalar expert's view of one session of a lock-step state."""

    def __init__(self, segment_index: int, buffer_s: float, last_quality: int) -> None:
        self.segment_index, self.buffer_s = segment_index, buffer_s
        self.last_quality = None if last_quality < 0 else last_quality


@pytest.mark.parametrize("profile_name", ["pensieve", "default"])
def test_batched_expert_values_equal_the_scalar_experts_at_every_state(profile_name: str, video_10: Video,
                                                                        traces_4: list[Trace]) -> None:
    prof = PROFILES[profile_name]
    config = ExpertConfig(horizon_segments=4)
    offsets = np.array([0.0, 13.0, 41.5, 7.25])
    state = LockStep(video_10, prof, _links(traces_4, prof), LatencyLookup(traces_4, prof), offsets)
    rng = np.random.default_rng(3)
    checked = 0
    while not state.done:
        values = batch_expert_values(state, QOE_MODELS["lin"], horizon_segments=config.horizon_segments,
                                     grid_s=config.grid_s)
        for j, trace in enumerate(traces_4):
            scalar = _State(state.segment_index, float(state.buffer_s[j]), int(state.last_quality[j]))
            expected = expert_values(video_10, trace, prof, scalar, float(state.trace_time_s[j]), config)  # type: ignore[arg-type]
            np.testing.assert_allclose(values[j], expected, rtol=0, atol=1e-9)
            checked += 1
        state.step(rng.integers(0, len(video_10.ladder), len(traces_4)))
    assert checked == len(traces_4) * video_10.segment_count


def _links(traces: list[Trace], prof: object) -> object:
    from netsim.link import LinkBatch

    return LinkBatch(traces, payload_factor=prof.payload_factor)  # type: ignore[attr-defined]


def test_lockstep_expert_rollouts_are_the_session_engines(video_10: Video, traces_4: list[Trace]) -> None:
    prof = PROFILES["pensieve"]
    expert = ExpertConfig(horizon_segments=4)
    offsets = [0.0, 22.0, 5.5, 60.0]
    batch = lockstep_rollouts(video_10, prof, traces_4, range(len(traces_4)), offsets, policy=None, beta=1.0,
                              label_fraction=1.0, rng=np.random.default_rng(0), model=QOE_MODELS["lin"],
                              horizon_segments=expert.horizon_segments, grid_s=expert.grid_s)
    tasks = tuple(_Rollout(trace=t, offset_s=o, beta=1.0, seed=(0, 0, j, 0)) for j, (t, o) in enumerate(zip(traces_4, offsets)))
    singles = _run_rollouts(_RolloutBatch(video=video_10, prof=prof, expert=expert, policy=None, label_fraction=1.0,
                                          rollouts=tasks))
    for j, single in enumerate(singles):
        rows = np.flatnonzero(batch.session == j)
        assert rows.size == single.values.shape[0] == video_10.segment_count - 1  # every decision after the first
        for k, row in enumerate(rows):
            # The engines add the same times in another order: equal up to rounding, and the two rollouts
            # play the same qualities until the expert's best is a tie that rounding breaks either way.
            np.testing.assert_allclose(batch.features[row], single.features[k], rtol=0, atol=1e-9)
            np.testing.assert_allclose(batch.values[row], single.values[k], rtol=0, atol=1e-6)
            mine, theirs = np.argmax(batch.values[row]), np.argmax(single.values[k])
            if mine != theirs:
                assert single.values[k][mine] == pytest.approx(single.values[k][theirs], abs=1e-6)
                break
        else:
            assert batch.qoe[j] == pytest.approx(single.qoe, abs=1e-9)


def test_lockstep_rollouts_append_extra_columns_to_every_decision(video_10: Video, traces_4: list[Trace]) -> None:
    prof, traces, offsets = PROFILES["pensieve"], traces_4[:2], [0.0, 22.0]

    def rollouts(**extra: object) -> object:
        return lockstep_rollouts(video_10, prof, traces, range(2), offsets, policy=None, beta=1.0, label_fraction=1.0,
                                 rng=np.random.default_rng(0), model=QOE_MODELS["lin"], horizon_segments=2, grid_s=1.0,
                                 **extra)

    plain = rollouts()
    more = rollouts(extra_columns=lambda s: np.stack([s.trace_time_s, np.full(2, float(s.segment_index))], axis=1))
    assert more.features.shape == (plain.features.shape[0], plain.features.shape[1] + 2)
    np.testing.assert_array_equal(more.features[:, :-2], plain.features)
    np.testing.assert_array_equal(more.values, plain.values)
    np.testing.assert_array_equal(more.features[more.session == 1, -1], np.arange(1, video_10.segment_count))
    assert more.features[more.session == 1, -2][0] > offsets[1]  # the trace time of the second request


def test_lockstep_validation_scores_what_the_session_engine_scores(video_10: Video, traces_4: list[Trace]) -> None:
    prof = PROFILES["pensieve"]
    result = train(video_10, traces_4, prof, TrainConfig(iterations=0, max_epochs=20, ensemble=1, engine="batch",
                                                          validation_fraction=0.0,
                                                          expert=ExpertConfig(horizon_segments=3)))
    offsets = [[3.0, 50.0]] * len(traces_4)
    batch = evaluate_lockstep(result.model, video_10, prof, traces_4, QOE_MODELS["lin"], offsets_s=offsets)
    single = evaluate_policy(result.model, video_10, traces_4, prof, offsets_s=offsets)
    np.testing.assert_allclose(batch, single, atol=1e-9)


def test_batch_training_with_extra_traces_is_reproducible_and_validates_on_real_traces_only(
        video_10: Video, traces_4: list[Trace]) -> None:
    extra = [dataclasses.replace(synthetic.constant(rate_bps, duration_s=120.0), name=name)
             for name, rate_bps in (("fast", 3e6), ("slow", 0.6e6))]
    config = TrainConfig(iterations=1, max_epochs=20, ensemble=2, engine="batch", validation_fraction=0.25,
                         expert=ExpertConfig(horizon_segments=3))
    one = train(video_10, traces_4, PROFILES["pensieve"], config, extra_traces=extra)
    again = train(video_10, traces_4, PROFILES["pensieve"], config, extra_traces=extra)
    plain = train(video_10, traces_4, PROFILES["pensieve"], config)
    assert encode_model(one.model) == encode_model(again.model) != encode_model(plain.model)
    assert not {"fast", "slow"} & set(one.validation_traces) and len(one.validation_traces) == 1
    # Every round rolls out the 3 fit traces and both extra ones (9 decisions each after the fixed first).
    assert [r.samples for r in one.rounds] == [5 * 9, 10 * 9]
    assert one.model.metadata["engine"] == "batch" and one.model.metadata["extra_traces"] == 2


def test_batch_engine_refuses_profiles_it_cannot_run(video_10: Video, traces_4: list[Trace]) -> None:
    prof = dataclasses.replace(PROFILES["default"], session=dataclasses.replace(PROFILES["default"].session,
                                                                                 startup_threshold_s=10.0))
    with pytest.raises(ValueError, match="engine 'session'"):
        train(video_10, traces_4, prof, TrainConfig(iterations=0, engine="batch"))
    with pytest.raises(ValueError, match="engine"):
        TrainConfig(engine="gpu")


def test_abrkit_train_takes_extra_traces_and_records_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gen = tmp_path / "gen"
    assert main(["trace", "generate", str(gen), "--count", "2", "--seed", "4"]) == 0
    out = tmp_path / "model.json"
    args = ["train", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR), "--out", str(out), "--iterations", "0",
            "--horizon", "3", "--ensemble", "1", "--epochs", "10", "--no-progress"]
    assert main([*args, "--extra-traces", str(gen)]) == 0
    model = load_model(out)
    assert model.metadata["extra_traces"] == 2 and "--extra-traces" in model.metadata["command"]
    assert "--engine batch" in model.metadata["command"]
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([*args, "--extra-traces", str(empty)]) != 0
    assert "no trace files found" in capsys.readouterr().err
