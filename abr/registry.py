"""ABR algorithms by name: `make("bba")`, `make("mpc-robust", horizon=5)`, `make("learned:PATH")`.

A plain typed dict of factories (Gymnasium's register/make without string entry points). A spec
string may carry one argument after a colon, passed to the factory as `arg` (e.g. a model path).
The built-in algorithms register themselves when `abr` is imported (see `abr/__init__.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from abr.types import AbrAlgorithm, AbrSpec

Factory = Callable[..., AbrAlgorithm]

_REGISTRY: dict[str, AbrSpec] = {}


def register(name: str, factory: Factory, description: str) -> None:
    """Add an algorithm; names are unique."""
    if name in _REGISTRY:
        raise ValueError(f"ABR {name!r} is already registered")
    _REGISTRY[name] = AbrSpec(name=name, description=description, factory=factory)


def names() -> list[str]:
    return sorted(_REGISTRY)


def specs() -> list[AbrSpec]:
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


def parse_spec(spec: str) -> tuple[str, str | None]:
    name, sep, arg = spec.partition(":")
    return name.strip(), (arg if sep else None)


def parse_spec_list(text: str) -> tuple[str, ...]:
    """The specs in a comma-separated list such as `bba,mpc-robust`; empty items and repeats are errors
    (a repeated algorithm would otherwise silently become one row of a report)."""
    specs = tuple(item.strip() for item in text.split(","))
    if not text.strip() or any(not s for s in specs):
        raise ValueError(f"empty algorithm in the list {text!r}")
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise ValueError(f"algorithm list {text!r} names {', '.join(repeated)} more than once")
    return specs


def make(spec: str, **params: Any) -> AbrAlgorithm:
    """A fresh algorithm instance. `spec` is `name` or `name:arg`; `params` go to the factory."""
    name, arg = parse_spec(spec)
    try:
        entry = _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown ABR {name!r}; choose from {', '.join(sorted(_REGISTRY))}") from None
    factory: Factory = entry.factory  # type: ignore[assignment]
    if arg is not None:
        params = {**params, "arg": arg}
    try:
        return factory(**params)
    except TypeError as exc:
        raise ValueError(f"ABR {name!r}: bad parameters {sorted(params)}: {exc}") from None

