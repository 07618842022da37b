"""The ensemble's networks: averaged into one, split back, and warm starts (a round's networks fitted
starting from a previous policy's rather than from a fresh draw).

A policy file stores its `ensemble` MLPs as one wide network (`average_networks`: first layers side
by side, later hidden layers block-diagonal, the output layer averaging them) on inputs
standardised with the data of the round that fitted it. `split_members` recovers the members, and
`restandardise` rewrites a member's first layer for another round's standardisation, so that it
computes the same function of the raw features; `train.fit_policy(init=...)` then lets each member
continue from there (approximate policy iteration with a round-to-round regularisation: a round
moves the previous network rather than redrawing it, so the noise of a fresh initialisation does
not add to the noise of the labels). `average_policies` averages whole policy files the same way (seed
copies of a recipe, for example), each restandardised to the first one's inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from abr.algorithms.learned import PolicyModel, encode_model

Member = tuple[list[np.ndarray], list[np.ndarray]]


def average_networks(members: list[Member]) -> Member:
    """One network whose output is the mean of the members' outputs: hidden layers side by side (the
    first concatenated, the later ones block-diagonal), the output layer averaging them."""
    if len(members) == 1:
        return members[0]
    count = len(members)
    layers = len(members[0][0])
    coefs, intercepts = [], []
    for layer in range(layers):
        weights = [m[0][layer] for m in members]
        biases = [m[1][layer] for m in members]
        if layer == 0:
            coefs.append(np.concatenate(weights, axis=1))
        elif layer < layers - 1:
            block = np.zeros((sum(w.shape[0] for w in weights), sum(w.shape[1] for w in weights)))
            row = col = 0
            for w in weights:
                block[row:row + w.shape[0], col:col + w.shape[1]] = w
                row, col = row + w.shape[0], col + w.shape[1]
            coefs.append(block)
        else:
            coefs.append(np.concatenate(weights, axis=0) / count)
        intercepts.append(np.concatenate(biases) if layer < layers - 1 else np.mean(biases, axis=0))
    return coefs, intercepts


def split_members(policy: PolicyModel, count: int, hidden_sizes: tuple[int, ...]) -> list[Member]:
    """The `count` networks of `hidden_sizes` whose average `policy`'s network is, on `policy`'s own
    standardised inputs. A network of any other shape (another ensemble size or layer widths, or
    hidden layers that are not block-diagonal) is refused with a ValueError naming the shapes."""
    coefs, intercepts = list(policy.coefs_), list(policy.intercepts_)
    shapes = [w.shape for w in coefs]
    widths = [w.shape[1] for w in coefs[:-1]]
    if len(coefs) != len(hidden_sizes) + 1 or widths != [count * h for h in hidden_sizes]:
        raise ValueError(f"cannot warm-start {count} network(s) of hidden layers {list(hidden_sizes)} from a "
                         f"network of layer shapes {shapes}; use the same --ensemble and layer sizes")
    members: list[Member] = []
    for k in range(count):
        ws, bs = [], []
        for layer, (w, b) in enumerate(zip(coefs, intercepts)):
            cols = slice(k * hidden_sizes[layer], (k + 1) * hidden_sizes[layer]) if layer < len(widths) else slice(None)
            rows = slice(None) if layer == 0 else slice(k * hidden_sizes[layer - 1], (k + 1) * hidden_sizes[layer - 1])
            ws.append(np.array(w[rows, cols]) * (count if layer == len(widths) else 1))
            bs.append(np.array(b[cols]))
        members.append((ws, bs))
    for layer in range(1, len(widths)):  # a hidden-to-hidden layer must not mix members
        w = np.array(coefs[layer])
        for k in range(count):
            rows, cols = hidden_sizes[layer - 1], hidden_sizes[layer]
            w[k * rows:(k + 1) * rows, k * cols:(k + 1) * cols] = 0.0
        if np.any(w != 0.0):
            raise ValueError(f"cannot split layer {layer} of shape {shapes[layer]} into {count} networks: "
                             "it is not block-diagonal")
    return members


def restandardise(member: Member, old_mean: np.ndarray, old_scale: np.ndarray, new_mean: np.ndarray,
                  new_scale: np.ndarray) -> Member:
    """`member` (first layer fed (x - old_mean) / old_scale) rewritten for (x - new_mean) / new_scale,
    computing the same outputs for every raw x."""
    ws, bs = member
    w0 = ws[0] * (new_scale / old_scale)[:, None]
    b0 = bs[0] + ((new_mean - old_mean) / old_scale) @ ws[0]
    return [w0, *ws[1:]], [b0, *bs[1:]]


def start_regressor(net: object, member: Member, x: np.ndarray, outputs: int) -> None:
    """Make the scikit-learn `MLPRegressor` `net` (built with warm_start=True) start its next `fit`
    from `member`'s weights: its state is initialised as a first fit would, then the weights are
    replaced (Adam's state is new at every `fit`)."""
    from sklearn.utils import check_random_state

    layer_units = [x.shape[1], *(w.shape[1] for w in member[0])]
    if layer_units[-1] != outputs:
        raise ValueError(f"the warm start has {layer_units[-1]} outputs, the targets {outputs}")
    net._random_state = check_random_state(net.random_state)  # type: ignore[attr-defined]
    net._initialize(np.zeros((1, outputs)), layer_units, x.dtype)  # type: ignore[attr-defined]
    net.coefs_ = [np.array(w, dtype=x.dtype) for w in member[0]]  # type: ignore[attr-defined]
    net.intercepts_ = [np.array(b, dtype=x.dtype) for b in member[1]]  # type: ignore[attr-defined]
    net.n_features_in_ = x.shape[1]  # type: ignore[attr-defined]


def average_policies(policies: Sequence[PolicyModel], *, switch_margin: float = 0.0,
                     metadata: Mapping[str, Any] | None = None) -> PolicyModel:
    """One policy whose scores are the mean of `policies`' scores, each policy weighing the same whatever its
    own ensemble size: every network is rewritten for the first policy's input standardisation
    (`restandardise`) and the networks are laid side by side (`average_networks`), so the result is an
    ordinary model file (wider, not deeper). The decision rule is new: `switch_margin`, no safety floor.
    The metadata records each source policy's content hash and decision rule. Policies for other
    features, ladders, activations or depths are refused with a ValueError."""
    if len(policies) < 2:
        raise ValueError(f"averaging needs two or more policies, got {len(policies)}")
    first = policies[0]
    for k, p in enumerate(policies[1:], start=1):
        if (p.feature_schema.names, p.ladder_bitrates_bps, p.segment_duration_s) != (
                first.feature_schema.names, first.ladder_bitrates_bps, first.segment_duration_s):
            raise ValueError(f"policy {k} decides on other features or another ladder than policy 0")
        if p.activation != first.activation or len(p.coefs_) != len(first.coefs_):
            raise ValueError(f"policy {k} has another activation or depth ({p.activation}, {len(p.coefs_)} layers) "
                             f"than policy 0 ({first.activation}, {len(first.coefs_)} layers)")
    nets = [restandardise(([np.array(w) for w in p.coefs_], [np.array(b) for b in p.intercepts_]),
                          p.input_mean_, p.input_scale_, first.input_mean_, first.input_scale_) for p in policies]
    coefs, intercepts = average_networks(nets)
    sources = [{"sha256_16": hashlib.sha256(encode_model(p)).hexdigest()[:16], "switch_margin": p.switch_margin,
                "safety_floor_s": p.safety_floor_s} for p in policies]
    return PolicyModel(
        feature_schema=first.feature_schema, ladder_bitrates_bps=first.ladder_bitrates_bps,
        segment_duration_s=first.segment_duration_s, sklearn_version=first.sklearn_version,
        activation=first.activation, input_mean_=first.input_mean_, input_scale_=first.input_scale_,
        coefs_=tuple(coefs), intercepts_=tuple(intercepts), switch_margin=switch_margin,
        metadata={**(metadata or {}), "average_of": sources})
