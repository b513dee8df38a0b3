"""LMI's GPU instance types and the rule that scales a GPU profile to them (labelled estimate)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli.main import main
from optimizer.platform.gpu_instances import (
    GPUS,
    INSTANCES,
    gpu_for_device_name,
    instance,
    scale_model,
    scale_profile,
)
from optimizer.platform.latency_model import GpuLatencyModel, load_profile

# SYNTHETIC coefficients on the reference GPU's name: the rule's arithmetic is checked by hand.
H100 = GpuLatencyModel(device="cuda", gpu_name="NVIDIA H100 80GB HBM3", dtype="float16",
                       launch_ms=3.0, per_token_ms=1e-4, per_token_sq_ms=2e-8,
                       transfer_per_item_ms=1e-3, transfer_per_token_ms=1e-6)


def test_the_table_covers_the_lmi_gpu_classes_with_prices() -> None:
    assert {i.gpu.name for i in INSTANCES.values()} == {
        "Tesla T4", "NVIDIA A10G", "NVIDIA L4", "NVIDIA L40S"}
    assert set(INSTANCES) == {"g4dn.xlarge", "g5.xlarge", "g6.xlarge", "g6e.xlarge"}
    for spec in INSTANCES.values():
        assert spec.on_demand_usd_per_hour > 0 and spec.price_source and spec.gpu.source
        assert spec.gpu.fp16_tensor_tflops > spec.gpu.fp32_tflops > 0


def test_device_names_map_to_their_gpu_and_l4_is_not_l40s() -> None:
    assert gpu_for_device_name("NVIDIA H100 80GB HBM3") is GPUS["H100 80GB HBM3"]
    assert gpu_for_device_name("Tesla T4") is GPUS["T4"]
    assert gpu_for_device_name("NVIDIA L4") is GPUS["L4"]
    assert gpu_for_device_name("NVIDIA L40S") is GPUS["L40S"]
    with pytest.raises(ValueError, match="'NVIDIA B200'"):
        gpu_for_device_name("NVIDIA B200")
    with pytest.raises(ValueError, match="'p5.48xlarge'"):
        instance("p5.48xlarge")


def test_scaling_keeps_the_launch_floor_and_moves_compute_and_attention() -> None:
    l4 = scale_model(H100, GPUS["L4"])
    # by hand: FP16 tensor 989.4 / 121 for the dense term; 3350 / 300 GB/s for attention
    assert l4.per_token_ms == pytest.approx(1e-4 * 989.4 / 121.0)
    assert l4.per_token_sq_ms == pytest.approx(2e-8 * 3350.0 / 300.0)
    assert (l4.launch_ms, l4.transfer_per_item_ms, l4.transfer_per_token_ms) == (3.0, 1e-3, 1e-6)
    assert l4.gpu_name == "NVIDIA L4" and l4.dtype == "float16"
    assert l4.estimate.startswith("scaled from NVIDIA H100 80GB HBM3 to NVIDIA L4")
    assert "estimate" in l4.describe()
    assert l4.predict_ms(1, 16) == pytest.approx(H100.predict_ms(1, 16))  # the plateau stays
    assert l4.predict_ms(256, 256) > H100.predict_ms(256, 256)


def test_float32_scales_by_the_fp32_peak_and_t4_has_no_bfloat16() -> None:
    fp32 = GpuLatencyModel("cuda", "NVIDIA H100 80GB HBM3", "float32", 4.0, 6e-4, 3e-7)
    t4 = scale_model(fp32, GPUS["T4"])
    assert t4.per_token_ms == pytest.approx(6e-4 * 66.9 / 8.1)
    bf16 = GpuLatencyModel("cuda", "NVIDIA H100 80GB HBM3", "bfloat16", 4.0, 6e-4, 3e-7)
    with pytest.raises(ValueError, match="'bfloat16'"):
        scale_model(bf16, GPUS["T4"])


def test_a_scaled_profile_is_labelled_an_estimate_and_loads(tmp_path: Path) -> None:
    shipped, _ = load_profile(backend="gpu")
    scaled = scale_profile(shipped, "g6e.xlarge")
    assert scaled["estimate"].startswith("scaled from NVIDIA H100 80GB HBM3 to NVIDIA L40S")
    assert "reference run" in scaled["estimate"]  # the source's own label travels along
    assert scaled["instance"]["type"] == "g6e.xlarge" and scaled["grid"] == []
    assert scaled["scaled_from"]["grid"] == shipped["grid"]
    out = tmp_path / "g6e.json"
    out.write_text(json.dumps(scaled), encoding="utf-8")
    _, model = load_profile(out)
    assert model.gpu_name == "NVIDIA L40S" and model.estimate == scaled["estimate"]
    with pytest.raises(ValueError, match="'additive'"):
        scale_profile(load_profile(backend="cpu")[0], "g6.xlarge")


def test_cli_scales_a_profile_and_names_an_unknown_instance(tmp_path: Path, capsys) -> None:
    out = tmp_path / "g4dn.json"
    assert main(["profile", "--scale-to", "g4dn.xlarge", "--out", str(out)]) == 0
    assert "ESTIMATE: scaled from" in capsys.readouterr().out
    assert load_profile(out)[1].gpu_name == "Tesla T4"
    assert main(["profile", "--scale-to", "g7.xlarge"]) == 2
    assert "'g7.xlarge'" in capsys.readouterr().err
