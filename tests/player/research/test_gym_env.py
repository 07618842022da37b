"""The Gymnasium environment: API conformance, seeding, and the simulator's semantics."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

gymnasium = pytest.importorskip("gymnasium", reason="gymnasium is the optional 'rl' extra")

from abr import features  # noqa: E402
from abr.registry import make  # noqa: E402
from netsim import synthetic  # noqa: E402
from player.bundled import ENVIVIO_DIR  # noqa: E402
from player.research.gym_env import ENV_ID, AbrEnv  # noqa: E402
from player.research.sim import PROFILES, run_session  # noqa: E402
from player.video import load_video  # noqa: E402


def test_env_passes_gymnasium_env_checker() -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(AbrEnv(), skip_render_check=True)


def test_registered_id_makes_the_env_with_spaces() -> None:
    env = gymnasium.make(ENV_ID)
    assert isinstance(env.unwrapped, AbrEnv)
    assert env.action_space == gymnasium.spaces.Discrete(6)
    assert env.observation_space.shape == (features.schema(6).size,)


def test_reset_is_seeded() -> None:
    env = AbrEnv()
    starts = []
    for seed in (1, 2, 1, 3, 2):
        obs, info = env.reset(seed=seed)
        starts.append((info["trace"], info["offset_s"], obs.tobytes()))
    assert starts[0] == starts[2] and starts[1] == starts[4]
    assert len({s[:2] for s in starts}) == 3


def test_options_pick_trace_and_offset_and_fixed_offset_starts_at_zero() -> None:
    env = AbrEnv(random_offset=False)
    _, info = env.reset(seed=0, options={"trace_index": 2})
    assert info["trace"] == env.traces[2].name and info["offset_s"] == 0.0
    _, info = env.reset(options={"trace_index": 1, "offset_s": 12.5})
    assert (info["trace"], info["offset_s"]) == (env.traces[1].name, 12.5)
    with pytest.raises(ValueError, match="trace_index"):
        env.reset(options={"trace_index": 99})


@pytest.mark.parametrize("profile_name", ["pensieve", "default"])
@pytest.mark.parametrize("algorithm", ["bba", "mpc-robust"])
def test_episode_return_is_the_simulated_session_qoe(profile_name: str, algorithm: str) -> None:
    env = AbrEnv(profile_name=profile_name)
    prof = PROFILES[profile_name]
    params = prof.abr_params.get(algorithm, {})
    for index, offset_s in ((0, 0.0), (3, 41.3)):
        obs, info = env.reset(options={"trace_index": index, "offset_s": offset_s})
        agent = make(algorithm, **params)
        total, steps, done = 0.0, 0, False
        while not done:
            np.testing.assert_array_equal(obs, features.observation_features(info["observation"])[0].astype(np.float32))
            obs, reward, terminated, truncated, info = env.step(agent.decide(info["observation"]).quality)
            total, steps, done = total + reward, steps + 1, terminated or truncated
        expected = run_session(algorithm, env.video, env.traces[index], prof, offset_s=offset_s)
        assert total == pytest.approx(expected.qoe_lin, abs=1e-9)
        assert steps == env.video.segment_count - (prof.session.initial_quality is not None)


def test_step_rejects_bad_actions_and_steps_after_the_end() -> None:
    env = AbrEnv(video=load_video(ENVIVIO_DIR).truncated(3), traces=[synthetic.constant(2e6, duration_s=50.0)])
    env.reset(seed=0)
    with pytest.raises(ValueError, match="not a quality"):
        env.step(6)
    _, _, terminated, _, _ = env.step(1)
    assert not terminated
    _, _, terminated, _, _ = env.step(1)
    assert terminated
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step(0)


def test_importing_abrkit_does_not_need_gymnasium() -> None:
    code = ("import sys, abr, player.cli, player.research.train, player.research.sim; player.cli.build_parser(); "
            "assert 'gymnasium' not in sys.modules, 'gymnasium was imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_example_agent_trains_and_reports_against_its_teacher() -> None:
    """`examples/train_gym_agent.py`, shortened: cloning, a REINFORCE update, the comparison lines."""
    from tests.conftest import REPO_ROOT

    example = REPO_ROOT / "examples" / "train_gym_agent.py"
    done = subprocess.run([sys.executable, str(example), "--clone-episodes", "2", "--updates", "1",
                           "--episodes-per-update", "2"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("behaviour cloning of mpc-robust:") and "QoE_lin per session" in lines[0]
    assert any(line.startswith("after REINFORCE:") for line in lines)
    assert [line.split(" on the same")[0] for line in lines[-2:]] == ["mpc-robust", "bba"]
