"""Algorithms from outside abrkit: a file or module to import (`--plugin`), or an installed
package's `abrkit.abr` entry points.

The one module of `abr` that touches the import system. A plugin registers its algorithms with
`abr.register` when imported; an entry point named like the algorithm points either at a module
that does so or at the factory itself (registered under the entry point's name, its docstring's
first line as the description). Loading is idempotent per process, so worker processes load the
same plugins their parent names (`load_plugins`) whatever they were given before.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import importlib.util
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ENTRY_POINT_GROUP = "abrkit.abr"

Register = Callable[[str, Callable[..., Any], str], None]


def entry_point_names() -> list[str]:
    """Algorithm names installed packages declare in the `abrkit.abr` group (nothing is imported)."""
    return sorted({ep.name for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)})


def load_entry_point(name: str, register: Register) -> bool:
    """Import the entry point called `name`, if a package declares one; True if there was one.

    A module is imported for its registrations; any other object is registered as the factory."""
    points = [ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not points:
        return False
    if len(points) > 1:
        sources = ", ".join(f"{ep.value} ({_distribution(ep)})" for ep in points)
        raise ValueError(f"ABR {name!r} is offered by more than one installed package: {sources}")
    point = points[0]
    try:
        target = point.load()
    except Exception as exc:  # a broken plugin must say which one, not fail somewhere later
        raise ValueError(f"cannot load ABR {name!r} from entry point {point.value} ({_distribution(point)}): "
                         f"{type(exc).__name__}: {exc}") from exc
    if not isinstance(target, ModuleType):
        if not callable(target):
            raise ValueError(f"entry point {name} = {point.value} is neither a module nor a factory")
        doc = (getattr(target, "__doc__", None) or "").strip().splitlines()
        register(name, target, doc[0] if doc else f"from {_distribution(point)}")
    return True


def _distribution(point: importlib.metadata.EntryPoint) -> str:
    dist = getattr(point, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "an installed package"


def load_plugin(target: str) -> ModuleType:
    """Import `target`, a Python file (path ending in .py, or an existing file) or a module name.

    A file is imported under a name derived from its resolved path, so loading it twice (or in every
    worker process) imports it once per process, and classes it defines pickle between processes."""
    path = Path(target).expanduser()
    if target.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ValueError(f"plugin {target}: no such file")
        resolved = path.resolve()
        module_name = f"abrkit_plugin_{_identifier(resolved.stem)}_{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"
        if module_name in sys.modules:
            return sys.modules[module_name]
        spec = importlib.util.spec_from_file_location(module_name, resolved)
        if spec is None or spec.loader is None:
            raise ValueError(f"plugin {target}: cannot be imported as Python")
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[module_name]
            raise
        return module
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as exc:
        if exc.name is not None and target.startswith(exc.name):
            raise ValueError(f"plugin {target}: no such file or importable module") from None
        raise


def load_plugins(targets: Iterable[str]) -> None:
    """`load_plugin` each of `targets` (what a worker process calls before it makes algorithms)."""
    for target in targets:
        load_plugin(target)


def plugin_reference(target: str) -> str:
    """How another process finds `target`: a file as its absolute path, a module name unchanged."""
    path = Path(target).expanduser()
    if target.endswith(".py") or path.is_file():
        return str(path.resolve())
    return target


def _identifier(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)
