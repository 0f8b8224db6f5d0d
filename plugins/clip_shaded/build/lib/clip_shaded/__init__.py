"""refbench plugin: CLIP scoring green-shaded candidate boxes, and its fine-tuning recipe."""

from .prompter import GreenShade
from .scorer import ClipScorer, load_checkpoint, save_checkpoint

__all__ = ["ClipScorer", "GreenShade", "load_checkpoint", "save_checkpoint"]
