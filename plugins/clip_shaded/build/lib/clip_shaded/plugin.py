"""Hook implementations: what this plugin adds to refbench."""

from __future__ import annotations

from refbench import hookimpl

from .prompter import GreenShade
from .scorer import ClipScorer


@hookimpl
def refbench_prompters():
    return {"green_shade": GreenShade}


@hookimpl
def refbench_scorers():
    return {"clip": ClipScorer}


@hookimpl
def refbench_add_commands(subparsers):
    from .train import add_command

    add_command(subparsers)
