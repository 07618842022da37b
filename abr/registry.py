"""ABR algorithms by name: `make("bba")`, `make("mpc-robust", horizon=5)`, `make("learned:PATH")`.

A plain typed dict of factories (Gymnasium's register/make without string entry points). A spec
string may carry one argument after a colon, passed to the factory as `arg` (e.g. a model path).
`make` binds the parameters to the factory's signature first, so a wrong name or type is a clear
`ValueError`; whatever the factory itself raises propagates unchanged. A factory over a parameter
dataclass takes that dataclass's signature with `@parameters_from(Params)`. The built-in algorithms
register themselves when `abr` is imported (see `abr/__init__.py`).
"""

from __future__ import annotations

import dataclasses
import inspect
import numbers
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from abr.types import AbrAlgorithm, AbrSpec

Factory = Callable[..., AbrAlgorithm]
F = TypeVar("F", bound=Factory)

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


def parameters_from(params_type: type) -> Callable[[F], F]:
    """Give a `**params` factory the signature of the dataclass it builds (keyword-only fields with
    their types and defaults), so `make` can check names and types before calling it."""
    hints = typing.get_type_hints(params_type)
    fields = [f for f in dataclasses.fields(params_type) if f.init]
    signature = inspect.Signature([
        inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(f.name, inspect.Parameter.empty),
                          default=f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty)
        for f in fields
    ])

    def decorate(factory: F) -> F:
        factory.__signature__ = signature  # type: ignore[attr-defined]
        return factory

    return decorate


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
    bound = _bind(name, factory, params)
    return factory(*bound.args, **bound.kwargs)


def _bind(name: str, factory: Factory, params: Mapping[str, Any]) -> inspect.BoundArguments:
    """`params` bound to the factory's signature, or a `ValueError` naming what is wrong."""
    try:
        signature = inspect.signature(factory, eval_str=True)
    except NameError:  # an annotation names something only a type checker imports
        signature = inspect.signature(factory)
    accepted = signature.parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())
    known = [p for p in accepted if p != "arg" and accepted[p].kind is not inspect.Parameter.VAR_KEYWORD]
    for key in params:
        if key in accepted or takes_any:
            continue
        if key == "arg":
            raise ValueError(f"ABR {name!r} takes no argument after ':' (got {name}:{params['arg']})")
        takes = f"it takes {', '.join(known)}" if known else "it takes none"
        if "arg" in accepted:
            takes += f" (and an argument: {name}:ARG)"
        raise ValueError(f"ABR {name!r} has no parameter {key!r}; {takes}")
    try:
        bound = signature.bind(**params)
    except TypeError as exc:  # a required parameter is missing
        raise ValueError(f"ABR {name!r}: {exc}") from None
    for key, value in bound.arguments.items():
        annotation = accepted[key].annotation
        if accepted[key].kind is not inspect.Parameter.VAR_KEYWORD and not _accepts(annotation, value):
            raise ValueError(f"ABR {name!r}: parameter {key!r} must be {_describe(annotation)}, "
                             f"got {type(value).__name__} {value!r}")
    return bound


def _accepts(annotation: Any, value: object) -> bool:
    """Whether `value` fits a parameter annotated `annotation` (unknown annotations accept anything)."""
    if annotation in (inspect.Parameter.empty, Any) or isinstance(annotation, str):
        return True
    if annotation is None or annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:  # numpy integers count; bools do not
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_accepts(member, value) for member in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin is not None:
        return not isinstance(origin, type) or isinstance(value, origin)
    return not isinstance(annotation, type) or isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return " or ".join(_describe(member) for member in typing.get_args(annotation))
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)
