"""ABR algorithms by name: `make("bba")`, `make("mpc-robust", horizon=5)`, `make("rate:safety=0.8")`.

A plain typed dict of factories (Gymnasium's register/make). A spec string is `name`, or
`name:ARG,key=value,...`: ARG (optional, first) goes to the factory as `arg` (e.g. a model path);
each `key=value` is a parameter, its text converted to the type the factory declares
(`describe` lists them). `make` binds the parameters to the factory's signature first, so a wrong
name or type is a clear `ValueError`; whatever the factory itself raises propagates unchanged. A
factory over a parameter dataclass takes that dataclass's signature with `@parameters_from(Params)`.
The built-in algorithms register themselves when `abr` is imported (see `abr/__init__.py`); other
packages add theirs through the `abrkit.abr` entry-point group, loaded when a name is first asked
for (`abr.plugins`).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import numbers
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from abr import plugins
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
    """Registered algorithms and those installed packages offer (`abrkit.abr` entry points, not loaded)."""
    return sorted(set(_REGISTRY) | set(plugins.entry_point_names()))


def specs() -> list[AbrSpec]:
    """Every algorithm's registry entry (entry-point algorithms are loaded for it)."""
    for name in plugins.entry_point_names():
        _entry(name)
    return [_REGISTRY[n] for n in sorted(_REGISTRY)]


_KEY_VALUE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")


@dataclass(frozen=True, slots=True)
class SpecCall:
    """A parsed spec string: `name[:ARG][,key=value...]`, values still text."""

    name: str
    arg: str | None = None
    params: tuple[tuple[str, str], ...] = ()


def parse_call(spec: str) -> SpecCall:
    """`name`, `name:ARG`, `name:key=value,...` or `name:ARG,key=value,...` (ARG first). Text after the
    colon without any `key=value` item is the argument whole (a model path may hold commas)."""
    name, sep, rest = spec.partition(":")
    name = name.strip()
    if not name:
        raise ValueError(f"no algorithm name in {spec!r}")
    if any(c in name for c in ",;= \t"):
        raise ValueError(f"{name!r} is not an algorithm name (in {spec!r}; parameters go after a ':')")
    if not sep:
        return SpecCall(name=name)
    items = [item.strip() for item in rest.split(",")]
    if not any(_KEY_VALUE.match(item) for item in items):
        return SpecCall(name=name, arg=rest)
    arg = None
    if not _KEY_VALUE.match(items[0]):
        arg, items = items[0], items[1:]
    params: list[tuple[str, str]] = []
    for item in items:
        if not _KEY_VALUE.match(item):
            raise ValueError(f"in {spec!r}: expected key=value after the argument, got {item!r}")
        key, _, value = item.partition("=")
        if any(key == k for k, _ in params):
            raise ValueError(f"in {spec!r}: parameter {key!r} is given twice")
        params.append((key, value))
    return SpecCall(name=name, arg=arg or None, params=tuple(params))


def parse_spec(spec: str) -> tuple[str, str | None]:
    """(name, argument) of a spec string (its `key=value` parameters aside)."""
    call = parse_call(spec)
    return call.name, call.arg


def parse_spec_list(*texts: str) -> tuple[str, ...]:
    """The specs in one or more lists such as `bba,mpc-robust` or `rate:safety=0.8,window=3;bba`.

    Items are separated by `;` or `,`; a `key=value` item after a comma belongs to the spec before it
    (algorithm names hold no `=`), so `bba,rate:safety=0.8,window=3,mpc` is three specs. Several texts
    (a repeated `--abr`) add up. Empty items and repeats are errors (a repeated algorithm would
    otherwise silently become one row of a report).
    """
    specs: list[str] = []
    for text in texts:
        if not text.strip():
            raise ValueError("empty algorithm list")
        for chunk in text.split(";"):
            current: list[str] = []
            for item in (i.strip() for i in chunk.split(",")):
                if not item:
                    raise ValueError(f"empty algorithm in the list {text!r}")
                if _KEY_VALUE.match(item) and current:
                    if ":" not in current[0]:
                        raise ValueError(f"parameter {item!r} in {text!r} follows {current[0]!r}, which has no ':' "
                                         f"(write {current[0]}:{item})")
                    current.append(item)
                    continue
                if _KEY_VALUE.match(item):
                    raise ValueError(f"parameter {item!r} in {text!r} follows no algorithm (write NAME:{item})")
                if current:
                    specs.append(",".join(current))
                current = [item]
            if current:
                specs.append(",".join(current))
    for spec in specs:
        parse_call(spec)  # malformed parameters fail here, naming the spec
    repeated = sorted({s for s in specs if specs.count(s) > 1})
    if repeated:
        raise ValueError(f"algorithm list {'; '.join(texts)!r} names {', '.join(repeated)} more than once")
    return tuple(specs)


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
    """A fresh algorithm instance. `spec` is `name[:ARG][,key=value...]`; `params` go to the factory,
    and the spec's own `key=value` parameters override them (a profile's defaults, say)."""
    return maker(spec, **params)()


def maker(spec: str, **params: Any) -> Callable[[], AbrAlgorithm]:
    """`make(spec, **params)` as a function of no arguments: the spec is parsed and checked once, and
    each call returns a fresh instance (a simulator making one per session skips the parsing)."""
    call = parse_call(spec)
    name = call.name
    entry = _entry(name)
    factory: Factory = entry.factory  # type: ignore[assignment]
    signature = _signature(factory)
    params = {**params, **{key: _convert(name, signature, key, text) for key, text in call.params}}
    if call.arg is not None:
        params = {**params, "arg": call.arg}
    bound = _bind(name, factory, params)
    return functools.partial(factory, *bound.args, **bound.kwargs)


def _entry(name: str) -> AbrSpec:
    """The registry entry of `name`, loading an installed package's entry point on first use."""
    if name not in _REGISTRY:
        plugins.load_entry_point(name, register)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown ABR {name!r}; choose from {', '.join(names())} "
                         "(or load a plugin: --plugin FILE_OR_MODULE)") from None


@dataclass(frozen=True, slots=True)
class Parameter:
    """One parameter of an algorithm, for listings: name, type as text, default (`None`-able)."""

    name: str
    type: str
    default: str | None  # repr of the default; None: required


def describe(name: str) -> tuple[Parameter, ...]:
    """The parameters `name`'s factory takes (`arg` is the spec's `:ARG`)."""
    signature = _signature(_entry(name).factory)  # type: ignore[arg-type]
    out = []
    for param in signature.parameters.values():
        if param.kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
            continue
        annotation = param.annotation
        kind = "any" if annotation is inspect.Parameter.empty else _describe(annotation)
        default = None if param.default is inspect.Parameter.empty else repr(param.default)
        out.append(Parameter(name=param.name, type=kind, default=default))
    return tuple(out)


def catalogue() -> str:
    """Every algorithm with its description and parameters (what `--list-abr` prints)."""
    lines = []
    for entry in specs():
        lines.append(f"{entry.name}: {entry.description}")
        params = describe(entry.name)
        for p in params:
            label = ":ARG" if p.name == "arg" else p.name
            lines.append(f"    {label} ({p.type})" + ("" if p.default is None else f" = {p.default}"))
        if not params:
            lines.append("    (no parameters)")
    lines.append("Set parameters in the spec: NAME:key=value,...  e.g. rate:safety=0.8 or 'mpc:horizon=3;bba'.")
    return "\n".join(lines)


def _signature(factory: Factory) -> inspect.Signature:
    try:
        return inspect.signature(factory, eval_str=True)
    except NameError:  # an annotation names something only a type checker imports
        return inspect.signature(factory)


_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def _convert(name: str, signature: inspect.Signature, key: str, text: str) -> Any:
    """A spec's text value as the type the factory declares for `key` (unknown keys stay text:
    `_bind` then names them)."""
    param = signature.parameters.get(key)
    if param is None:
        return text
    try:
        return _as(param.annotation, text)
    except ValueError:
        raise ValueError(f"ABR {name!r}: parameter {key!r} must be {_describe(param.annotation)}, "
                         f"got {text!r}") from None


def _as(annotation: Any, text: str) -> Any:
    """`text` as a value of `annotation`; ValueError if it is none."""
    if annotation in (inspect.Parameter.empty, Any) or isinstance(annotation, str):
        for kind in (int, float):
            try:
                return kind(text)
            except ValueError:
                pass
        return text
    if annotation is None or annotation is type(None):
        if text.lower() in ("none", "null"):
            return None
        raise ValueError(text)
    if annotation is bool:
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if annotation in (int, float, str):
        return annotation(text)
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        if text.lower() in ("none", "null") and type(None) in members:
            return None
        for member in members:
            if member is not type(None):
                try:
                    return _as(member, text)
                except ValueError:
                    pass
        raise ValueError(text)
    if origin is typing.Literal:
        for value in typing.get_args(annotation):
            if str(value) == text:
                return value
        raise ValueError(text)
    if origin is tuple:  # tuple[float, ...]: items separated by '/' (',' separates parameters)
        args = typing.get_args(annotation)
        item = args[0] if args else Any
        return tuple(_as(item, part) for part in text.split("/"))
    raise ValueError(text)  # a type a spec string cannot spell (a model object): pass it from code


def _bind(name: str, factory: Factory, params: Mapping[str, Any]) -> inspect.BoundArguments:
    """`params` bound to the factory's signature, or a `ValueError` naming what is wrong."""
    signature = _signature(factory)
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
    if origin is tuple and isinstance(value, tuple):
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_accepts(args[0], v) for v in value)
        return len(args) == len(value) and all(_accepts(a, v) for a, v in zip(args, value))
    if origin is not None:
        return not isinstance(origin, type) or isinstance(value, origin)
    return not isinstance(annotation, type) or isinstance(value, annotation)


def _describe(annotation: Any) -> str:
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(member) for member in typing.get_args(annotation))
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(v) for v in typing.get_args(annotation))
    if origin is tuple:
        args = typing.get_args(annotation)
        return f"tuple of {_describe(args[0])} (a/b/...)" if args else "tuple"
    return annotation.__name__ if isinstance(annotation, type) else str(annotation)
