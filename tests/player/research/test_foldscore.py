"""Scoring policies on a validation fold as `abrkit train` does (player/research/foldscore.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from abr.algorithms.learned import PolicyModel, encode_model, load_model
from netsim.trace import Trace
from player.bundled import ENVIVIO_DIR, TRACES_DIR
from player.research.expert import ExpertConfig
from player.research.folds import split_traces
from player.research.foldscore import fold_plan, fold_sessions, main, score_on_fold
from player.research.selection import Selection
from player.research.sim import PROFILES
from player.research.train import TrainConfig, train
from player.video import Video


def test_fold_sessions_are_the_sessions_train_validates_on(video_10: Video, traces_4: list[Trace]) -> None:
    config = TrainConfig(iterations=0, rollouts_per_trace=1, max_epochs=20, validation_offsets=2,
                         validation_fold=2, seed=3, expert=ExpertConfig(horizon_segments=3))
    rounds: list[PolicyModel] = []
    result = train(video_10, traces_4, PROFILES["pensieve"], config, on_round=lambda r, p: rounds.append(p))
    plan = fold_plan(traces_4, fraction=0.2, fold=2, seed=3, offsets=2)
    assert [t.name for t in plan.traces] == list(result.validation_traces) == [
        t.name for t in split_traces(traces_4, 0.2, 3, 2)[1]]
    assert len(plan.offsets_s) == len(plan.traces) and all(len(o) == 2 for o in plan.offsets_s)
    sessions = fold_sessions(rounds[0], video_10, PROFILES["pensieve"], plan)
    assert sessions.shape == (3 * len(plan.traces),)
    assert float(np.mean(sessions)) == pytest.approx(result.rounds[0].validation_qoe, abs=1e-9)
    # the reference against itself scores its mean; a candidate by the tail rule, its worst sessions named
    model = result.model
    scores = score_on_fold({"self": model, "round0": rounds[0]}, model, video_10, PROFILES["pensieve"], plan,
                           worst=3)
    mine = fold_sessions(model, video_10, PROFILES["pensieve"], plan)
    assert scores[0].score == pytest.approx(scores[0].mean_qoe) == pytest.approx(float(np.mean(mine)))
    assert all(w.difference == 0 for w in scores[0].worst)
    assert scores[1].score == pytest.approx(Selection(rule="tail").score(sessions, mine))
    worst = [w.difference for w in scores[1].worst]
    assert worst == sorted(worst) and worst[0] == pytest.approx(float(np.min(sessions - mine)))
    assert {w.trace for w in scores[1].worst} <= {t.name for t in plan.traces}


def test_cli_scores_files_and_round_dirs_and_refuses_bad_input(tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    rounds = tmp_path / "rounds"
    rounds.mkdir()
    shipped = load_model(None)
    (rounds / "round-0.json").write_bytes(encode_model(shipped))
    common = ["--traces", str(TRACES_DIR), "--video", str(ENVIVIO_DIR), "--validation-offsets", "0",
              "--validation-fraction", "0.5"]
    assert main([*common, "--fold", "1", "--models", str(rounds), "--switch-margin", "0.5", "--worst", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("fold 1: 2 held-out traces x 1 start; validation QoE with the worst 10% of per-session differences from the reference")
    assert f"{rounds / 'round-0.json'}: score " in out and "  worst: " in out
    # The shipped model against itself scores the reference; with a 30 s safety floor it steps down and does not.
    assert main([*common, "--fold", "1", "--models", str(rounds), "--worst", "0"]) == 0
    itself = capsys.readouterr().out.split(": score ")[1].split(" (reference ")
    assert itself[0] == itself[1].split(",")[0]
    assert main([*common, "--fold", "1", "--models", str(rounds), "--worst", "0", "--safety-floor", "30"]) == 0
    guarded = capsys.readouterr().out.split(": score ")[1].split(" (reference ")
    assert guarded[1].split(",")[0] == itself[1].split(",")[0] and float(guarded[0]) < float(itself[0])
    bad, empty = tmp_path / "bad.json", tmp_path / "empty"
    bad.write_text('{"not": "a policy"}')
    empty.mkdir()
    for argv, message in [
        (["--fold", "9", "--models", str(rounds)], "--fold: validation fold 9 does not exist"),
        (["--models", str(tmp_path / "nope.json")], "--models: no such file or directory"),
        (["--models", str(bad)], f"--models: {bad}: "),
        (["--models", str(empty)], f"--models: no .json policy files in {empty}"),
        (["--models", str(rounds), "--switch-margin", "-1"], "--switch-margin must be >= 0"),
        (["--models", str(rounds), "--safety-floor", "-1"], "--safety-floor must be >= 0 s"),
        (["--models", str(rounds), "--tail-weight", "0.5"], "selection weight must be >= 1"),
    ]:
        assert main([*common, *argv]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err, err
