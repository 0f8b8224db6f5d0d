"""A tiny Kosmos-2: the real architecture (a CLIP vision tower, the latent-query resampler, the
Kosmos-2 text decoder) from a small config with random weights, at 28-pixel inputs; the image is 64
latent queries, as in the released model.

The tokenizer is built here (no tokenizer can be downloaded): byte-level BPE over the 256 byte
symbols, no merges, after XLM-R's special tokens ``<s>``, ``<pad>``, ``</s>``, ``<unk>``;
Kosmos2Processor adds its tag tokens (``<grounding>``, ``<phrase>``, ``<object>`` ...) and the 1024
patch-index tokens itself. The 64 ids after ``<unk>`` stand for the image's latent queries, as they
do in the released vocabulary.
"""

from __future__ import annotations

from pathlib import Path

SIDE = 28  # the input side (Kosmos-2's is 224)
PATCH = 14


def build(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny Kosmos2ForConditionalGeneration and its Kosmos2Processor to ``folder``."""
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
    tok.add_special_tokens(specials)
    tokenizer = T.PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    images = T.CLIPImageProcessor(size={"shortest_edge": SIDE}, crop_size={"height": SIDE, "width": SIDE})
    processor = T.Kosmos2Processor(image_processor=images, tokenizer=tokenizer)  # adds the tag and patch-index tokens
    ids = {s: processor.tokenizer.convert_tokens_to_ids(s) for s in specials}
    config = T.Kosmos2Config(
        text_config={"vocab_size": len(processor.tokenizer), "embed_dim": 32, "layers": 2, "ffn_dim": 64, "attention_heads": 2,
                     "max_position_embeddings": 256, "init_std": 1.0, "pad_token_id": ids["<pad>"], "bos_token_id": ids["<s>"], "eos_token_id": ids["</s>"]},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": SIDE, "patch_size": PATCH},
        latent_query_num=64)
    torch.manual_seed(seed)
    T.Kosmos2ForConditionalGeneration(config).eval().save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder
