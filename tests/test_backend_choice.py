"""The backend choice (optimizer/search/backend_choice.py) both ways on tiny workloads, and the
BERT-base profiles' scaling rule (optimizer/profiling/encoder_scaling.py) by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra.cli.common import resolve_profile
from optimizer.platform.latency_model import (
    PROFILES_DIR,
    GpuLatencyModel,
    LatencyModel,
    load_profile,
)
from optimizer.platform.pricing import Pricing
from optimizer.profiling.encoder_scaling import (
    BERT_BASE,
    ESTIMATE_LABEL,
    MINILM,
    ShapeRatios,
    scale_cpu_model,
    scale_gpu_model,
    scaled_profile,
)
from optimizer.search.backend_choice import choose_backend

# SYNTHETIC models, not measurements: a slow CPU encoder and a GPU-shaped one on a T4
CPU = LatencyModel(device="cpu", threads=2, fixed_ms=20.0, per_item_ms=0.0, per_token_ms=1.5,
                   per_token_sq_ms=0.0, parallel_fraction=0.8)
GPU = GpuLatencyModel(device="cuda", gpu_name="Tesla T4", dtype="float16", launch_ms=3.0,
                      per_token_ms=0.002, per_token_sq_ms=0.0)


def _trace(rate_per_s: float, span_s: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    count = max(int(rate_per_s * span_s), 2)
    return np.sort(rng.uniform(0.0, span_s, count)), rng.integers(4, 33, count)


def _choose(rate_per_s: float, slo_ms: float = 1000.0):
    arrivals, lengths = _trace(rate_per_s, 300.0)
    return choose_backend(arrivals, lengths, CPU, GPU, Pricing(), slo_ms, 99.0, evals=12,
                          max_buffers=2, instance_types=("g4dn.xlarge",))


def test_a_near_idle_trace_goes_to_lambda() -> None:
    # GIVEN 30 requests in 5 minutes: three GPU instances would idle the whole time (an SLO
    # of 10 s, which Lambda's cold starts meet)
    choice = _choose(0.1, 10_000.0)
    assert choice.backend == "lambda"
    assert choice.lambda_usd < choice.gpu_usd
    line = choice.reason()
    assert line.startswith("lambda: $") and "(modelled)" in line and "g4dn.xlarge" in line
    assert "\n" not in line


def test_a_dense_trace_goes_to_the_gpu_fleet() -> None:
    # GIVEN 200 requests a second (SLO 10 s): the Lambda GB-seconds outgrow the fleet's floor
    choice = _choose(200.0, 10_000.0)
    assert choice.backend == "gpu"
    assert choice.gpu_usd < choice.lambda_usd
    assert choice.reason().startswith("gpu: $") and "on CPU Lambda at this rate" in choice.reason()
    assert choice.to_dict()["gpu_plan"]["backend"] == "gpu"


def test_the_bert_base_ratios_by_hand() -> None:
    r = ShapeRatios.between(MINILM, BERT_BASE)
    # dense: 12 x 768^2 / (6 x 384^2) = 8; attention's length term 12 x 768 / (6 x 384) = 4
    assert (r.dense, r.attention, r.layers, r.hidden) == (8.0, 4.0, 2.0, 2.0)
    gpu = scale_gpu_model(GPU, MINILM, BERT_BASE)
    assert gpu.launch_ms == GPU.launch_ms  # the launch floor is kept
    assert gpu.per_token_ms == pytest.approx(8 * GPU.per_token_ms)
    assert ESTIMATE_LABEL in gpu.estimate
    cpu = scale_cpu_model(CPU, MINILM, BERT_BASE)
    assert (cpu.fixed_ms, cpu.per_token_ms) == (40.0, pytest.approx(12.0))
    assert cpu.parallel_fraction == CPU.parallel_fraction


@pytest.mark.parametrize(("source", "shipped"), [("cpu.json", "bert_base_cpu.json"),
                                                 ("gpu.json", "bert_base_gpu.json")])
def test_the_shipped_bert_base_profiles_follow_the_rule(source: str, shipped: str) -> None:
    minilm = json.loads((PROFILES_DIR / source).read_text(encoding="utf-8"))
    bert = json.loads((PROFILES_DIR / shipped).read_text(encoding="utf-8"))
    assert bert["latency_model"] == scaled_profile(minilm)["latency_model"]
    assert ESTIMATE_LABEL in bert["estimate"] and "grid" not in bert
    _, small = load_profile(PROFILES_DIR / source)
    _, large = load_profile(PROFILES_DIR / shipped)
    assert large(32, 128, 1769) > small(32, 128, 1769)


def test_profile_names_resolve_per_backend() -> None:
    assert Path(resolve_profile("bert-base", "gpu", ("lambda", "gpu"))).name == \
        "bert_base_gpu.json"
    assert Path(resolve_profile("bert-base", "lambda")).name == "bert_base_cpu.json"
    assert resolve_profile("a.json,b.json", "gpu", ("lambda", "gpu")) == "b.json"
    assert resolve_profile(None, "gpu") is None
    with pytest.raises(ValueError, match="names 3 files for 2 backends"):
        resolve_profile("a,b,c", "gpu", ("lambda", "gpu"))


def test_mbs_optimize_says_which_backend_and_why_in_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from buffers.plan_files import load_plan
    from infra.cli.main import main

    out = tmp_path / "plan.json"
    window = ["--workload", "azure-code", "--start", "0", "--duration", "900"]
    assert main(["optimize", *window, "--evals", "40", "--max-buffers", "2",
                 "--instance-types", "g4dn.xlarge", "--out", str(out)]) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("backend: ")]
    # the trace's own rate: three GPU instances would idle, so CPU Lambda (modelled)
    assert len(lines) == 1 and lines[0].startswith("backend: lambda: $")
    assert "(modelled)" in lines[0]
    meta = load_plan(out).meta["backend"]
    assert meta["name"] == "lambda" and meta["choice"]["figures"] == "modelled"


def test_dense_traces_are_searched_on_whole_minutes() -> None:
    from optimizer.search.backend_choice import dense_sample

    arrivals, lengths = _trace(100.0, 600.0)  # 60,000 requests over 10 minutes
    same = dense_sample(arrivals, lengths, sample_requests=100_000)
    assert same[0] is arrivals and same[2] == ""
    a, n, note = dense_sample(arrivals, lengths, sample_requests=12_000)
    assert 6_000 < a.size < 24_000 and a.size == n.size  # 2 of the 10 minutes
    assert "searched on 2 of 10 minutes" in note
