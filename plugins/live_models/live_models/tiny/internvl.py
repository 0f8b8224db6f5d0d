"""A tiny InternVL (the ``*-hf`` layout): the real architecture (InternViT vision tower, pixel-shuffle
projector, Qwen2 decoder) from a small config with random weights. Tiles are 56 pixels (16 patches of
14, shuffled to 4 image tokens); the processor cuts each image into up to 4 tiles plus a thumbnail,
as the released processors cut theirs into up to 12, so images of different shapes take different
numbers of tokens.

The tokenizer is built here (no tokenizer can be downloaded): byte-level BPE over the 256 byte
symbols, no merges, plus Qwen's chat tokens and InternVL's image tokens ``<img>``, ``</img>`` and
``<IMG_CONTEXT>``, with a chat template of InternVL's shape (the image as ``<IMG_CONTEXT>`` before the text).
"""

from __future__ import annotations

from pathlib import Path

TILE = 56
PATCH = 14
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<img>", "</img>", "<IMG_CONTEXT>", "<video>"]
TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
            "{{ message['content'] }}{% else %}{% for c in message['content'] %}{% if c['type'] == 'image' %}"
            "<IMG_CONTEXT>\n{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
            "{% endfor %}{% endif %}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def build(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny InternVLForConditionalGeneration and its InternVLProcessor to ``folder``."""
    import torch
    import transformers as T
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tokenizer = T.Qwen2TokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None, bos_token=None,
                                     extra_special_tokens={"start_image_token": "<img>", "end_image_token": "</img>",
                                                           "context_image_token": "<IMG_CONTEXT>", "video_token": "<video>"})
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in SPECIALS}
    seq = (TILE // PATCH) ** 2 // 4  # tokens per tile after the 2x2 pixel shuffle
    config = T.InternVLConfig(
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": [TILE, TILE], "patch_size": [PATCH, PATCH]},
        text_config={"model_type": "qwen2", "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "max_position_embeddings": 2048, "initializer_range": 0.3,
                     "bos_token_id": ids["<|endoftext|>"], "eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"]},
        image_token_id=ids["<IMG_CONTEXT>"], image_seq_length=seq, downsample_ratio=0.5)
    torch.manual_seed(seed)
    model = T.InternVLForConditionalGeneration(config).eval()
    model.generation_config.pad_token_id, model.generation_config.eos_token_id = ids["<|endoftext|>"], ids["<|im_end|>"]
    model.save_pretrained(folder)
    images = T.GotOcr2ImageProcessor(size={"height": TILE, "width": TILE}, crop_to_patches=True, min_patches=1, max_patches=4)
    T.InternVLProcessor(image_processor=images, tokenizer=tokenizer, video_processor=T.InternVLVideoProcessor(),
                        image_seq_length=seq, chat_template=TEMPLATE).save_pretrained(folder)
    return folder
