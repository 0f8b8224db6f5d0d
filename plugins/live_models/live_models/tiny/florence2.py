"""A tiny Florence-2: the real architecture (a one-stage DaViT vision tower, its projection, a BART
encoder-decoder) from a small config with random weights, at 32-pixel inputs (8x8 patches and one
pooled token: 65 image tokens).

The tokenizer is built here (no tokenizer can be downloaded): byte-level BPE over the 256 byte
symbols, no merges, plus BART's special tokens ``<s>``, ``<pad>``, ``</s>``, ``<unk>``, the image
token ``<image>`` and Florence-2's 1000 location tokens ``<loc_0>`` ... ``<loc_999>``.
"""

from __future__ import annotations

from pathlib import Path

SIDE = 32  # the input side (Florence-2's is 768)


def build(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny Florence2ForConditionalGeneration and its Florence2Processor to ``folder``."""
    import torch
    import transformers as T
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    specials = ["<s>", "<pad>", "</s>", "<unk>"]
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={**{s: i for i, s in enumerate(specials)}, **{c: i + 4 for i, c in enumerate(alphabet)}},
                               merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([*specials, "<image>", *(f"<loc_{i}>" for i in range(1000))])
    tokenizer = T.BartTokenizer(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                extra_special_tokens={"image_token": "<image>"})
    ids = {s: tokenizer.convert_tokens_to_ids(s) for s in (*specials, "<image>")}
    config = T.Florence2Config(
        text_config={"model_type": "bart", "vocab_size": len(tokenizer), "d_model": 32, "encoder_layers": 1, "decoder_layers": 1,
                     "encoder_attention_heads": 2, "decoder_attention_heads": 2, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64,
                     "max_position_embeddings": 256, "init_std": 0.3, "bos_token_id": ids["<s>"], "pad_token_id": ids["<pad>"],
                     "eos_token_id": ids["</s>"], "decoder_start_token_id": ids["</s>"], "forced_eos_token_id": ids["</s>"]},
        vision_config={"depths": [1], "patch_size": [7], "patch_stride": [4], "patch_padding": [3], "patch_prenorm": [False],
                       "embed_dim": [32], "num_heads": [2], "num_groups": [2], "window_size": 4, "drop_path_rate": 0.0,
                       "projection_dim": 32},
        image_token_id=ids["<image>"])
    torch.manual_seed(seed)
    model = T.Florence2ForConditionalGeneration(config).eval()
    # as the released models generate: the decoder starts at </s>, <s> is forced next ("</s><s>...")
    model.generation_config = T.GenerationConfig(decoder_start_token_id=ids["</s>"], forced_bos_token_id=ids["<s>"],
                                                 bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], pad_token_id=ids["<pad>"])
    model.save_pretrained(folder)
    images = T.CLIPImageProcessor(size={"height": SIDE, "width": SIDE}, crop_size={"height": SIDE, "width": SIDE}, do_center_crop=False)
    images.image_seq_length = (SIDE // 4) ** 2 + 1
    T.Florence2Processor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder
