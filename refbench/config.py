"""Benchmark YAML -> validated :class:`BenchmarkConfig`, with one clear line per bad field.

:func:`load_yaml` is the one loading path for every YAML refbench or a plugin reads
(benchmarks here, training recipes in plugins), and :func:`config_digest` the one hash.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .boxes import IoUConvention
from .errors import RefbenchError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ComponentSpec(BaseModel):
    """``{plugin: NAME, **options}``; options are validated by the plugin's ``Options``."""

    model_config = ConfigDict(extra="allow")
    plugin: str

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump()


class ProposerSpec(ComponentSpec):
    """A proposer block: the plugin's options plus ``invalid``, which the runner applies to any proposer."""

    invalid: Literal["error", "drop"] = Field(
        "error", description="a non-finite, degenerate or out-of-image proposal box: stop with an error, or drop it "
                             "(counted per image and in run.json)")

    def as_dict(self) -> dict[str, Any]:
        return self.model_dump(exclude={"invalid"})


class ProtocolConfig(_Strict):
    """How a phrase counts as a hit. Every result records these conventions."""

    iou: float = Field(0.5, gt=0, le=1, description="IoU threshold")
    comparison: Literal[">", ">="] = Field(">", description="'>' as the CLIP fine-tuning code; '>=' as MAttNet's")
    iou_convention: IoUConvention = Field("refer", description="'refer' = refer's computeIoU; 'continuous'")
    empty_proposals: Literal["error", "miss"] = Field(
        "error", description="an image with no candidate: stop with an error, or count its phrases as misses")


class MethodConfig(_Strict):
    id: str = Field(min_length=1)
    scorer: ComponentSpec | None = None
    prompter: ComponentSpec | None = None
    combine: ComponentSpec | None = None
    ground: ComponentSpec | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> "MethodConfig":
        if sum(x is not None for x in (self.scorer, self.combine, self.ground)) != 1:
            raise ValueError("give exactly one of 'scorer' (scores the proposals), 'combine' (built from other methods) "
                             "or 'ground' (predicts a box per phrase)")
        if self.scorer is None and self.prompter is not None:
            raise ValueError("only a 'scorer' method takes a 'prompter'")
        return self


def _check_workers(v: int | str) -> int | str:
    if isinstance(v, int) and v < 0:
        raise ValueError("workers must be >= 0 or 'auto'")
    return v


Workers = Annotated[int | Literal["auto"], AfterValidator(_check_workers)]
"""A worker count in a config: a number >= 0 (0: everything in the main process) or ``"auto"``."""


class RunnerConfig(_Strict):
    """The benchmark YAML's ``runner`` block: how a run is executed (batch size, workers, where
    scoring runs, an image limit for smoke tests). Only its limit changes what is measured."""

    batch_size: int = Field(256, ge=1, description="views per encoder call")
    workers: Workers = Field(
        "auto", description="background processes; 0 = everything in the main process; auto: CPUs - 2, at most 8, when "
                            "the main process scores, and one per CPU when the workers score")
    scoring: Literal["auto", "main", "workers"] = Field(
        "auto", description="where the models run. main: the main process encodes what the workers prepare; workers: each "
                            "worker prepares and scores its own share of the images with its own copy of the models, on "
                            "one thread (CPU models only); auto: workers when every model is on the CPU and there are 2 to 8 CPUs")

    limit: int | None = Field(None, ge=1, description="only the first N images (smoke tests)")


class UncertaintyConfig(_Strict):
    """How a run's accuracies get their 95% intervals (recorded in run.json)."""

    interval: Literal["bootstrap", "wilson"] = Field(
        "bootstrap", description="bootstrap: percentile interval of a bootstrap that resamples whole images (phrases of one "
                                 "image are correlated); wilson: Wilson's score interval, treating phrases as independent")
    resamples: int = Field(2000, ge=100, description="bootstrap resamples")
    seed: int = Field(0, ge=0, description="bootstrap seed")


# Fields that do not change any prediction: the runner's speed knobs, the description, how
# intervals are computed (run.json records it), and
# ``proposer.invalid`` (with ``error`` a run over invalid boxes never starts, so both settings
# predict alike on every file a run exists for).
BENCHMARK_DIGEST_EXCLUDES: dict[str, Any] = {"runner": {"batch_size", "workers", "scoring"}, "description": True,
                                             "proposer": {"invalid"}, "uncertainty": True}


class BenchmarkConfig(_Strict):
    """A whole benchmark YAML, validated: its name, seed, data set, proposer, protocol, runner,
    uncertainty and methods. ``load_config`` builds one from a file; ``digest`` is its hash."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.+-]+$")
    description: str = ""
    seed: int = 0
    dataset: ComponentSpec
    proposer: ProposerSpec | None = Field(None, description="candidate boxes; needed unless every method is a 'ground' method")
    protocol: ProtocolConfig = ProtocolConfig()
    runner: RunnerConfig = RunnerConfig()
    uncertainty: UncertaintyConfig = UncertaintyConfig()
    methods: list[MethodConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _proposals_if_needed(self) -> "BenchmarkConfig":
        if self.proposer is None and any(m.ground is None for m in self.methods):
            raise ValueError("'proposer' is needed: a 'scorer' or 'combine' method chooses among proposals")
        return self

    @field_validator("methods")
    @classmethod
    def _unique_ids(cls, methods: list[MethodConfig]) -> list[MethodConfig]:
        seen: set[str] = set()
        for m in methods:
            if m.id in seen:
                raise ValueError(f"method id {m.id!r} is used twice")
            seen.add(m.id)
        return methods

    def digest(self) -> str:
        """Hash of what determines the results (not the runner's speed knobs)."""
        payload = self.model_dump(mode="json", exclude=BENCHMARK_DIGEST_EXCLUDES)
        for method in payload["methods"]:  # a field added later hashes as before while unused
            if method.get("ground") is None:
                method.pop("ground", None)
        return _sha256_json(payload)


Model = TypeVar("Model", bound=BaseModel)


def config_digest(config: BaseModel, exclude: Any = None) -> str:
    """sha256 of a config's JSON form (keys sorted), less the fields in ``exclude`` (pydantic's
    ``exclude`` syntax): the hash that says whether two configs determine the same results."""
    return _sha256_json(config.model_dump(mode="json", exclude=exclude))


def _sha256_json(payload: Any) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_yaml(path: str | Path, model: type[Model], example: str, overrides: dict[str, Any] | None = None) -> Model:
    """Read a YAML file and validate it as ``model``; every failure is one :class:`RefbenchError` line
    naming the file (and each bad field). ``example`` names a file to copy from; ``overrides`` are
    merged into top-level mappings before validation (``{"runner": {...}}``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RefbenchError(f"config file not found: {path}", f"check the path (see {example} for an example)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise RefbenchError(f"cannot read {path}: {exc}", "pass a UTF-8 YAML file") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise RefbenchError(f"{path}: broken YAML{at}: {problem}", "fix the syntax (indentation, colons, quotes)") from None
    if not isinstance(data, dict):
        raise RefbenchError(f"{path}: expected a mapping of fields at the top level", f"see {example}")
    for key, values in (overrides or {}).items():
        data[key] = {**(data.get(key) or {}), **values}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RefbenchError(f"{path}: " + "; ".join(describe_errors(exc)), "fix the fields named") from None


def load_config(path: str | Path, runner: dict[str, Any] | None = None) -> BenchmarkConfig:
    """Read and validate a benchmark YAML (``runner`` overrides its runner fields, validated too)."""
    return load_yaml(path, BenchmarkConfig, "benchmarks/synthref_testA.yaml", {"runner": runner} if runner else None)


def describe_errors(exc: ValidationError, unknown: str = "unknown field") -> list[str]:
    """One short line per bad field: ``methods.0.scorer: Field required``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = unknown if err["type"] == "extra_forbidden" else err["msg"].removeprefix("Value error, ")  # a validator's own words
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines
