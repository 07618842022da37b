"""`learned`: a small neural policy trained to imitate the offline optimum.

The Comyco idea (Huang et al., ACM MM 2019): imitate an expert that knows the future bandwidth
instead of exploring with reinforcement learning, with DAgger (Ross et al., AISTATS 2011) so the
policy learns from the states it reaches itself. Training is `abrkit train` (`player/research/train.py`);
this module is runtime only: it loads a model file, builds features from the `Observation`
(`abr.features`) and picks the most probable quality. `make("learned")` uses the model shipped in
`abr/models/`, `make("learned:PATH")` another file.

Model files are JSON (parameters, not code): loading one cannot run anything, and it is validated
(format, content hash, feature schema, shapes, finite values) before use.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from abr import features
from abr.features import FeatureSchema
from abr.registry import register
from abr.types import BatchObservation, Decision, Ladder, Observation, UnsupportedLadder

MODEL_FORMAT = "abrkit-learned-policy"
FORMAT_VERSION = 1
DEFAULT_MODEL = "learned-default.json"
_ACTIVATIONS = ("relu", "tanh")


@dataclass(frozen=True, kw_only=True, slots=True, eq=False)
class PolicyModel:
    """A trained multi-layer perceptron over standardised features; the last layer gives one score per
    quality. Fitted parameters end in `_` (scikit-learn's convention); `metadata` records how the model
    was trained (command, seed, data, scikit-learn version).

    `switch_margin` is the decision rule's hysteresis, in score units (QoE for a regret model): keep
    the previous quality unless another one scores more than this above it. The scores are estimates,
    and every needless switch costs the switch penalty; `abrkit train` picks the margin on its
    validation traces.

    `safety_floor_s` is a guard for bandwidth collapses: with less than this much buffer (s) the decision
    steps down, at most one rung below the previous quality (0, the default, turns it off). A policy that
    holds a high rung into a collapse stalls for seconds; the guard bounds how long it can hold it once the
    buffer runs low. `abrkit train --safety-floors` picks it on validation with the margin."""

    feature_schema: FeatureSchema
    ladder_bitrates_bps: tuple[int, ...]  # the ladder it was trained on
    segment_duration_s: float
    sklearn_version: str
    activation: str
    input_mean_: np.ndarray  # (F,)
    input_scale_: np.ndarray  # (F,)
    coefs_: tuple[np.ndarray, ...]  # (F, H1), (H1, H2), ..., (Hk, Q)
    intercepts_: tuple[np.ndarray, ...]  # (H1,), ..., (Q,)
    switch_margin: float = 0.0
    safety_floor_s: float = 0.0
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        size, rungs = self.feature_schema.size, self.feature_schema.ladder_size
        if len(self.ladder_bitrates_bps) != rungs:
            raise ValueError(f"ladder of {len(self.ladder_bitrates_bps)} rungs but a feature schema for {rungs}")
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose from {', '.join(_ACTIVATIONS)}")
        if not (self.switch_margin >= 0 and math.isfinite(self.switch_margin)):
            raise ValueError(f"switch_margin must be finite and >= 0, got {self.switch_margin}")
        if not (self.safety_floor_s >= 0 and math.isfinite(self.safety_floor_s)):
            raise ValueError(f"safety_floor_s must be finite and >= 0 s, got {self.safety_floor_s}")
        if not self.coefs_ or len(self.coefs_) != len(self.intercepts_):
            raise ValueError("a model needs one intercept vector per weight matrix, and at least one layer")
        arrays = [np.array(a, dtype=np.float64) for a in (self.input_mean_, self.input_scale_)]
        if any(a.shape != (size,) for a in arrays):
            raise ValueError(f"input mean and scale must have {size} values (one per feature)")
        if np.any(arrays[1] <= 0):
            raise ValueError("input scales must be > 0")
        coefs = tuple(np.array(c, dtype=np.float64) for c in self.coefs_)
        intercepts = tuple(np.array(b, dtype=np.float64) for b in self.intercepts_)
        width = size
        for layer, (w, b) in enumerate(zip(coefs, intercepts)):
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise ValueError(f"layer {layer}: weights {w.shape} and intercepts {b.shape} do not follow a "
                                 f"{width}-wide input")
            width = w.shape[1]
        if width != rungs:
            raise ValueError(f"the last layer has {width} outputs, the ladder {rungs} rungs")
        for array in (*arrays, *coefs, *intercepts):
            if not np.all(np.isfinite(array)):
                raise ValueError("model parameters must be finite")
            array.setflags(write=False)
        object.__setattr__(self, "input_mean_", arrays[0])
        object.__setattr__(self, "input_scale_", arrays[1])
        object.__setattr__(self, "coefs_", coefs)
        object.__setattr__(self, "intercepts_", intercepts)
        object.__setattr__(self, "metadata", dict(self.metadata))

    @property
    def ladder_size(self) -> int:
        return self.feature_schema.ladder_size

    def scores(self, x: np.ndarray) -> np.ndarray:
        """(B, Q) output scores (logits) of (B, F) features.

        Each product is an explicit sum over input columns, left to right, instead of a BLAS matmul:
        BLAS picks different kernels (and summation orders) for one row and for many, and a row's
        scores must not depend on the batch it is in (`decide_batch` must equal `decide`).
        """
        hidden = (np.asarray(x, dtype=np.float64) - self.input_mean_) / self.input_scale_
        last = len(self.coefs_) - 1
        for layer, (weights, bias) in enumerate(zip(self.coefs_, self.intercepts_)):
            out = np.broadcast_to(bias, (hidden.shape[0], bias.size)).copy()
            for j in range(weights.shape[0]):
                out += hidden[:, j:j + 1] * weights[j]
            hidden = out if layer == last else (np.maximum(out, 0.0) if self.activation == "relu" else np.tanh(out))
        return hidden

    def predict(self, x: np.ndarray, last_quality: np.ndarray | None = None,
                buffer_s: np.ndarray | None = None) -> np.ndarray:
        """(B,) the quality per row: the highest-scoring one (the lowest on a tie), except that the
        previous quality (`last_quality`, -1 for none) is kept unless the best beats it by more than
        `switch_margin`, and that below `safety_floor_s` of buffer (`buffer_s`) it is at most one rung
        below the previous quality."""
        return self.choose(self.scores(x), last_quality, buffer_s)

    def choose(self, scores: np.ndarray, last_quality: np.ndarray | None,
               buffer_s: np.ndarray | None = None) -> np.ndarray:
        """`predict`'s rule applied to (B, Q) scores."""
        best = np.argmax(scores, axis=1)
        if last_quality is None:
            return best
        last = np.asarray(last_quality, dtype=np.int64)
        valid = (last >= 0) & (last < scores.shape[1])
        chosen = best
        if self.switch_margin > 0:
            rows = np.arange(scores.shape[0])
            kept = scores[rows, np.where(valid, last, 0)]
            chosen = np.where(valid & (scores[rows, best] - kept <= self.switch_margin), last, best)
        if self.safety_floor_s > 0 and buffer_s is not None:
            low = valid & (np.asarray(buffer_s, dtype=np.float64) < self.safety_floor_s)
            chosen = np.where(low, np.minimum(chosen, np.maximum(last - 1, 0)), chosen)
        return chosen


# -- the file format ---------------------------------------------------------------------------------------------


def _body(model: PolicyModel) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "format_version": FORMAT_VERSION,
        "sklearn_version": model.sklearn_version,
        "feature_schema": {"version": model.feature_schema.version, "names": list(model.feature_schema.names)},
        "ladder": {"size": model.ladder_size, "bitrates_bps": list(model.ladder_bitrates_bps),
                   "segment_duration_s": model.segment_duration_s},
        "network": {
            "kind": "mlp", "activation": model.activation,
            "input_mean": model.input_mean_.tolist(), "input_scale": model.input_scale_.tolist(),
            "coefs": [w.tolist() for w in model.coefs_], "intercepts": [b.tolist() for b in model.intercepts_],
        },
        "decision": {"switch_margin": model.switch_margin,
                     **({"safety_floor_s": model.safety_floor_s} if model.safety_floor_s else {})},
        "metadata": dict(model.metadata),
    }


def _digest(body: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def encode_model(model: PolicyModel) -> bytes:
    """The model as canonical JSON (sorted keys, exact float reprs, no spaces): equal models give equal
    bytes. `python -m json.tool` pretty-prints it."""
    body = _body(model)
    return (json.dumps({**body, "sha256": _digest(body)}, sort_keys=True, separators=(",", ":")) + "\n").encode()


def decode_model(data: bytes, source: str) -> PolicyModel:
    """A model from `encode_model`'s bytes; `source` names the file in errors. Raises ValueError saying
    what does not match this abrkit (format, hash, feature schema version or names, ladder, shapes)."""
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{source}: not an abrkit learned-policy model (not JSON: {exc})") from None
    if not isinstance(doc, dict) or doc.get("format") != MODEL_FORMAT:
        raise ValueError(f"{source}: not an abrkit learned-policy model (no \"format\": \"{MODEL_FORMAT}\")")
    if doc.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{source}: model format version {doc.get('format_version')!r}, this abrkit reads "
                         f"version {FORMAT_VERSION}")
    stored = doc.pop("sha256", None)
    if stored != _digest(doc):
        raise ValueError(f"{source}: content hash does not match (the file was edited or corrupted); "
                         "retrain it with 'abrkit train'")
    try:
        schema_doc, ladder, network = doc["feature_schema"], doc["ladder"], doc["network"]
        version, names = int(schema_doc["version"]), tuple(str(n) for n in schema_doc["names"])
        rungs = int(ladder["size"])
        if version != features.SCHEMA_VERSION:
            raise ValueError(f"{source}: model built for feature schema version {version}, this abrkit builds "
                             f"version {features.SCHEMA_VERSION}; retrain it with 'abrkit train'")
        expected = features.schema(rungs)
        if names != expected.names:
            diff = next((i for i, (a, b) in enumerate(zip(names, expected.names)) if a != b),
                        min(len(names), len(expected.names)))
            raise ValueError(f"{source}: feature names differ from schema version {version} for {rungs} rungs at "
                             f"position {diff} ({len(names)} names, expected {len(expected.names)}); retrain it")
        if network.get("kind") != "mlp":
            raise ValueError(f"{source}: unknown network kind {network.get('kind')!r}")
        return PolicyModel(
            feature_schema=expected, ladder_bitrates_bps=tuple(int(b) for b in ladder["bitrates_bps"]),
            segment_duration_s=float(ladder["segment_duration_s"]), sklearn_version=str(doc["sklearn_version"]),
            activation=str(network["activation"]),
            input_mean_=np.asarray(network["input_mean"], dtype=np.float64),
            input_scale_=np.asarray(network["input_scale"], dtype=np.float64),
            coefs_=tuple(np.asarray(w, dtype=np.float64) for w in network["coefs"]),
            intercepts_=tuple(np.asarray(b, dtype=np.float64) for b in network["intercepts"]),
            switch_margin=float(doc["decision"]["switch_margin"]),
            safety_floor_s=float(doc["decision"].get("safety_floor_s", 0.0)),
            metadata=doc.get("metadata") or {},
        )
    except ValueError as exc:
        message = str(exc)
        raise ValueError(message if message.startswith(source) else f"{source}: {message}") from None
    except (KeyError, TypeError, AttributeError) as exc:
        raise ValueError(f"{source}: malformed model file ({type(exc).__name__}: {exc})") from None


def default_model_path() -> Path:
    """The model shipped with the package."""
    return Path(str(resources.files("abr") / "models" / DEFAULT_MODEL))


def load_model(path: str | os.PathLike[str] | None = None) -> PolicyModel:
    """Read and validate a model file (default: the shipped one). Parsed models are cached per file
    version (path, size, modification time), so making many instances reads the file once."""
    file = Path(path) if path is not None else default_model_path()
    try:
        stat = file.stat()
    except OSError as exc:
        raise ValueError(f"{file}: cannot read learned model ({exc.strerror or exc})") from None
    return _load_cached(str(file.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _load_cached(path: str, size: int, mtime_ns: int) -> PolicyModel:
    # Keyed on the file's version, so an edited file is read again; the model itself is immutable.
    return decode_model(Path(path).read_bytes(), path)


# -- the algorithm --------------------------------------------------------------------------------------------------


class Learned:
    """The most probable quality under a trained policy; stateless (a function of each observation).

    A model scores the rungs of the ladder size it was trained for; on another ladder `check_ladder`
    (which sessions call before they start) and `decide` refuse with `UnsupportedLadder` rather than
    decide by some other rule. One rung needs no model at all.
    """

    name = "learned"
    # Not "bandwidth-monotone" or "buffer-monotone": nothing constrains a network to be monotone.
    conformance_tags = frozenset({"batch"})

    def __init__(self, model: PolicyModel, source: str = "") -> None:
        self.model = model
        self.source = source

    def check_ladder(self, ladder: Ladder) -> None:
        rungs = len(ladder)
        if rungs not in (1, self.model.ladder_size):
            trained = ", ".join(f"{b // 1000}" for b in self.model.ladder_bitrates_bps)
            raise UnsupportedLadder(
                f"learned model {self.source or '<in memory>'} decides on ladders of {self.model.ladder_size} rungs "
                f"(trained on {trained} kbit/s), this one has {rungs}; train one for it with `abrkit train --video`")

    def decide(self, obs: Observation) -> Decision:
        self.check_ladder(obs.ladder)
        if len(obs.ladder) == 1:
            return Decision(quality=0, reason="one rung -> q0")
        scores = self.model.scores(features.observation_features(obs))
        last = -1 if obs.last_quality is None else obs.last_quality
        quality = int(self.model.choose(scores, np.array([last]), np.array([obs.buffer_s]))[0])
        unguarded = int(self.model.choose(scores, np.array([last]))[0])
        if quality != unguarded:
            return Decision(quality=quality, reason=f"safety floor: buffer {obs.buffer_s:.1f}s < "
                                                    f"{self.model.safety_floor_s:g}s, q{quality} (else q{unguarded})")
        best = int(np.argmax(scores[0]))
        if quality != best:
            return Decision(quality=quality, reason=f"keep q{quality}: q{best} scores only "
                                                    f"{scores[0, best] - scores[0, quality]:.2f} more, buffer "
                                                    f"{obs.buffer_s:.1f}s")
        return Decision(quality=quality, reason=f"policy scores q{quality} best by "
                                                f"{_lead(scores[0], quality):.2f}, buffer {obs.buffer_s:.1f}s")

    def decide_batch(self, obs: BatchObservation) -> np.ndarray:
        self.check_ladder(obs.ladder)
        if len(obs.ladder) == 1:
            return np.zeros(obs.batch_size, dtype=np.int64)
        return self.model.predict(features.batch_observation_features(obs), obs.last_quality,
                                  obs.buffer_s).astype(np.int64)


def _lead(scores: np.ndarray, quality: int) -> float:
    """How far the chosen quality's score is above the runner-up's (0 with one rung)."""
    others = np.delete(scores, quality)
    return float(scores[quality] - others.max()) if others.size else 0.0


def make_learned(arg: str | None = None, model: PolicyModel | None = None) -> Learned:
    """`learned` with the shipped model, `learned:PATH` with the model at PATH, or an in-memory `model`."""
    if model is not None:
        return Learned(model, source="<in memory>")
    source = arg if arg else str(default_model_path())
    return Learned(load_model(source), source=source)


register("learned", make_learned, "imitation of the offline optimum (Comyco + DAgger): a small MLP on "
                                  "Observation features; learned:PATH for another model file")
