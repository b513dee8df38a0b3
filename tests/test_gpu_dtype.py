"""Half-precision GPU plans: the shipped float16 profiles, their names, the plan's meta.gpu_dtype,
and the GPU function deployed in that dtype (the CPU template and the local stack keep float32)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

import optimizer.compare.backend_search as backend_search
from buffers.plan import GPU_DTYPES, PlanError
from buffers.plan_files import load_plan, plan_from_dict, save_plan
from functions.shared.model import DEFAULT_DTYPE, HALF_DTYPES
from infra.aws.render import build_template
from infra.aws.template.gpu import GPU_FUNCTION
from infra.cli import compare_backends
from infra.cli.common import SHIPPED_ENCODERS, resolve_profile
from infra.cli.main import build_parser, main
from infra.cli.serve import dtype_warning
from optimizer.compare.across import Figures, RateWork
from optimizer.platform.latency_model import PROFILES_DIR, GpuLatencyModel, load_profile
from optimizer.profiling.encoder_scaling import ESTIMATE_LABEL
from tests.test_render import of_type, shipped

FP16_PROFILES = {"gpu_fp16.json": "gpu.json", "bert_base_gpu_fp16.json": "bert_base_gpu.json"}


def _half(plan: Any, dtype: str = "float16") -> Any:
    return replace(plan, meta={**plan.meta, "gpu_dtype": dtype})


@pytest.mark.parametrize(("half", "full"), sorted(FP16_PROFILES.items()))
def test_the_fp16_profiles_load_in_float16_with_a_lower_launch_floor(half: str,
                                                                      full: str) -> None:
    profile, model = load_profile(PROFILES_DIR / half, backend="gpu")
    _, fp32 = load_profile(PROFILES_DIR / full, backend="gpu")
    assert isinstance(model, GpuLatencyModel) and isinstance(fp32, GpuLatencyModel)
    assert profile["function_dtype"] == model.dtype == "float16" and fp32.dtype == "float32"
    assert model.launch_ms < fp32.launch_ms
    assert model.per_token_ms < fp32.per_token_ms
    assert model.estimate  # fitted to the reference run's timings, or scaled: an estimate


def test_the_fp16_profiles_record_their_fit_quality() -> None:
    minilm = json.loads((PROFILES_DIR / "gpu_fp16.json").read_text(encoding="utf-8"))
    bert = json.loads((PROFILES_DIR / "bert_base_gpu_fp16.json").read_text(encoding="utf-8"))
    # The reference's float16 grid: 8.9% median; 45.8% max, at its slow batch-1 points
    # (optimizer/profiles/README.md), kept as measured.
    assert minilm["fit"]["median_rel_err"] == pytest.approx(0.0887, abs=5e-4)
    assert minilm["fit"]["max_rel_err"] == pytest.approx(0.458, abs=5e-4)
    assert len(minilm["grid"]) == 30
    assert bert["scaled_from"]["fit"] == minilm["fit"] and "grid" not in bert
    assert ESTIMATE_LABEL in bert["estimate"]


@pytest.mark.parametrize(("source", "shipped_name"), [
    ("gpu_fp16.json", "bert_base_gpu_fp16.json"), ("gpu.json", "bert_base_gpu.json"),
    ("cpu.json", "bert_base_cpu.json")])
def test_the_scaled_profiles_are_their_documented_commands_output(
        tmp_path: Path, source: str, shipped_name: str) -> None:
    out = tmp_path / shipped_name
    assert main(["profile", "--scale-encoder", "bert-base", "--profile",
                 f"optimizer/profiles/{source}", "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == \
        (PROFILES_DIR / shipped_name).read_text(encoding="utf-8"), (
        f"stale: run `mbs profile --scale-encoder bert-base --profile "
        f"optimizer/profiles/{source} --out optimizer/profiles/{shipped_name}`")


def test_scale_encoder_needs_a_profile(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["profile", "--scale-encoder", "bert-base"]) == 2
    assert "--scale-encoder needs --profile FILE" in capsys.readouterr().err


def test_the_fp16_names_resolve_on_the_gpu_backend() -> None:
    assert Path(resolve_profile("minilm-fp16", "gpu")).name == "gpu_fp16.json"
    assert Path(resolve_profile("bert-base-fp16", "gpu")).name == "bert_base_gpu_fp16.json"
    pair = ("lambda", "gpu")
    assert Path(resolve_profile("minilm,minilm-fp16", "gpu", pair)).name == "gpu_fp16.json"
    assert Path(resolve_profile("minilm,minilm-fp16", "lambda", pair)).name == "cpu.json"
    for files in SHIPPED_ENCODERS.values():
        assert all((PROFILES_DIR / name).is_file() for name in files.values())


@pytest.mark.parametrize("name", ["minilm-fp16", "bert-base-fp16"])
def test_an_fp16_name_on_the_lambda_backend_is_refused_by_name(name: str) -> None:
    with pytest.raises(ValueError, match=f"--profile '{name}' is a float16 GPU profile; the "
                                         "lambda backend's CPU functions run float32"):
        resolve_profile(name, "lambda")
    with pytest.raises(ValueError, match=f"'{name}'"):
        resolve_profile(name, "lambda", ("lambda", "gpu"))


def test_mbs_compare_on_lambda_with_an_fp16_name_fails_clearly(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", "--profile", "minilm-fp16", "--duration", "60"]) == 2
    err = capsys.readouterr().err
    assert "'minilm-fp16'" in err and "run float32" in err


def test_the_plans_gpu_dtype_round_trips(tmp_path: Path) -> None:
    plan = _half(shipped("gpu"))
    assert plan.gpu_dtype == "float16"
    assert plan_from_dict(json.loads(plan.to_json())).gpu_dtype == "float16"
    save_plan(plan, tmp_path / "plan.json")
    assert load_plan(tmp_path / "plan.json").meta["gpu_dtype"] == "float16"
    # absent means float32: plan files written before the key load unchanged
    assert "gpu_dtype" not in shipped("gpu").meta and shipped("gpu").gpu_dtype == "float32"


def test_a_bad_gpu_dtype_is_refused_naming_it() -> None:
    raw = json.loads(shipped("gpu").to_json())
    raw["meta"]["gpu_dtype"] = "float8"
    with pytest.raises(PlanError, match=r"meta.gpu_dtype must be one of \['float32', "
                                        r"'float16', 'bfloat16'\], got 'float8'"):
        plan_from_dict(raw)
    with pytest.raises(PlanError, match="got 'int8'"):
        _half(shipped("gpu"), "int8")


def test_the_plans_dtypes_are_the_ones_the_function_runs() -> None:
    assert (DEFAULT_DTYPE, *HALF_DTYPES) == GPU_DTYPES


def _gpu_env(plan: Any) -> dict[str, Any]:
    resource = build_template(plan)["Resources"][GPU_FUNCTION]
    return resource["Properties"]["Environment"]["Variables"]


def test_the_gpu_function_runs_the_plans_dtype() -> None:
    assert _gpu_env(shipped("gpu"))["MBS_TORCH_DTYPE"] == "float32"
    env = _gpu_env(_half(shipped("gpu")))
    assert env["MBS_TORCH_DTYPE"] == "float16" and env["MBS_DEVICE"] == "cuda"
    assert _gpu_env(_half(shipped("gpu"), "bfloat16"))["MBS_TORCH_DTYPE"] == "bfloat16"


def test_the_cpu_template_leaves_the_dtype_unset_whatever_the_meta() -> None:
    # The CPU functions run float32 (tests/test_render.py lists MBS_TORCH_DTYPE as unset).
    template = build_template(_half(shipped("default")))
    envs = [template["Globals"]["Function"]["Environment"]["Variables"]]
    envs += [r["Properties"].get("Environment", {}).get("Variables", {})
             for r in of_type(template, "AWS::Serverless::Function").values()]
    assert not any("MBS_TORCH_DTYPE" in env for env in envs)


def test_the_local_stack_keeps_float32_and_says_so() -> None:
    assert dtype_warning(shipped("gpu")) is None
    line = dtype_warning(_half(shipped("gpu")))
    assert line is not None and line.startswith("warning: ") and "\n" not in line
    assert "float16 GPU function" in line and "keeps float32" in line


def test_mbs_optimize_records_the_gpu_profiles_dtype(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["optimize", "--backend", "gpu", "--profile", "minilm-fp16", "--evals", "12",
                 "--max-buffers", "1", "--instance-types", "g6.xlarge", "--duration", "120",
                 "--out", str(out)]) == 0
    plan = load_plan(out)
    assert plan.gpu_dtype == "float16"
    assert _gpu_env(plan)["MBS_TORCH_DTYPE"] == "float16"
    capsys.readouterr()


def test_mbs_compare_stamps_its_gpu_plans_with_the_profiles_dtype(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a STUB gpu search (the real one is tested in test_compare_backends.py) that returns
    # the shipped gpu plan, wired by the command's own real_searchers
    def stub_searcher(model: GpuLatencyModel, *_: Any) -> Any:
        def search(work: RateWork, policy: str) -> Figures:
            return Figures(policy, True, None, shipped("gpu"), f"stub ({model.dtype})")
        return search

    monkeypatch.setattr(backend_search, "gpu_searcher", stub_searcher)
    args = build_parser().parse_args(["compare", "--backend", "gpu", "--profile",
                                      "bert-base-fp16"])
    searchers, described = compare_backends.real_searchers(args, ("gpu",))
    # WHEN each policy is searched
    work = RateWork(1.0, "w", None, None, 1000.0)  # type: ignore[arg-type]
    for policy, search in searchers["gpu"].items():
        figures = search(work, policy)
        # THEN its plan records the profile's dtype, and nothing else changed
        assert figures.plan.gpu_dtype == "float16", policy
        assert figures.plan.buffers == shipped("gpu").buffers
        assert figures.tuning == "stub (float16)"
    assert "float16" in described["gpu"]["model"]
