"""Tiny VLMs of the Qwen2-VL and Qwen2.5-VL families, from small configs with random weights.

Each is the real architecture, shrunk: a one-block vision tower of width 32 (patch 14, 2x2 merge, as
the released models) and a two-layer language model of width 32. Their processors are the families'
own (``Qwen2VLProcessor``, ``Qwen2_5_VLProcessor``) with ``min_pixels``/``max_pixels`` small enough
that a 128-px SynthRef image becomes a few patches. No tokenizer can be downloaded, so one is built
here: byte-level BPE over the 256 byte symbols (no merges) plus the families' special tokens
(``<|im_start|>``, ``<|vision_start|>``, ``<|image_pad|>``, ``<|box_start|>`` ...), with a chat
template of the Qwen2-VL form (system turn, then the image's vision tokens and the text of each user
turn).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# The special tokens of Qwen2-VL / Qwen2.5-VL's tokenizer, in the order of their released ids.
QWEN_SPECIAL = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
                "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>", "<|vision_end|>",
                "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")

QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}"
    "{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def byte_tokenizer(special: tuple[str, ...], **kwargs: Any) -> Any:
    """A byte-level BPE tokenizer with no merges (every byte its own token) and ``special`` after the
    256 bytes, wrapped as a ``PreTrainedTokenizerFast``."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from tokenizers.pre_tokenizers import ByteLevel
    from transformers import PreTrainedTokenizerFast

    alphabet = ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in special])
    return PreTrainedTokenizerFast(tokenizer_object=tok, **kwargs)


def _qwen(folder: str | Path, seed: int, family: str) -> Path:
    import torch
    import transformers as T

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = byte_tokenizer(QWEN_SPECIAL, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                               chat_template=QWEN_CHAT_TEMPLATE)
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in QWEN_SPECIAL}
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 512,
            "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"],
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]}}
    vision: dict[str, Any] = {"depth": 1, "num_heads": 2, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2}
    if family == "qwen2_vl":
        vision.update(embed_dim=32, hidden_size=32, mlp_ratio=2)
        config_cls, model_cls, processor_cls = T.Qwen2VLConfig, T.Qwen2VLForConditionalGeneration, T.Qwen2VLProcessor
    else:
        vision.update(hidden_size=32, intermediate_size=64, out_hidden_size=32, window_size=56, fullatt_block_indexes=[0])
        config_cls, model_cls, processor_cls = T.Qwen2_5_VLConfig, T.Qwen2_5_VLForConditionalGeneration, T.Qwen2_5_VLProcessor
    config = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                        vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(seed)
    model_cls(config).eval().save_pretrained(folder)
    # 56x56 to 112x112 pixels: a 128-px image becomes at most 8x8 patches, i.e. 16 image tokens
    image_processor = T.Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    video_processor = T.Qwen2VLVideoProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    processor_cls(image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor,
                  chat_template=QWEN_CHAT_TEMPLATE).save_pretrained(folder)
    return folder


def build_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2VLForConditionalGeneration and its Qwen2VLProcessor to ``folder``."""
    return _qwen(folder, seed, "qwen2_vl")


def build_qwen2_5_vl(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny Qwen2_5_VLForConditionalGeneration and its Qwen2_5_VLProcessor to ``folder``."""
    return _qwen(folder, seed, "qwen2_5_vl")
