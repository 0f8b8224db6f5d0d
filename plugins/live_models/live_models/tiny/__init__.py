"""Tiny models of each family, built from configs with random weights and saved with
``save_pretrained``: what the tests and the SynthRef live-model demo load through the same code
path as downloaded weights. They answer nonsense; they exercise the plumbing.

``BUILDERS`` maps a name to ``"module:function"``; each function takes a folder, writes the model
(with its processor and tokenizer files) there and returns it.
"""

from __future__ import annotations

BUILDERS: dict[str, str] = {
    "sam": "live_models.tiny.sam:build",
    "fasterrcnn_resnet50_fpn_v2": "live_models.tiny.detector:build",
    "grounding_dino": "live_models.tiny.detectors:build_grounding_dino",
    "owlv2": "live_models.tiny.detectors:build_owlv2",
    "qwen2_vl": "live_models.tiny.qwen:build_qwen2_vl",
    "qwen2_5_vl": "live_models.tiny.qwen:build_qwen2_5_vl",
    "paligemma": "live_models.tiny.paligemma:build",
    "florence2": "live_models.tiny.florence2:build",
    "kosmos2": "live_models.tiny.kosmos2:build",
    "internvl": "live_models.tiny.internvl:build",
}
