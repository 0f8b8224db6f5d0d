"""A tiny PaliGemma: the real architecture (SigLIP vision tower, linear projection, Gemma decoder)
from a small config with random weights, at 56-pixel inputs (16 image tokens).

The tokenizer is built here (no tokenizer can be downloaded): byte-level BPE over the 256 byte
symbols, no merges, plus PaliGemma's special tokens: ``<pad>``, ``<eos>``, ``<bos>``, ``<unk>``,
``<image>`` and the 1024 location tokens ``<loc0000>`` ... ``<loc1023>``.
"""

from __future__ import annotations

from pathlib import Path

SIDE = 56  # the input side (PaliGemma's are 224, 448 and 896)
PATCH = 14


def build(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny PaliGemmaForConditionalGeneration and its PaliGemmaProcessor to ``folder``."""
    import torch
    import transformers as T
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={**{c: i for i, c in enumerate(alphabet)}, "<unk>": len(alphabet)}, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<pad>", "<eos>", "<bos>", "<unk>", "<image>", *(f"<loc{i:04d}>" for i in range(1024))])
    tokenizer = T.GemmaTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>")
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in ("<pad>", "<eos>", "<bos>", "<image>")}
    config = T.PaliGemmaConfig(
        text_config={"model_type": "gemma", "vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 64,
                     "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "initializer_range": 0.3,
                     "pad_token_id": ids["<pad>"], "bos_token_id": ids["<bos>"], "eos_token_id": ids["<eos>"]},
        vision_config={"model_type": "siglip_vision_model", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": SIDE, "patch_size": PATCH, "projection_dim": 32},
        projection_dim=32, image_token_index=ids["<image>"], vocab_size=len(tokenizer))
    torch.manual_seed(seed)
    T.PaliGemmaForConditionalGeneration(config).eval().save_pretrained(folder)
    images = T.SiglipImageProcessor(size={"height": SIDE, "width": SIDE})
    images.image_seq_length = (SIDE // PATCH) ** 2
    T.PaliGemmaProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder
