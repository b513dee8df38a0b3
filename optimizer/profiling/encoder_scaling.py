"""A latency profile for a larger encoder, derived from a measured one by FLOPs. Pure.

No GPU was lent to the session that added the BERT-base-shaped encoder, so it could not be
measured; its profiles are the MiniLM ones scaled by the rule below and labelled
"estimate, scaled from MiniLM, not measured" (ESTIMATE_LABEL) in the profile and in the model.

Rule (a BERT encoder of `layers` x `hidden`, feed-forward 4 x hidden, as both MiniLM-L6 and
BERT-base are; Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Table 1, counts
a forward pass the same way):
- per token, per layer, the dense layers (Q, K, V, output, and the 4h feed-forward) cost
  24 x hidden^2 FLOPs: `per_token_ms` scales by layers x hidden^2 (MiniLM -> BERT-base: x8);
- attention's length term (Q K^T and the weighted sum of V) costs 4 x hidden x L per token,
  per layer: `per_token_sq_ms` (the B x L^2 term) scales by layers x hidden (x4). On a GPU
  that term is fitted as eager attention's score traffic, which grows with layers x heads
  (12 heads in both: x2), so x4 is the cautious side there;
- GPU: the launch floor `launch_ms` is kept (the rule of optimizer/platform/gpu_instances.py;
  an eager pass of twice the layers launches about twice the kernels, so a measured BERT-base
  plateau may sit higher), and the transfer terms are kept (token ids in, one row out: the
  embedding is 768 wide, not 384, a few KB a row);
- CPU: `fixed_ms` (per-pass overhead, per-op dispatch in each layer) scales by layers (x2),
  `per_item_ms` (per row: embedding lookup and pooling) by hidden (x2), and the Amdahl
  parallel fraction is kept.
The measured grid is not carried over (it is MiniLM's); `fit` moves under `scaled_from`: it is
the source's fit on its own grid, the only fit quality a scaled model has.
`mbs profile --scale-encoder bert-base --profile FILE` writes one (optimizer/profiles/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from optimizer.platform.latency_model import GpuLatencyModel, LatencyModel, model_from_dict

ESTIMATE_LABEL = "estimate, scaled from MiniLM, not measured"


@dataclass(frozen=True)
class EncoderShape:
    """A BERT-style encoder's shape: what its FLOPs per token depend on."""

    name: str
    layers: int
    hidden: int
    heads: int

    def __post_init__(self) -> None:
        if min(self.layers, self.hidden, self.heads) < 1:
            raise ValueError(f"layers, hidden and heads must be >= 1, got {self.layers}, "
                             f"{self.hidden}, {self.heads}")


MINILM = EncoderShape("all-MiniLM-L6-v2", layers=6, hidden=384, heads=12)
BERT_BASE = EncoderShape("BERT-base (bert-base-uncased shape)", layers=12, hidden=768, heads=12)
TARGET_SHAPES = {"bert-base": BERT_BASE}  # `mbs profile --scale-encoder NAME`


@dataclass(frozen=True)
class ShapeRatios:
    """The factors the module's rule multiplies each coefficient by."""

    dense: float  # layers x hidden^2
    attention: float  # layers x hidden
    layers: float
    hidden: float

    @classmethod
    def between(cls, source: EncoderShape, target: EncoderShape) -> ShapeRatios:
        dense = (target.layers * target.hidden ** 2) / (source.layers * source.hidden ** 2)
        return cls(dense=dense,
                   attention=(target.layers * target.hidden) / (source.layers * source.hidden),
                   layers=target.layers / source.layers, hidden=target.hidden / source.hidden)


def _why(source: EncoderShape, target: EncoderShape, r: ShapeRatios) -> str:
    return (f"{ESTIMATE_LABEL}: {target.name} ({target.layers} layers x {target.hidden}) from "
            f"{source.name} ({source.layers} x {source.hidden}) by FLOPs per token: dense "
            f"x{r.dense:g}, attention's length term x{r.attention:g} "
            f"(optimizer/profiling/encoder_scaling.py)")


def scale_gpu_model(model: GpuLatencyModel, source: EncoderShape,
                    target: EncoderShape) -> GpuLatencyModel:
    """The GPU form for `target`: compute terms by FLOPs, launch floor and transfers kept."""
    r = ShapeRatios.between(source, target)
    why = _why(source, target, r)
    if model.estimate:
        why += f"; the source was itself an estimate: {model.estimate}"
    return replace(model, per_token_ms=model.per_token_ms * r.dense,
                   per_token_sq_ms=model.per_token_sq_ms * r.attention, estimate=why)


def scale_cpu_model(model: LatencyModel, source: EncoderShape,
                    target: EncoderShape) -> LatencyModel:
    """The CPU form for `target` by the module's rule (parallel fraction kept)."""
    r = ShapeRatios.between(source, target)
    return replace(model, fixed_ms=model.fixed_ms * r.layers,
                   per_item_ms=model.per_item_ms * r.hidden,
                   per_token_ms=model.per_token_ms * r.dense,
                   per_token_sq_ms=model.per_token_sq_ms * r.attention)


def scaled_profile(profile: dict[str, Any], source: EncoderShape = MINILM,
                   target: EncoderShape = BERT_BASE) -> dict[str, Any]:
    """`profile` (CPU or GPU) moved to `target`'s shape; the grid is dropped, and the fit kept
    under `scaled_from` (the source's fit on its grid)."""
    model = model_from_dict(profile["latency_model"])
    if isinstance(model, GpuLatencyModel):
        scaled: GpuLatencyModel | LatencyModel = scale_gpu_model(model, source, target)
    else:
        scaled = scale_cpu_model(model, source, target)
    r = ShapeRatios.between(source, target)
    kept = {k: v for k, v in profile.items()
            if k not in ("grid", "fit", "amdahl", "estimate", "model", "cold_start")}
    return {**kept, "model": f"{target.name}, random weights; {ESTIMATE_LABEL}",
            "estimate": _why(source, target, r),
            "scaled_from": {"model": profile.get("model"), "shape": vars(source),
                            "target_shape": vars(target), "ratios": vars(r),
                            "rule": "optimizer/profiling/encoder_scaling.py",
                            "fit": profile.get("fit")},
            "latency_model": scaled.to_dict(),
            # a model 4.9x the parameters loads longer; MiniLM's cold start is kept as a floor
            "cold_start_ms": profile.get("cold_start_ms")}
