"""Tiny Qwen2-VL and Qwen2.5-VL: the real architectures from small configs with random weights.

Two 32-wide decoder layers and a one-block vision tower of patch 14 (merged 2x2, as the real
models), saved with save_pretrained beside the family's processor. The tokenizer is built here (no
tokenizer can be downloaded): byte-level BPE over the 256 byte symbols, no merges, plus the special
tokens the Qwen processors and prompts use (``<|vision_start|>``, ``<|image_pad|>``,
``<|object_ref_start|>``, ``<|box_start|>`` ...), and a chat template of Qwen's shape. The image
processor keeps inputs between 56x56 and 112x112 pixels, so a SynthRef image is 12 to 16 merged patches.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>", "<|box_start|>",
            "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
            "<|image_pad|>", "<|video_pad|>"]
# Qwen's chat shape: <|im_start|>role\n ... <|im_end|>\n, the image as <|vision_start|><|image_pad|><|vision_end|>
TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
            "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
            "<|vision_start|><|image_pad|><|vision_end|>{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
            "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tokenizer() -> Any:
    """The byte-level tokenizer with Qwen's special tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import Qwen2TokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    return Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None)


def _build(folder: str | Path, family: str, seed: int) -> Path:
    import torch
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tok = tokenizer()
    ids = {s: tok.convert_tokens_to_ids(s) for s in SPECIALS}
    text = {"vocab_size": len(tok), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
            "num_key_value_heads": 1, "max_position_embeddings": 2048,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 2, 4]},
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]}
    tokens = {"image_token_id": ids["<|image_pad|>"], "video_token_id": ids["<|video_pad|>"],
              "vision_start_token_id": ids["<|vision_start|>"], "vision_end_token_id": ids["<|vision_end|>"]}
    if family == "qwen2_5_vl":
        vision = {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2, "out_hidden_size": 32, "patch_size": 14,
                  "spatial_merge_size": 2, "window_size": 56, "fullatt_block_indexes": [0]}
        config = transformers.Qwen2_5_VLConfig(text_config=text, vision_config=vision, **tokens)
        model_class, processor_class = transformers.Qwen2_5_VLForConditionalGeneration, transformers.Qwen2_5_VLProcessor
    else:
        vision = {"depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2, "patch_size": 14, "spatial_merge_size": 2}
        config = transformers.Qwen2VLConfig(text_config=text, vision_config=vision, **tokens)
        model_class, processor_class = transformers.Qwen2VLForConditionalGeneration, transformers.Qwen2VLProcessor
    torch.manual_seed(seed)
    model = model_class(config).eval()
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = ids["<|endoftext|>"], ids["<|im_end|>"]
    model.save_pretrained(folder)
    images = transformers.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112, patch_size=14, merge_size=2)
    processor_class(image_processor=images, tokenizer=tok, video_processor=transformers.Qwen2VLVideoProcessor(),
                    chat_template=TEMPLATE).save_pretrained(folder)
    return folder


def build_qwen2_5_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2_5_VLForConditionalGeneration and its processor to ``folder``."""
    return _build(folder, "qwen2_5_vl", seed)


def build_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2VLForConditionalGeneration and its processor to ``folder``."""
    return _build(folder, "qwen2_vl", seed)
