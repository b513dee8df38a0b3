"""A GPU profile built from a reference timing file (shipped: the H100 reference, float32 and
float16)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from infra.cli.main import main
from optimizer.platform.latency_model import (
    DEFAULT_GPU_PROFILE,
    PROFILES_DIR,
    GpuLatencyModel,
    load_profile,
    model_from_dict,
)
from optimizer.profiling.reference import ReferenceProfileError, profile_from_reference

SHIPPED_REFERENCE = Path("optimizer/profiles/reference/minilm_h100_ms.json")
# SYNTHETIC, not a measurement: a known t(B, L) in the GPU form (a launch-bound plateau, then
# compute, plus transfers) whose coefficients the fit must recover.
KNOWN = GpuLatencyModel(device="cuda", gpu_name="Example GPU", dtype="float16", launch_ms=3.0,
                        per_token_ms=2e-4, per_token_sq_ms=1e-6, transfer_per_item_ms=5e-3)


def _reference(dtype: str = "float16") -> dict:
    grid = {f"{dtype}:{b}x{n}": KNOWN.predict_ms(b, n)
            for b in (1, 4, 16, 64, 256) for n in (16, 64, 256)}
    grid["float32:1x16"] = 99.0  # another dtype's entry is ignored
    return {"device": "Example GPU", "torch": "x", "grid": grid}


def test_the_fit_recovers_a_known_model_from_one_dtype() -> None:
    profile = profile_from_reference(_reference(), source="ref.json", dtype="float16")
    model = model_from_dict(profile["latency_model"])
    assert model.is_gpu and isinstance(model, GpuLatencyModel)
    for b, n in ((2, 32), (8, 128), (32, 200), (200, 100)):
        assert model.predict_ms(b, n) == pytest.approx(KNOWN.predict_ms(b, n), rel=1e-6)
    assert profile["fit"]["max_rel_err"] < 1e-6
    assert profile["source"]["file"] == "ref.json"
    assert len(profile["grid"]) == 15 and profile["device_name"] == "Example GPU"
    assert profile["estimate"] == model.estimate
    assert "not by `mbs profile`" in model.estimate


@pytest.mark.parametrize(("reference", "message"), [
    ({}, "no 'grid'"),
    ({"grid": {"float16:1x16": 1.0}}, r"dtypes present: \['float16'\]"),
    ({"grid": {"float32:1xZ": 1.0, "float32:2x2": 1, "float32:3x3": 1, "float32:4x4": 1}},
     "'float32:1xZ'"),
])
def test_bad_references_name_what_is_wrong(reference: dict, message: str) -> None:
    with pytest.raises(ReferenceProfileError, match=message):
        profile_from_reference(reference, source="ref.json")


@pytest.mark.parametrize(("dtype", "path"), [("float32", DEFAULT_GPU_PROFILE),
                                           ("float16", PROFILES_DIR / "gpu_fp16.json")])
def test_the_shipped_gpu_profile_is_the_reference_fit_of_its_dtype(dtype: str,
                                                                   path: Path) -> None:
    reference = json.loads(SHIPPED_REFERENCE.read_text(encoding="utf-8"))
    expected = profile_from_reference(reference, source=str(SHIPPED_REFERENCE), dtype=dtype)
    shipped, model = load_profile(path)
    stale = (f"stale: run `mbs profile --from-reference {SHIPPED_REFERENCE} --dtype {dtype} "
             f"--out {path.name}`")
    fitted = ("latency_model", "fit")
    assert {k: v for k, v in shipped.items() if k not in fitted} == \
        {k: v for k, v in expected.items() if k not in fitted}, stale
    for key in fitted:
        numbers = {k for k, v in expected[key].items() if isinstance(v, float)}
        assert {k: v for k, v in shipped[key].items() if k not in numbers} == \
            {k: v for k, v in expected[key].items() if k not in numbers}, stale
        for k in numbers:
            assert shipped[key][k] == pytest.approx(expected[key][k], rel=1e-9, abs=1e-15), stale
    assert model.is_gpu and model.predict_ms(256, 256) > model.predict_ms(1, 16)


def test_cli_writes_a_loadable_profile_and_names_a_missing_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps(_reference("float32")), encoding="utf-8")
    out = tmp_path / "gpu.json"
    assert main(["profile", "--from-reference", str(ref), "--out", str(out)]) == 0
    assert load_profile(out)[1].is_gpu
    assert main(["profile", "--from-reference", str(tmp_path / "absent.json")]) == 2
    assert "absent.json" in capsys.readouterr().err
