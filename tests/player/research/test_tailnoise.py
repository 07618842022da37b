"""The tail rule's gap between policies, its bootstrap over traces, and the command that reports it."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from abr.algorithms.learned import encode_model, load_model
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.research.selection import Selection
from player.research.tailnoise import copy_pairs, main, tail_gap, tail_gap_ci


def test_the_gap_is_the_tail_score_above_the_reference_mean_and_negative_both_ways_for_a_tie() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(50.0, 10.0, 40), rng.normal(50.0, 10.0, 40)
    rule = Selection(rule="tail")
    assert tail_gap(a, b) == pytest.approx(rule.score(a, b) - np.mean(b))
    assert tail_gap(a, a) == 0.0
    # The worst tenth counts twice: any two different policies lose to each other by the rule.
    assert tail_gap(a, b) < 0 and tail_gap(b, a) < 0
    assert tail_gap(b + 2.0, b) == pytest.approx(2.2)  # a uniform gain of 2 counts 1.1 times


def test_the_bootstrap_resamples_whole_traces() -> None:
    # Two traces of three starts: every start of trace 0 loses 10, every start of trace 1 wins 10. Resampled by
    # trace, a resample is all losses, all wins or one of each; resampled by session, all six
    # starts being losses happens in 1/64 of the draws, under the 2.5 % the interval's end would need.
    reference = np.zeros(6)
    mine = np.array([-10.0] * 3 + [10.0] * 3)
    ci = tail_gap_ci(mine, reference, traces=2, resamples=4000)
    assert ci.mean == pytest.approx(tail_gap(mine, reference)) and ci.n == 2
    all_lost, all_won = tail_gap(np.full(6, -10.0), reference), tail_gap(np.full(6, 10.0), reference)
    assert all_lost == pytest.approx(-70 / 6)  # the worst ceil(0.1 x 6) = 1 session counted twice
    assert ci.low == pytest.approx(all_lost) and ci.high == pytest.approx(all_won)
    same = tail_gap_ci(reference + 3.0, reference, traces=2)
    assert same.low == pytest.approx(3.5) == same.high
    with pytest.raises(ValueError, match="do not split into 4 traces"):
        tail_gap_ci(mine, reference, traces=4)


def test_pairs_are_copies_both_ways_then_candidates_against_each_copy() -> None:
    assert copy_pairs(["F", "s1", "s2"], ["c"]) == [("F", "s1"), ("F", "s2"), ("s1", "F"), ("s1", "s2"), ("s2", "F"),
                                                   ("s2", "s1"), ("c", "F"), ("c", "s1"), ("c", "s2")]


def test_command_reports_each_fold_and_refuses_one_copy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    shipped = load_model()
    files = {}
    for name, margin in (("f", shipped.switch_margin), ("g", 1.0), ("c", 0.5)):
        files[name] = tmp_path / f"{name}.json"
        files[name].write_bytes(encode_model(dataclasses.replace(shipped, switch_margin=margin)))
    common = ["--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR), "--validation-fraction", "0.25",
              "--validation-offsets", "1"]
    assert main([*common, "--models", str(files["f"]), str(files["g"]), "--candidates", str(files["c"]),
                 "--folds", "0,3"]) == 0
    out = capsys.readouterr().out
    assert "fold 0: 1 held-out traces x 2 starts" in out and "fold 3:" in out
    assert out.count("copies against each other: gap") == 2 and out.count("against the copies: gap") == 2
    assert out.count("mean difference") == 2 * (2 + 2)  # per fold the copies both ways, the candidate against each
    assert main([*common, "--models", str(files["f"])]) == 2
    assert "two or more copies" in capsys.readouterr().err
    assert main([*common, "--models", str(files["f"]), str(files["g"]), "--folds", "9"]) == 2
    assert "--folds: validation fold 9 does not exist" in capsys.readouterr().err
