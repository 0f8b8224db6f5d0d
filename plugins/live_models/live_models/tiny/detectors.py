"""Tiny open-vocabulary detectors: Grounding DINO and OWLv2 from small configs with random weights.

Each is the real architecture, shrunk: Grounding DINO with a 16-wide Swin backbone of one block per
stage, a one-layer BERT and one encoder and two decoder layers at width 32 (two decoder layers
because the box heads of the layers after the first are tied to the first's); OWLv2 with one-layer
32-wide text and vision towers at 64-pixel inputs. Their tokenizers are built here, as no
tokenizer can be downloaded: a WordPiece vocabulary of letters and common words for Grounding
DINO's BERT, and a byte-pair vocabulary of single characters (no merges) for OWLv2's CLIP, whose pad
token "!" is id 0 as in CLIP's vocabulary (OWLv2 masks a query whose first id is 0). The processors
are the families' own, at small sizes, so resizing, padding and post-processing run as they do for
the downloaded models.
"""

from __future__ import annotations

import json
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz"
WORDS = ("the", "a", "an", "of", "on", "at", "in", "to", "by", "is", "that", "and", "next", "near", "beside", "only",
         "left", "right", "top", "bottom", "half", "shape", "big", "small", "biggest", "largest", "smallest", "tiniest",
         "red", "blue", "green", "yellow", "purple", "white", "black", "orange",
         "circle", "square", "triangle", "diamond", "star", "person", "man", "woman", "far", "cut")


def build_grounding_dino(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny GroundingDinoForObjectDetection and its GroundingDinoProcessor to ``folder``."""
    import torch
    from transformers import (BertConfig, BertTokenizerFast, GroundingDinoConfig, GroundingDinoForObjectDetection,
                              GroundingDinoImageProcessor, GroundingDinoProcessor, SwinConfig)

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "-", "'", *WORDS, *LETTERS,
             *(f"##{c}" for c in LETTERS), *"0123456789"]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(str(folder / "vocab.txt"), do_lower_case=True)
    (folder / "vocab.txt").unlink()  # the saved tokenizer.json holds it
    torch.manual_seed(seed)
    config = GroundingDinoConfig(
        backbone_config=SwinConfig(image_size=64, patch_size=4, embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                                   window_size=4, out_indices=[2, 3, 4]),
        text_config=BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=64),
        num_queries=20, encoder_layers=1, decoder_layers=2, encoder_ffn_dim=64, decoder_ffn_dim=64, d_model=32,
        encoder_attention_heads=2, decoder_attention_heads=2, num_feature_levels=3, max_text_len=32,
        encoder_n_points=2, decoder_n_points=2)
    GroundingDinoForObjectDetection(config).eval().save_pretrained(folder)
    image_processor = GroundingDinoImageProcessor(size={"shortest_edge": 64, "longest_edge": 96})
    GroundingDinoProcessor(image_processor, tokenizer).save_pretrained(folder)
    return folder


def build_owlv2(folder: str | Path, seed: int = 0) -> Path:
    """Write a tiny Owlv2ForObjectDetection and its Owlv2Processor to ``folder``."""
    import torch
    from transformers import CLIPTokenizerFast, Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"!": 0, "!</w>": 1, "<|startoftext|>": 2, "<|endoftext|>": 3}
    for c in LETTERS + "0123456789.,'-":
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n", encoding="utf-8")
    tokenizer = CLIPTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="!", model_max_length=16)
    torch.manual_seed(seed)
    config = Owlv2Config(
        text_config={"vocab_size": len(vocab), "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 2, "eos_token_id": 3,
                     "pad_token_id": 0},
        vision_config={"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 64, "patch_size": 16},
        projection_dim=32)
    Owlv2ForObjectDetection(config).eval().save_pretrained(folder)
    Owlv2Processor(Owlv2ImageProcessor(size={"height": 64, "width": 64}), tokenizer).save_pretrained(folder)
    return folder
