"""Hook implementations: what this plugin adds to refbench.

Components are named as ``"module:Class"`` strings, so listing them (``refbench plugins``,
``--help``) imports neither torch nor transformers; refbench imports a class when a run builds it.
"""

from __future__ import annotations

from refbench import hookimpl


@hookimpl
def refbench_grounders():
    return {
        "endpoint": "live_models.endpoint:EndpointGrounder",
        "grounding_dino": "live_models.detectors:GroundingDino",
        "owlv2": "live_models.detectors:Owlv2",
        "qwen2_vl": "live_models.qwen:Qwen2Vl",
        "qwen2_5_vl": "live_models.qwen:Qwen25Vl",
        "paligemma": "live_models.paligemma:PaliGemma",
        "florence2": "live_models.florence2:Florence2",
        "kosmos2": "live_models.kosmos2:Kosmos2",
        "internvl": "live_models.internvl:InternVl",
    }


@hookimpl
def refbench_add_commands(subparsers):
    from .export_dets import add_command  # argparse only; the export imports its modules when it runs

    add_command(subparsers)


@hookimpl
def refbench_proposers():
    return {
        "torchvision_detector": "live_models.proposals:TorchvisionDetector",
        "sam_masks": "live_models.sam:SamMasks",
    }
