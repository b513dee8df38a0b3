"""Size-or-timeout, first come first served: MBS's and BATCH's rule (Ali et al., SC'20)."""

from __future__ import annotations

from collections.abc import Sequence

from buffers.policies.base import BatchPolicy, token_capped


class SizeTimeoutPolicy(BatchPolicy):
    """Flush at max_batch_size (or the token budget) or when the oldest waited timeout_ms."""

    name = "size_timeout"

    def select(self, pending: Sequence, spec, now_s: float) -> list[int]:
        return token_capped(range(len(pending)), pending, spec)
