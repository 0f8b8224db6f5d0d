"""The base of every component: its options, validated from its YAML block."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

from .errors import RefbenchError


class Options(BaseModel):
    """Base of every component's options: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """A configurable piece. Subclasses declare ``Options`` and take it in ``__init__``.

    Components are built in the main process and then used there and in the runner's
    worker processes (forked copies): keep state that a fork cannot carry (open CUDA
    contexts, threads) out of ``__init__`` unless the component is only used in the main
    process (see :attr:`Scorer.on_gpu`).
    """

    Options: ClassVar[type[Options]] = Options

    def __init__(self, options: Options | None = None) -> None:
        self.options = options if options is not None else type(self).Options()

    @classmethod
    def check(cls, options: Options) -> list[RefbenchError]:
        """Every problem with ``options`` that can be seen without loading anything heavy (missing
        files, settings this machine cannot run), all at once. ``refbench validate`` and the runner
        call it before building; ``__init__`` may still raise for what only loading reveals."""
        return []

    def describe(self) -> dict[str, Any]:
        """Provenance recorded in results (file hashes, resolved weights...)."""
        return {}
