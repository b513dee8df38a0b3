"""Inputs as the service batches them: cut to the model's 256 tokens and counted."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from functions.shared.tokenizer import truncate_text


@dataclass(frozen=True)
class PreparedInput:
    text: str  # what the model reads: the input cut after its 256th token's word
    tokens: int  # tokens the model sees, [CLS] and [SEP] included (routes the input)
    full_tokens: int  # before truncation

    @property
    def truncated(self) -> bool:
        return self.full_tokens > self.tokens


def prepare_inputs(texts: Sequence[str]) -> list[PreparedInput]:
    """Cut and count each text with the model's own tokenizer (as the bulk path does)."""
    out = []
    for text in texts:
        cut, count = truncate_text(text)
        out.append(PreparedInput(cut, count.length, count.full_length))
    return out
