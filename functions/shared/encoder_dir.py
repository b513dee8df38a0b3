"""What a local sentence-transformers encoder directory says: its modules, pooling, length, name.

Plain JSON reading (no torch), so the tokenizer-only functions can use it too. The layout is
sentence-transformers' own (`SentenceTransformer.save`): modules.json lists the modules in
order; the Transformer module's folder holds config.json, the weights, tokenizer.json and
sentence_bert_config.json (max_seq_length); the Pooling module's folder holds config.json with
one `pooling_mode_*` flag set; a Normalize module L2-normalises. A directory without
modules.json is read as sentence-transformers reads a plain Hugging Face model: the encoder,
then mean pooling, no normalisation (sentence-transformers' "Creating a new one with mean
pooling" fallback).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_MODEL_ID = "all-MiniLM-L6-v2"  # the name the packaged default reports
_ST = "sentence_transformers.models."
TRANSFORMER, POOLING, NORMALIZE = f"{_ST}Transformer", f"{_ST}Pooling", f"{_ST}Normalize"
POOLING_MODES = ("cls_token", "mean_tokens", "max_tokens", "mean_sqrt_len_tokens")


class EncoderDirError(ValueError):
    """The directory is not an encoder MBS can serve; the message names the file and value."""


@dataclass(frozen=True)
class EncoderSpec:
    """How to run one encoder directory the way sentence-transformers runs it."""

    directory: Path
    transformer_dir: Path  # config.json, the weights and tokenizer.json
    pooling: str  # one of POOLING_MODES
    normalize: bool
    max_seq_length: int | None  # None: the directory does not say
    dimension: int | None  # the pooled vector's size, where the pooling config says


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise EncoderDirError(f"{path} is not JSON ({err})") from None


def _pooling(path: Path) -> tuple[str, int | None]:
    config = _json(path) if path.is_file() else {}
    modes = [m for m in POOLING_MODES if config.get(f"pooling_mode_{m}")]
    others = sorted(k for k, v in config.items() if k.startswith("pooling_mode_") and v
                    and k.removeprefix("pooling_mode_") not in POOLING_MODES)
    if others or len(modes) != 1:
        raise EncoderDirError(f"{path}: MBS serves exactly one of the pooling modes "
                              f"{list(POOLING_MODES)}, got {modes + others}")
    dimension = config.get("word_embedding_dimension")
    return modes[0], int(dimension) if dimension else None


def read_encoder_spec(directory: str | Path) -> EncoderSpec:
    """The EncoderSpec of `directory`; EncoderDirError names what is missing or unsupported."""
    directory = Path(directory)
    if not directory.is_dir():
        raise EncoderDirError(f"no encoder directory at {directory}")
    modules_file = directory / "modules.json"
    if not modules_file.is_file():
        config = _json(directory / "sentence_bert_config.json") \
            if (directory / "sentence_bert_config.json").is_file() else {}
        return EncoderSpec(directory, directory, "mean_tokens", False,
                           config.get("max_seq_length"), None)
    modules = _json(modules_file)
    kinds = [m.get("type") for m in modules]
    unsupported = [k for k in kinds if k not in (TRANSFORMER, POOLING, NORMALIZE)]
    if unsupported or kinds[:2] != [TRANSFORMER, POOLING]:
        raise EncoderDirError(f"{modules_file}: MBS serves Transformer, Pooling and an optional "
                              f"Normalize, in that order; got {kinds}")
    transformer_dir = directory / modules[0].get("path", "")
    pooling, dimension = _pooling(directory / modules[1].get("path", "") / "config.json")
    bert_config = transformer_dir / "sentence_bert_config.json"
    max_seq_length = _json(bert_config).get("max_seq_length") if bert_config.is_file() else None
    return EncoderSpec(directory, transformer_dir, pooling, NORMALIZE in kinds,
                       int(max_seq_length) if max_seq_length else None, dimension)


def model_name(directory: Path, default_directory: Path) -> str:
    """What replies report: the default model's id, or the directory's own name."""
    if directory.resolve() == default_directory.resolve():
        return DEFAULT_MODEL_ID
    return directory.resolve().name
