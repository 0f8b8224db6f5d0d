"""Stage 1: a benchmark config turned into live components, every problem reported at once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

from ..config import BenchmarkConfig, ComponentSpec
from ..errors import RefbenchError
from ..interfaces import Combinator, Dataset, Grounder, Prompter, Proposer, Scorer
from ..plugins import Kind, Registry, construct, registry

T = TypeVar("T")


@dataclass
class Method:
    """One method of a run: a scorer (with its prompter, if it looks at views), a combinator or a grounder."""

    id: str
    scorer: Scorer | None = None
    prompter: Prompter | None = None
    combinator: Combinator | None = None
    grounder: Grounder | None = None

    @property
    def uses_views(self) -> bool:
        return self.scorer is not None and self.scorer.uses_views

    @property
    def uses_image(self) -> bool:
        """Whether preparing an image for this method decodes it."""
        return self.uses_views or (self.grounder is not None and self.grounder.uses_image)

    @property
    def on_gpu(self) -> bool:
        """Whether this method's model runs on a GPU (its scorer's or grounder's ``on_gpu``): it is then
        run in the main process, never in a forked worker."""
        part = self.scorer or self.grounder
        return part is not None and part.on_gpu

    def describe(self) -> dict[str, Any]:
        part = self.scorer or self.combinator or self.grounder
        return part.describe() if part is not None else {}


@dataclass
class Bench:
    """A benchmark config turned into live components."""

    config: BenchmarkConfig
    dataset: Dataset
    proposer: Proposer | None  # None when every method is a grounder
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
    """Instantiate what can be built and list every problem, cheapest first, so a typo never
    waits for a model to load: unknown names (looked up without importing anything); bad options and each
    component's own checks (classes imported, nothing loaded), and the data set and proposer
    (read, so a bad split is named too); then the methods, only if nothing failed before.
    Components not built are None."""
    reg = reg or registry()
    problems: list[RefbenchError] = []

    def attempt(fn: Callable[[], T]) -> T | None:
        try:
            return fn()
        except RefbenchError as exc:
            problems.append(exc)
            return None

    specs: list[tuple[Kind, ComponentSpec, str]] = [("dataset", config.dataset, "dataset")]
    if config.proposer is not None:
        specs.append(("proposer", config.proposer, "proposer"))
    for i, m in enumerate(config.methods):
        for kind, spec, part in (("scorer", m.scorer, "scorer"), ("prompter", m.prompter, "prompter"),
                                 ("combinator", m.combine, "combine"), ("grounder", m.ground, "ground")):
            if spec is not None:
                specs.append((kind, spec, f"methods[{i}] ({m.id}).{part}"))
    infos = {where: attempt(lambda: reg.info(kind, spec.plugin)) for kind, spec, where in specs}
    components = [{"where": where, "kind": i.kind, "name": i.name, "plugin": i.plugin, "package": i.package, "version": i.version}
                  for where, i in infos.items() if i is not None]
    bench = Bench(config, None, None, [], components)  # type: ignore[arg-type]
    resolved = {where: attempt(lambda: reg.options(kind, spec.as_dict(), where)) if infos[where] else None
                for kind, spec, where in specs}
    checked: set[str] = set()  # resolved and free of problems
    for where, found in resolved.items():
        if found is not None:
            cls, options = found
            found_problems = cls.check(options)
            problems.extend(p.within(f"{where}: ") for p in found_problems)
            if not found_problems:
                checked.add(where)

    def make(where: str) -> Any:
        if where not in checked:
            return None
        cls, options = resolved[where]  # type: ignore[misc]
        return attempt(lambda: construct(cls, options, where))

    bench.dataset = make("dataset")  # data problems are reported with the rest
    bench.proposer = make("proposer") if config.proposer is not None else None
    if problems:
        return bench, problems
    built = {where: make(where) for kind, _, where in specs if kind not in ("dataset", "proposer")}
    for i, m in enumerate(config.methods):
        where = f"methods[{i}] ({m.id})"
        if m.ground is not None:
            bench.methods.append(Method(m.id, grounder=built[where + ".ground"]))
            continue
        if m.combine is not None:
            comb = built[where + ".combine"]
            missing = [x for x in comb.members if x not in {y.id for y in bench.methods}] if comb else []
            if missing:
                problems.append(RefbenchError(f"{where}: combines {', '.join(missing)}, not defined above it",
                                              "list member methods before the method that combines them"))
            grounded = [y.id for y in bench.methods if comb and y.id in comb.members and y.grounder is not None]
            if grounded:
                problems.append(RefbenchError(f"{where}: combines {', '.join(grounded)}, which predict boxes, not logits",
                                              "combine only methods that score the proposals (scorer or combine methods)"))
            bench.methods.append(Method(m.id, combinator=comb))
            continue
        scorer, prompter = built[where + ".scorer"], built.get(where + ".prompter")
        if scorer is not None and (prompter is not None or m.prompter is None):
            found = scorer.check_prompter(prompter)
            problems.extend(p.within(f"{where}: ") for p in found)
            if not found:
                scorer.use_prompter(prompter)
        bench.methods.append(Method(m.id, scorer=scorer, prompter=prompter))
    return bench, problems
