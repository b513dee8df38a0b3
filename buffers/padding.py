"""Padding accounting: a batch is padded to its longest member, so it costs B x max(L)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


def padding_overhead(real_tokens: float, padded_tokens: float) -> float:
    """Padded over real tokens, minus one: 0.0 means no padding waste (and no tokens at all)."""
    return padded_tokens / real_tokens - 1.0 if real_tokens else 0.0


@dataclass(frozen=True)
class PaddingStats:
    """Real and padded token counts of one batch, or summed over many."""

    real_tokens: int
    padded_tokens: int
    batches: int = 1
    requests: int = 0

    @property
    def overhead(self) -> float:
        """Padded over real tokens, minus one: 0.0 means no padding waste."""
        return padding_overhead(self.real_tokens, self.padded_tokens)

    @property
    def efficiency(self) -> float:
        """Share of computed tokens that were real."""
        return self.real_tokens / self.padded_tokens if self.padded_tokens else 1.0

    def __add__(self, other: PaddingStats) -> PaddingStats:
        return PaddingStats(
            real_tokens=self.real_tokens + other.real_tokens,
            padded_tokens=self.padded_tokens + other.padded_tokens,
            batches=self.batches + other.batches,
            requests=self.requests + other.requests,
        )


EMPTY = PaddingStats(real_tokens=0, padded_tokens=0, batches=0, requests=0)


def batch_padding(lengths: Sequence[int]) -> PaddingStats:
    """Padding of one batch of requests with these token lengths."""
    if not lengths:
        raise ValueError("a batch must hold at least one request, got []")
    if min(lengths) < 1:
        raise ValueError(f"token lengths must be >= 1, got {min(lengths)}")
    return PaddingStats(
        real_tokens=sum(lengths),
        padded_tokens=len(lengths) * max(lengths),
        batches=1,
        requests=len(lengths),
    )

