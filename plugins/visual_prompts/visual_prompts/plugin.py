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
        "mask_shade": "visual_prompts.masks:MaskShade",
        "blur_reverse_mask": "visual_prompts.masks:BlurReverseMask",
        "grayscale_reverse_mask": "visual_prompts.masks:GrayscaleReverseMask",
    }


@hookimpl
def refbench_combinators():
    return {"reclip_relations": "visual_prompts.relations:ReclipRelations"}
