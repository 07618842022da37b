"""Train a small agent on the abrkit Gymnasium environment: behaviour cloning, then policy gradient.

The policy is linear-softmax over the environment's observation (the learned ABR's features). It is
first cloned from a teacher algorithm acting in the environment (RobustMPC, through
`info["observation"]`; scikit-learn's logistic regression), then fine-tuned with REINFORCE with a
per-step baseline (Williams, 1992) on the bundled Envivio video and Norway traces, and compared
greedily with the teacher and BBA on the same episodes. Needs the `rl` extra (`pip install
abrkit[rl]`); runs in well under two minutes on one core.

    python examples/train_gym_agent.py [--clone-episodes 128] [--updates 60] [--episodes-per-update 16] [--seed 0]
"""

from __future__ import annotations

import argparse
import time

import gymnasium
import numpy as np
from sklearn.linear_model import LogisticRegression

import player.research.gym_env  # noqa: F401  (registers abrkit/Abr-v0)
from abr.registry import make

TEACHER = ("mpc-robust", {"pensieve_indexing": True})  # as the Pensieve profile runs it


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def with_bias(obs: np.ndarray) -> np.ndarray:
    return np.append(obs.astype(np.float64), 1.0)


def run_policy(env: gymnasium.Env, weights: np.ndarray, rng: np.random.Generator | None,
               options: dict | None = None) -> tuple[list[np.ndarray], list[int], list[float]]:
    """One episode of the linear-softmax policy: sampled when `rng` is given, else greedy."""
    obs, _ = env.reset(options=options)
    inputs, actions, rewards = [], [], []
    done = False
    while not done:
        x = with_bias(obs)
        probs = softmax(weights @ x)
        action = int(rng.choice(probs.size, p=probs)) if rng is not None else int(np.argmax(probs))
        obs, reward, terminated, truncated, _ = env.step(action)
        inputs.append(x)
        actions.append(action)
        rewards.append(float(reward))
        done = terminated or truncated
    return inputs, actions, rewards


def run_algorithm(env: gymnasium.Env, spec: tuple[str, dict], options: dict | None = None
                  ) -> tuple[list[np.ndarray], list[int], float]:
    """One episode of an abrkit algorithm, which reads `info["observation"]` (not the features)."""
    obs, info = env.reset(options=options)
    algorithm = make(spec[0], **spec[1])
    inputs, actions, total, done = [], [], 0.0, False
    while not done:
        action = algorithm.decide(info["observation"]).quality
        inputs.append(with_bias(obs))
        actions.append(action)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        done = terminated or truncated
    return inputs, actions, total


def clone(env: gymnasium.Env, episodes: int) -> np.ndarray:
    """Weights of a multinomial logistic regression fitted to the teacher's actions."""
    data = [run_algorithm(env, TEACHER) for _ in range(episodes)]
    x = np.array([row[:-1] for inputs, _, _ in data for row in inputs])
    y = np.array([a for _, actions, _ in data for a in actions])
    fitted = LogisticRegression(max_iter=2000).fit(x, y)
    weights = np.zeros((env.action_space.n, x.shape[1] + 1))
    weights[:, -1] = -30.0  # actions the teacher never took start (almost) impossible
    weights[fitted.classes_, :-1] = fitted.coef_ if fitted.classes_.size > 2 else np.r_[-fitted.coef_, fitted.coef_]
    weights[fitted.classes_, -1] = fitted.intercept_ if fitted.classes_.size > 2 else np.r_[-fitted.intercept_,
                                                                                            fitted.intercept_]
    return weights


def reinforce(env: gymnasium.Env, weights: np.ndarray, rng: np.random.Generator, *, updates: int, episodes: int,
              learning_rate: float) -> np.ndarray:
    """REINFORCE with the batch mean return-to-go at each step as the baseline."""
    weights = weights.copy()
    for update in range(updates):
        batch = [run_policy(env, weights, rng) for _ in range(episodes)]
        returns = [np.cumsum(r[::-1])[::-1] for _, _, r in batch]
        padded = np.full((len(returns), max(len(g) for g in returns)), np.nan)
        for i, g in enumerate(returns):
            padded[i, :len(g)] = g
        baseline = np.nanmean(padded, axis=0)
        scale = float(np.nanstd(padded - baseline)) + 1e-8
        gradient = np.zeros_like(weights)
        for (inputs, actions, _), g in zip(batch, returns):
            for t, (x, action) in enumerate(zip(inputs, actions)):
                grad_logits = -softmax(weights @ x)
                grad_logits[action] += 1.0
                gradient += (g[t] - baseline[t]) / scale * np.outer(grad_logits, x)
        weights += learning_rate * gradient / sum(len(a) for _, a, _ in batch)
        if update % 10 == 9 or update == updates - 1:
            print(f"  update {update + 1:3d}: sampled episodes {np.mean([sum(r) for _, _, r in batch]):6.1f} QoE_lin")
    return weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clone-episodes", type=int, default=128)
    parser.add_argument("--updates", type=int, default=60)
    parser.add_argument("--episodes-per-update", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = gymnasium.make("abrkit/Abr-v0")
    env.reset(seed=args.seed)  # seeds the environment's trace and offset draws
    rng = np.random.default_rng(args.seed)
    traces = len(env.unwrapped.traces)
    starts = [{"trace_index": i % traces, "offset_s": 25.0 * i} for i in range(12)]  # fixed evaluation episodes

    def greedy(weights: np.ndarray) -> float:
        return float(np.mean([sum(run_policy(env, weights, None, s)[2]) for s in starts]))

    started = time.process_time()
    weights = clone(env, args.clone_episodes)
    print(f"behaviour cloning of {TEACHER[0]}: {greedy(weights):.1f} QoE_lin per session (greedy)")
    weights = reinforce(env, weights, rng, updates=args.updates, episodes=args.episodes_per_update,
                        learning_rate=args.learning_rate)
    print(f"after REINFORCE: {greedy(weights):.1f} QoE_lin per session ({time.process_time() - started:.0f} s CPU)")
    for spec in (TEACHER, ("bba", {"map": "pensieve"})):
        print(f"{spec[0]} on the same episodes: {np.mean([run_algorithm(env, spec, s)[2] for s in starts]):.1f}")


if __name__ == "__main__":
    main()
