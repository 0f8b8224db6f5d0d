"""Hook implementations: what this plugin adds to refbench.

Components are named as ``"module:Class"`` strings, so listing them (``refbench plugins``,
``--help``) imports neither torch nor open_clip; refbench imports a class when a run builds it.
"""

from __future__ import annotations

from refbench import hookimpl


@hookimpl
def refbench_prompters():
    return {"green_shade": "clip_shaded.prompter:GreenShade"}


@hookimpl
def refbench_scorers():
    return {"clip": "clip_shaded.scorer:ClipScorer"}


@hookimpl
def refbench_add_commands(subparsers):
    from .commands import add_commands

    add_commands(subparsers)
