"""The hooks a refbench plugin implements: this file is the table of contents.

A plugin is a module (or object) registered under the ``refbench`` entry-point group::

    [project.entry-points.refbench]
    my_prompter = "my_package.plugin"

whose functions are decorated with :data:`refbench.hookimpl`. Each component hook returns a
mapping ``name -> class``, or ``name -> "module:Class"``: a string is imported only when a
run builds the component, so keep the entry-point module light (no torch, no model
library) and name heavy classes by string. Names are what benchmark YAMLs write in
``plugin:``. Built-in components are registered through these same hooks (``refbench.builtins``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Union

import pluggy

if TYPE_CHECKING:
    from .interfaces import Combinator, Dataset, Grounder, Prompter, Proposer, Scorer

hookspec = pluggy.HookspecMarker("refbench")
hookimpl = pluggy.HookimplMarker("refbench")
"""Marks a plugin module's functions as implementations of refbench's hooks (``@hookimpl``)."""


@hookspec
def refbench_datasets() -> dict[str, Union[type[Dataset], str]]:
    """Data sets this plugin reads (``dataset: {plugin: NAME, ...}``)."""


@hookspec
def refbench_proposers() -> dict[str, Union[type[Proposer], str]]:
    """Candidate-box sources (``proposer: {plugin: NAME, ...}``)."""


@hookspec
def refbench_prompters() -> dict[str, Union[type[Prompter], str]]:
    """Visual prompts: how a candidate box is shown to a scorer (``prompter: {plugin: NAME}``)."""


@hookspec
def refbench_scorers() -> dict[str, Union[type[Scorer], str]]:
    """Models that score phrases against prompted views (``scorer: {plugin: NAME}``)."""


@hookspec
def refbench_combinators() -> dict[str, Union[type[Combinator], str]]:
    """Methods built from other methods' logits, e.g. ensembles (``combine: {plugin: NAME}``)."""


@hookspec
def refbench_grounders() -> dict[str, Union[type[Grounder], str]]:
    """Methods that predict a box per phrase directly, e.g. from a predictions file (``ground: {plugin: NAME}``)."""


@hookspec
def refbench_add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add CLI subcommands. Give each parser ``set_defaults(handler=fn)``; ``fn(args) -> int``.
    Runs on every start of the CLI (``--help`` too): import heavy modules inside ``fn``."""
