"""Plugin discovery (entry points), the component registry, and name lookup.

Listing components imports no component code: a hook may name a component as a
``"module:Class"`` string, imported only when a run builds it, and its one-line summary is
read from the module's source. So ``refbench --help``, ``plugins`` and ``leaderboard`` never
import torch or a model library.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, Literal, Mapping

import pluggy

from . import hookspecs
from .errors import RefbenchError

if TYPE_CHECKING:
    from .interfaces import Component

ENTRY_POINT_GROUP = "refbench"
Kind = Literal["dataset", "proposer", "prompter", "scorer", "combinator", "grounder"]
KINDS: tuple[Kind, ...] = ("dataset", "proposer", "prompter", "scorer", "combinator", "grounder")


def _base(kind: Kind) -> type[Component]:
    from . import interfaces

    return getattr(interfaces, kind.capitalize())


@dataclass
class ComponentInfo:
    """One component a plugin offers: its class, or the ``"module:Class"`` that names it."""

    kind: Kind
    name: str
    target: type | str
    plugin: str  # entry-point name
    package: str  # distribution providing it
    version: str
    _cls: type[Component] | None = field(default=None, repr=False)

    @property
    def cls(self) -> type[Component]:
        """The component's class, imported on first use; a failed import is one line naming the plugin."""
        if self._cls is None:
            target = self.target
            if isinstance(target, str):
                module, _, attr = target.partition(":")
                try:
                    target = getattr(importlib.import_module(module), attr)
                except Exception as exc:  # any import-time failure of a plugin's module
                    raise RefbenchError(f"{self.kind} {self.name!r} of plugin {self.plugin!r} ({self.package}) failed to "
                                        f"import {self.target}: {type(exc).__name__}: {exc}",
                                        f"reinstall {self.package}, or `refbench plugins` to see what is installed") from None
            base = _base(self.kind)
            if not (isinstance(target, type) and issubclass(target, base)):
                raise RefbenchError(f"{self.kind} {self.name!r} of plugin {self.plugin!r} ({self.package}) is {target!r}, "
                                    f"not a {base.__name__} subclass", f"report it to the authors of {self.package}")
            self._cls = target
        return self._cls

    def missing_module(self) -> str | None:
        """The module a ``"module:Class"`` target names, when it cannot be found (found without running it)."""
        if not isinstance(self.target, str):
            return None
        module = self.target.partition(":")[0]
        try:
            return None if importlib.util.find_spec(module) is not None else module
        except (ImportError, ValueError):
            return module

    @property
    def summary(self) -> str:
        """First line of the class docstring, without importing the class when it is named lazily."""
        if self._cls is not None or not isinstance(self.target, str):
            doc = (self._cls or self.target).__doc__ or ""  # type: ignore[union-attr]
        else:
            doc = _docstring(self.target)
        lines = doc.strip().splitlines()
        return lines[0].strip() if lines else ""


def _docstring(target: str) -> str:
    """A class's docstring read from its module's source (the module is not run)."""
    module, _, attr = target.partition(":")
    try:
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            return ""
        with open(spec.origin, encoding="utf-8") as f:
            tree = ast.parse(f.read())
    except (ImportError, OSError, SyntaxError, ValueError):
        return ""
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == attr:
            return ast.get_docstring(node) or ""
    return ""


@dataclass(frozen=True)
class BrokenPlugin:
    plugin: str
    target: str
    package: str
    error: str


class Registry:
    """Every component offered by the installed plugins, by kind and name."""

    def __init__(self, manager: pluggy.PluginManager, sources: Mapping[str, tuple[str, str]],
                 broken: list[BrokenPlugin]) -> None:
        self.manager = manager
        self.broken = broken
        self._components: dict[Kind, dict[str, list[ComponentInfo]]] = {k: {} for k in KINDS}
        for kind in KINDS:
            hook = getattr(manager.hook, f"refbench_{kind}s")
            for impl in hook.get_hookimpls():
                plugin_name = manager.get_name(impl.plugin) or "?"
                package, version = sources.get(plugin_name, ("?", "?"))
                try:
                    offered = impl.function() or {}
                except Exception as exc:  # a plugin's hook must not take the others down
                    self.broken.append(BrokenPlugin(plugin_name, f"refbench_{kind}s", package, repr(exc)))
                    continue
                for name, target in offered.items():
                    if not (isinstance(target, type) or (isinstance(target, str) and ":" in target)):
                        self.broken.append(BrokenPlugin(plugin_name, f"{kind} {name!r}", package,
                                                        f"{target!r} is neither a class nor a 'module:Class' string"))
                        continue
                    info = ComponentInfo(kind, name, target, plugin_name, package, version)
                    self._components[kind].setdefault(name, []).append(info)

    def note_broken(self, plugin: str, target: str, exc: Exception) -> None:
        self.broken.append(BrokenPlugin(plugin, target, "?", f"{type(exc).__name__}: {exc}"))

    def components(self) -> list[ComponentInfo]:
        return [i for kind in KINDS for infos in self._components[kind].values() for i in infos]

    def info(self, kind: Kind, name: str) -> ComponentInfo:
        found = self._components[kind].get(name)
        if not found:
            known = sorted(self._components[kind])
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"installed {kind}s: {', '.join(known) or 'none'}"
            broken = "".join(f"; plugin {b.plugin!r} ({b.package}) failed to load: {b.error}" for b in self.broken)
            raise RefbenchError(f"unknown {kind} {name!r}", hint + broken + "; `refbench plugins` lists what is installed")
        if len(found) > 1:
            owners = ", ".join(f"{i.plugin} ({i.package})" for i in found)
            raise RefbenchError(f"{kind} {name!r} is offered by several plugins: {owners}", "uninstall all but one")
        return found[0]

    def options(self, kind: Kind, spec: Mapping[str, Any], where: str) -> tuple[type[Component], Any]:
        """The class named by ``spec`` = ``{plugin: NAME, **options}`` and its validated options."""
        from pydantic import ValidationError

        from .config import describe_errors

        spec = dict(spec)
        name = spec.pop("plugin", None)
        if not isinstance(name, str):
            raise RefbenchError(f"{where}: missing 'plugin'", f"name the {kind} to use, e.g. plugin: NAME")
        try:
            cls = self.info(kind, name).cls
        except RefbenchError as exc:  # named with the block, for a component built inside another (e.g. sam_masks' boxes)
            raise exc.within(f"{where}: ") from None
        try:
            options = cls.Options(**spec)
        except ValidationError as exc:
            fields = ", ".join(cls.Options.model_fields) or "none"
            raise RefbenchError(f"{where} ({kind} {name!r}): " + "; ".join(describe_errors(exc, unknown="unknown option")),
                                f"valid options: {fields}") from None
        return cls, options

    def build(self, kind: Kind, spec: Mapping[str, Any], where: str) -> Any:
        """Instantiate ``spec`` after validating its options and checking them (``Component.check``)."""
        cls, options = self.options(kind, spec, where)
        problems = cls.check(options)
        if problems:
            raise RefbenchError.many([p.within(f"{where}: ") for p in problems])
        return construct(cls, options, where)


def construct(cls: type, options: Any, where: str) -> Any:
    """``cls(options)``, its errors (e.g. weights not found) named with the block ``where`` they came
    from, as ``check()``'s problems are."""
    try:
        return cls(options)
    except RefbenchError as exc:
        raise exc.within(f"{where}: ") from None


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name != "builtins", ep.name))


@lru_cache(maxsize=1)
def registry() -> Registry:
    """Load every installed plugin's hook module once per process.

    Written out rather than ``PluginManager.load_setuptools_entrypoints`` because that
    stops at the first plugin that fails to import; here a broken plugin is recorded and
    named in errors while the others load.
    """
    manager = pluggy.PluginManager("refbench")
    manager.add_hookspecs(hookspecs)
    sources: dict[str, tuple[str, str]] = {}
    broken: list[BrokenPlugin] = []
    for ep in _entry_points():
        dist = ep.dist
        package, version = (dist.name, dist.version) if dist is not None else ("?", "?")
        if manager.has_plugin(ep.name):
            continue
        try:
            plugin = ep.load()
            manager.register(plugin, name=ep.name)
        except Exception as exc:
            broken.append(BrokenPlugin(ep.name, ep.value, package, f"{type(exc).__name__}: {exc}"))
            continue
        sources[ep.name] = (package, version)
    return Registry(manager, sources, broken)
