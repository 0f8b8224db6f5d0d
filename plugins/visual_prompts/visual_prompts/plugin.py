"""Hook implementation: the prompters this plugin adds, named as ``"module:Class"`` strings so
that listing them (``refbench plugins``) imports nothing but this module."""

from __future__ import annotations

from refbench import hookimpl


@hookimpl
def refbench_prompters():
    return {
        "blur": "visual_prompts.prompters:Blur",
        "red_circle": "visual_prompts.prompters:RedCircle",
        "cpt_shade": "visual_prompts.prompters:CptShade",
        "grayscale_outside": "visual_prompts.prompters:GrayscaleOutside",
    }


@hookimpl
def refbench_combinators():
    return {"reclip_relations": "visual_prompts.relations:ReclipRelations"}
