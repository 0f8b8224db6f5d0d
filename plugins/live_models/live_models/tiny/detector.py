"""torchvision's Faster R-CNN v2 with random weights, saved as a user's ``.pth`` state dict.

Not tiny in parameters (the real resnet50-FPN, 175 MB): torchvision builds no smaller variant of
this architecture, and the ``torchvision_detector`` proposer should load the file it would load from
a user. What keeps it fast on a CPU is how it is run: ``min_size``/``max_size`` near the image's side
and few region proposals (``model_kwargs: {rpn_post_nms_top_n_test: 40}``), about 0.15 s per
128-px image on two cores instead of about 1 s with torchvision's 1000 proposals.
"""

from __future__ import annotations

from pathlib import Path

MODEL = "fasterrcnn_resnet50_fpn_v2"


def build(folder: str | Path, seed: int = 0, model: str = MODEL) -> Path:
    """Write ``<folder>/<model>.pth``, the random-weight state dict of torchvision's ``model``, and return the folder."""
    import torch
    from torchvision.models import get_model

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    torch.save(get_model(model, weights=None, weights_backbone=None).state_dict(), folder / f"{model}.pth")
    return folder
