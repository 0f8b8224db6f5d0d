"""Stage 1: a benchmark config turned into live components, every problem reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ..config import BenchmarkConfig, ComponentSpec
from ..errors import RefbenchError
from ..interfaces import Combinator, Dataset, Prompter, Proposer, Scorer
from ..plugins import Kind, Registry, registry

T = TypeVar("T")


@dataclass
class Method:
    """One method of a run: a scorer (with its prompter, if it looks at views) or a combinator."""

    id: str
    scorer: Scorer | None = None
    prompter: Prompter | None = None
    combinator: Combinator | None = None

    @property
    def uses_views(self) -> bool:
        return self.scorer is not None and self.scorer.uses_views

    def describe(self) -> dict[str, Any]:
        part = self.scorer or self.combinator
        return part.describe() if part is not None else {}


@dataclass
class Bench:
    """A benchmark config turned into live components."""

    config: BenchmarkConfig
    dataset: Dataset
    proposer: Proposer
    methods: list[Method]
    components: list[dict[str, Any]] = field(default_factory=list)


def build_component(kind: Kind, spec: dict[str, Any], where: str) -> Any:
    """Build one component from its YAML block ``{plugin: NAME, **options}`` (options validated and
    checked first); ``where`` names the block in error messages. For plugins that build components
    outside a benchmark run (e.g. a training loop's data set and model)."""
    return registry().build(kind, spec, where)


def build(config: BenchmarkConfig, reg: Registry | None = None) -> Bench:
    """Instantiate every component, or raise every problem found together (see :func:`build_parts`)."""
    bench, problems = build_parts(config, reg)
    if problems:
        raise RefbenchError.many(problems)
    return bench


def build_parts(config: BenchmarkConfig, reg: Registry | None = None) -> tuple[Bench, list[RefbenchError]]:
    """Instantiate what can be built, and list every problem: unknown names and bad options
    first (raised together, before anything is loaded), then each component's own checks
    and construction. Components that failed are None in the returned :class:`Bench`."""
    reg = reg or registry()
    problems: list[RefbenchError] = []
    components: list[dict[str, Any]] = []

    def attempt(fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except RefbenchError as exc:
            problems.append(exc)
            return None

    specs: list[tuple[Kind, ComponentSpec, str]] = [("dataset", config.dataset, "dataset"), ("proposer", config.proposer, "proposer")]
    for i, m in enumerate(config.methods):
        for kind, spec, part in (("scorer", m.scorer, "scorer"), ("prompter", m.prompter, "prompter"), ("combinator", m.combine, "combine")):
            if spec is not None:
                specs.append((kind, spec, f"methods[{i}] ({m.id}).{part}"))
    resolved = {where: attempt(lambda: reg.options(kind, spec.as_dict(), where)) for kind, spec, where in specs}
    if problems:
        raise RefbenchError.many(problems)

    built: dict[str, Any] = {}
    for kind, spec, where in specs:
        cls, options = resolved[where]  # type: ignore[misc]
        info = reg.info(kind, spec.plugin)
        components.append({"where": where, "kind": kind, "name": info.name, "plugin": info.plugin,
                           "package": info.package, "version": info.version})
        checked = cls.check(options)
        if checked:
            problems.extend(p.within(f"{where}: ") for p in checked)
        else:
            built[where] = attempt(lambda: cls(options))
    methods: list[Method] = []
    for i, m in enumerate(config.methods):
        where = f"methods[{i}] ({m.id})"
        if m.combine is not None:
            comb = built.get(where + ".combine")
            missing = [x for x in comb.members if x not in {y.id for y in methods}] if comb else []
            if missing:
                problems.append(RefbenchError(f"{where}: combines {', '.join(missing)}, not defined above it",
                                              "list member methods before the method that combines them"))
            methods.append(Method(m.id, combinator=comb))
            continue
        scorer, prompter = built.get(where + ".scorer"), built.get(where + ".prompter")
        if scorer is not None and scorer.uses_views and m.prompter is None:
            problems.append(RefbenchError(f"{where}: scorer {m.scorer.plugin!r} looks at views and needs a prompter",  # type: ignore[union-attr]
                                          "add e.g. prompter: {plugin: green_shade}"))
        methods.append(Method(m.id, scorer=scorer, prompter=prompter))
    return Bench(config, built.get("dataset"), built.get("proposer"), methods, components), problems  # type: ignore[arg-type]
