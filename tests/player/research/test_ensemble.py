"""The ensemble's networks (`player.research.ensemble`): split, restandardised, warm-started (`abrkit train --warm-start`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from abr.algorithms.learned import decode_model, default_model_path, encode_model, load_model
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.cli import main
from player.research.ensemble import average_networks, average_policies, restandardise, split_members
from player.research.sim import PROFILES
from player.research.train import TrainConfig, fit_policy, train
from player.video import Video


def _forward(member: tuple[list[np.ndarray], list[np.ndarray]], z: np.ndarray) -> np.ndarray:
    hidden = z
    for layer, (w, b) in enumerate(zip(*member)):
        hidden = hidden @ w + b
        if layer < len(member[0]) - 1:
            hidden = np.maximum(hidden, 0.0)
    return hidden


def test_the_shipped_network_splits_into_its_members_and_averages_back() -> None:
    model = load_model()  # three 64x64 networks stored as one
    members = split_members(model, 3, (64, 64))
    assert [w.shape for w in members[0][0]] == [(40, 64), (64, 64), (64, 6)]
    coefs, intercepts = average_networks(members)
    for ours, theirs in zip([*coefs, *intercepts], [*model.coefs_, *model.intercepts_]):
        np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    x = np.random.default_rng(0).normal(size=(50, 40)) * model.input_scale_ + model.input_mean_
    z = (x - model.input_mean_) / model.input_scale_
    np.testing.assert_allclose(np.mean([_forward(m, z) for m in members], axis=0), model.scores(x), atol=1e-9)
    # Restandardised for other data, a member computes the same function of the raw features.
    mean, scale = model.input_mean_ + 0.3, model.input_scale_ * 1.7
    moved = restandardise(members[1], model.input_mean_, model.input_scale_, mean, scale)
    np.testing.assert_allclose(_forward(moved, (x - mean) / scale), _forward(members[1], z), atol=1e-9)
    with pytest.raises(ValueError, match="cannot warm-start 2 network"):
        split_members(model, 2, (64, 64))
    mixed = dataclasses.replace(model, coefs_=(model.coefs_[0], model.coefs_[1] + 1e-3, model.coefs_[2]))
    with pytest.raises(ValueError, match="not block-diagonal"):
        split_members(mixed, 3, (64, 64))



def test_averaged_policies_score_the_mean_of_their_scores() -> None:
    model = load_model()
    other = dataclasses.replace(  # another policy, standardised for other data
        model, input_mean_=model.input_mean_ + 0.4, input_scale_=model.input_scale_ * 1.6,
        coefs_=(model.coefs_[0] * 1.2, model.coefs_[1], model.coefs_[2] * 0.7), switch_margin=0.4)
    x = np.random.default_rng(2).normal(size=(60, 40)) * model.input_scale_ + model.input_mean_
    both = average_policies([model, other, other], switch_margin=0.2, metadata={"note": "test"})
    np.testing.assert_allclose(both.scores(x), (model.scores(x) + 2 * other.scores(x)) / 3, rtol=0, atol=1e-9)
    assert np.max(np.abs(both.scores(x) - model.scores(x))) > 0.1
    assert [w.shape for w in both.coefs_] == [(40, 576), (576, 576), (576, 6)]
    assert both.switch_margin == 0.2 and both.metadata["note"] == "test"
    assert [s["switch_margin"] for s in both.metadata["average_of"]] == [0.0, 0.4, 0.4]
    again = decode_model(encode_model(both), "averaged")  # an ordinary model file
    np.testing.assert_array_equal(again.scores(x), both.scores(x))
    with pytest.raises(ValueError, match="two or more"):
        average_policies([model])
    with pytest.raises(ValueError, match="another ladder"):
        average_policies([model, dataclasses.replace(model, ladder_bitrates_bps=(1, 2, 3, 4, 5, 6))])
    shallow = dataclasses.replace(model, coefs_=(model.coefs_[0], model.coefs_[1] @ model.coefs_[2]),
                                  intercepts_=(model.intercepts_[0], model.intercepts_[2]))
    with pytest.raises(ValueError, match="depth"):
        average_policies([model, shallow])

def test_a_warm_fit_starts_from_the_initial_policy(video_10: Video) -> None:
    init = load_model()
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 40)) * init.input_scale_ * 0.8 + init.input_mean_  # other standardisation
    values = rng.normal(size=(300, 6))
    frozen = TrainConfig(ensemble=3, max_epochs=1, learning_rate=1e-12)
    still = fit_policy(x, values, video_10, frozen, seed=0, init=init)  # a step too small to move it
    np.testing.assert_allclose(still.scores(x), init.scores(x), atol=1e-6)
    cold = fit_policy(x, values, video_10, frozen, seed=0)
    assert np.max(np.abs(cold.scores(x) - init.scores(x))) > 0.1
    with pytest.raises(ValueError, match="cannot warm-start 1 network"):
        fit_policy(x, values, video_10, dataclasses.replace(frozen, ensemble=1), seed=0, init=init)
    with pytest.raises(ValueError, match="regret target"):
        TrainConfig(target="action", warm_start=True)


def test_policy_iteration_with_warm_starts_is_reproducible(video_10: Video, traces_4: list[Trace]) -> None:
    init = load_model()
    config = TrainConfig(iterations=1, max_epochs=5, ensemble=3, engine="batch", validation_fraction=0.25,
                         teacher="policy", switch_margins=(0.0,), warm_start=True)
    said: list[str] = []
    one = train(video_10, traces_4, PROFILES["pensieve"], config, init_policy=init, log=said.append)
    versus = one.model.metadata["validation_vs_init"]  # the chosen policy against init, paired by trace
    assert versus["traces"] == 1 and versus["wins"] + versus["ties"] + versus["losses"] == 1
    assert versus["ci95"][0] <= versus["difference"] <= versus["ci95"][1]
    assert any(line.startswith("against the initial policy on validation") for line in said)
    again = train(video_10, traces_4, PROFILES["pensieve"], config, init_policy=init)
    cold = train(video_10, traces_4, PROFILES["pensieve"], dataclasses.replace(config, warm_start=False),
                 init_policy=init)
    assert encode_model(one.model) == encode_model(again.model) != encode_model(cold.model)
    assert one.model.metadata["warm_start"] is True and "warm_start" not in cold.model.metadata
    with pytest.raises(ValueError, match="cannot warm-start 1 network"):
        train(video_10, traces_4, PROFILES["pensieve"], dataclasses.replace(config, ensemble=1), init_policy=init)


def test_abrkit_train_refuses_a_warm_start_it_cannot_do(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ["train", "--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR), "--out", str(tmp_path / "m.json"),
            "--iterations", "0", "--epochs", "1", "--no-progress", "--warm-start"]
    assert main([*base, "--target", "action"]) != 0
    assert "warm_start needs the regret target" in capsys.readouterr().err
    assert main([*base, "--teacher", "policy", "--init-model", str(default_model_path()), "--ensemble", "2"]) != 0
    assert "cannot warm-start 2 network(s)" in capsys.readouterr().err
    assert not (tmp_path / "m.json").exists()
