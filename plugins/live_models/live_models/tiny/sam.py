"""A tiny SAM: transformers' SamModel from a small SamConfig with random weights, and its processor.

The real architecture (ViT image encoder with windowed and global attention, prompt encoder, two-way
mask decoder) at 64-pixel inputs, a 32-wide encoder of two layers and 16-channel embeddings, so a
box prompt runs in milliseconds on a CPU. The processor is SamProcessor with SamImageProcessor set to
the same 64-pixel side (``size.longest_edge`` and ``pad_size``), so its resizing, padding and
``post_process_masks`` run as they do for facebook/sam-vit-*, only smaller.
"""

from __future__ import annotations

from pathlib import Path

SIDE = 64  # the encoder's input side (SAM's is 1024)
PATCH = 8  # image_size / patch_size = an 8x8 embedding grid; masks come out at 4x that (32x32)
CHANNELS = 16  # image-embedding channels = prompt and mask-decoder width (SAM's is 256)


def build(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny SamModel and its SamProcessor to ``folder`` (save_pretrained) and return it."""
    import torch
    from transformers import SamConfig, SamImageProcessor, SamModel, SamProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    config = SamConfig(
        vision_config={"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "image_size": SIDE,
                       "patch_size": PATCH, "window_size": 4, "global_attn_indexes": [1], "output_channels": CHANNELS,
                       "num_pos_feats": CHANNELS // 2, "mlp_dim": 64},
        prompt_encoder_config={"hidden_size": CHANNELS, "image_size": SIDE, "patch_size": PATCH, "mask_input_channels": 4},
        mask_decoder_config={"hidden_size": CHANNELS, "num_hidden_layers": 2, "num_attention_heads": 2, "mlp_dim": 32,
                             "iou_head_hidden_dim": 16},
    )
    SamModel(config).eval().save_pretrained(folder)
    processor = SamProcessor(SamImageProcessor(size={"longest_edge": SIDE}, pad_size={"height": SIDE, "width": SIDE},
                                               mask_size={"longest_edge": SIDE // 4},
                                               mask_pad_size={"height": SIDE // 4, "width": SIDE // 4}))
    processor.save_pretrained(folder)
    return folder
