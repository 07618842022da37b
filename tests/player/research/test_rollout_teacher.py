"""The policy teacher: each quality's value under a policy is the QoE that policy then plays, and
`train` / `abrkit train` run approximate policy iteration from a given model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abr.algorithms.learned import Learned, encode_model, load_model
from abr.qoe import QOE_MODELS
from netsim.link import LinkBatch
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.research.rollout_teacher import clone_sessions, policy_rollouts, policy_values
from player.research.sim import PROFILES, LatencyLookup, LockStep
from player.research.train import TrainConfig, train
from player.video import Video


def _state(video: Video, traces: list[Trace], offsets: list[float]) -> LockStep:
    prof = PROFILES["pensieve"]
    return LockStep(video, prof, LinkBatch(traces, payload_factor=prof.payload_factor), LatencyLookup(traces, prof),
                    np.asarray(offsets))


def test_the_value_of_the_policys_own_choice_is_the_qoe_it_then_plays(video_10: Video,
                                                                      traces_4: list[Trace]) -> None:
    policy = Learned(load_model())
    model = QOE_MODELS["lin"]
    bitrates = np.asarray(video_10.ladder.bitrates_bps, dtype=np.float64)
    for stop in (1, 4, 8):
        state = _state(video_10, traces_4, [0.0, 17.0, 55.5, 3.25])
        while state.segment_index < stop:
            fixed = state.fixed_quality()
            state.step(fixed if fixed is not None else policy.decide_batch(state.observation()))
        buffer_before = state.buffer_s.copy()
        values = policy_values(state, policy, model)
        assert np.array_equal(state.buffer_s, buffer_before) and state.segment_index == stop  # clones only
        chosen = policy.decide_batch(state.observation())
        while not state.done:
            state.step(policy.decide_batch(state.observation()))
        played = model.scores(bitrates[state.qualities], state.rebuffer_s, bitrates)
        np.testing.assert_allclose(values[np.arange(len(traces_4)), chosen], played, rtol=0, atol=1e-9)
        assert np.all(np.ptp(values, axis=1) > 0)  # the choice matters somewhere on every session


def test_clones_copy_one_session_each_and_play_on_independently(video_10: Video, traces_4: list[Trace]) -> None:
    state = _state(video_10, traces_4, [0.0, 9.0, 21.0, 40.0])
    state.step(np.zeros(4, dtype=np.int64))
    state.step(np.array([1, 2, 3, 4]))
    clone = clone_sessions(state, np.array([2, 2, 0]))
    assert np.array_equal(clone.buffer_s, state.buffer_s[[2, 2, 0]])
    assert np.array_equal(clone.qualities[:2], state.qualities[:2, [2, 2, 0]])
    clone.step(np.array([5, 0, 5]))
    assert clone.buffer_s[0] < clone.buffer_s[1] and state.segment_index == 2 and state.qualities[2].sum() == 0


def test_rollouts_report_the_policys_own_qoe_beside_the_explored_sessions(video_10: Video,
                                                                        traces_4: list[Trace]) -> None:
    model, policy = QOE_MODELS["lin"], load_model()
    offsets = [0.0, 17.0, 55.5, 3.25]
    data = policy_rollouts(video_10, PROFILES["pensieve"], traces_4, range(4), offsets, policy=Learned(policy),
                           model=model, explore=0.5, rng=np.random.default_rng(3))
    state = _state(video_10, traces_4, offsets)  # the same sessions, played by the policy alone
    state.play_out(Learned(policy))
    bitrates = np.asarray(video_10.ladder.bitrates_bps, dtype=np.float64)
    assert data.policy_qoe is not None
    np.testing.assert_allclose(data.policy_qoe, model.scores(bitrates[state.qualities], state.rebuffer_s, bitrates),
                               rtol=0, atol=1e-9)
    assert not np.allclose(data.policy_qoe, data.qoe)  # half the decisions random: the played QoE differs


def test_policy_teacher_training_is_reproducible_and_fits_a_window_of_rounds(video_10: Video,
                                                                           traces_4: list[Trace]) -> None:
    init = load_model()
    config = TrainConfig(iterations=2, max_epochs=20, ensemble=1, engine="batch", validation_fraction=0.25,
                         teacher="policy", window_rounds=2, switch_margins=(0.0, 0.4))
    one = train(video_10, traces_4, PROFILES["pensieve"], config, init_policy=init)
    again = train(video_10, traces_4, PROFILES["pensieve"], config, init_policy=init)
    assert encode_model(one.model) == encode_model(again.model)
    # 3 fit traces, 9 decisions each after the fixed first; round 2 drops round 0's data.
    assert [r.samples for r in one.rounds] == [27, 54, 54]
    assert one.model.metadata["teacher"] == "policy" and len(one.model.metadata["init_policy_sha256_16"]) == 16
    assert all(r.agreement is not None and r.policy_qoe is not None for r in one.rounds)
    assert one.model.metadata["rounds"][0]["policy_qoe"] == round(one.rounds[0].policy_qoe, 4)
    with pytest.raises(ValueError, match="initial policy"):
        train(video_10, traces_4, PROFILES["pensieve"], config)
    with pytest.raises(ValueError, match="batch engine"):
        TrainConfig(teacher="policy", engine="session")


def test_abrkit_train_policy_teacher_needs_its_init_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.json"
    args = ["train", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR), "--out", str(out), "--iterations", "0",
            "--ensemble", "1", "--epochs", "5", "--no-progress", "--teacher", "policy"]
    assert main(args) != 0
    assert "--init-model" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{}")
    assert main([*args, "--init-model", str(bad)]) != 0
    assert "bad.json" in capsys.readouterr().err
