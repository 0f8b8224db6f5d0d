"""Plugin discovery (entry points), the component registry, and name lookup."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Literal, Mapping

import pluggy
from pydantic import ValidationError

from . import hookspecs
from .config import describe_errors
from .errors import RefbenchError
from .interfaces import Combinator, Component, Dataset, Prompter, Proposer, Scorer

ENTRY_POINT_GROUP = "refbench"
Kind = Literal["dataset", "proposer", "prompter", "scorer", "combinator"]
KINDS: dict[Kind, type[Component]] = {
    "dataset": Dataset,
    "proposer": Proposer,
    "prompter": Prompter,
    "scorer": Scorer,
    "combinator": Combinator,
}


@dataclass(frozen=True)
class ComponentInfo:
    kind: Kind
    name: str
    cls: type[Component]
    plugin: str  # entry-point name
    package: str  # distribution providing it
    version: str


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
                for name, cls in offered.items():
                    if not (isinstance(cls, type) and issubclass(cls, KINDS[kind])):
                        self.broken.append(BrokenPlugin(plugin_name, f"{kind} {name!r}", package,
                                                        f"{cls!r} is not a {KINDS[kind].__name__} subclass"))
                        continue
                    info = ComponentInfo(kind, name, cls, plugin_name, package, version)
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

    def build(self, kind: Kind, spec: Mapping[str, Any], where: str) -> Any:
        """Instantiate ``spec`` = ``{plugin: NAME, **options}`` after validating the options."""
        spec = dict(spec)
        name = spec.pop("plugin", None)
        if not isinstance(name, str):
            raise RefbenchError(f"{where}: missing 'plugin'", f"name the {kind} to use, e.g. plugin: NAME")
        cls = self.info(kind, name).cls
        try:
            options = cls.Options(**spec)
        except ValidationError as exc:
            raise RefbenchError(*_explain(exc, f"{where} ({kind} {name!r})", cls)) from None
        return cls(options)


def _explain(exc: ValidationError, where: str, cls: type[Component]) -> tuple[str, str]:
    fields = ", ".join(cls.Options.model_fields) or "none"
    return f"{where}: " + "; ".join(describe_errors(exc, unknown="unknown option")), f"valid options: {fields}"


def _entry_points() -> list[EntryPoint]:
    return sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: (ep.name != "builtins", ep.name))


@lru_cache(maxsize=1)
def registry() -> Registry:
    """Load every installed plugin once per process.

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
