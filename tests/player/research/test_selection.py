"""Model selection with the tail weighted, and training traces with falling bandwidth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abr.algorithms.learned import load_model
from netsim.trace import Trace
from player.research.falling import FallingSpec, falling_copies
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
                         teacher="policy", switch_margins=(0.0, 0.4), selection=Selection(rule="tail"))
    result = train(video_10, traces_4, PROFILES["pensieve"], config, init_policy=load_model())
    meta = result.model.metadata
    assert meta["selection"] == {"rule": "tail", "share": 0.1, "weight": 2.0}
    assert isinstance(meta["selection_score"], float) and isinstance(meta["selection_score_init"], float)
    assert "worst_tenth_sessions" in meta["validation_vs_init"]


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
    assert not (tmp_path / "m.json").exists()
