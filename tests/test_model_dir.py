"""`--model DIR`: any local sentence-transformers encoder directory, profiled and served.

The directory is built here: a BertModel with a tiny config (hidden 32, 2 layers, random
weights, seeded), saved with all-MiniLM-L6-v2's tokenizer and the sentence-transformers
modules (tests/support/tiny_encoder.py). Served embeddings, batched and padded, must equal the
directory's own unbatched outputs.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI

from buffers.plan_files import default_plan_path, load_plan
from functions.shared.encoder_dir import EncoderDirError, read_encoder_spec
from functions.shared.model import Embedder, ModelLoadError, get_embedder
from functions.shared.tokenizer import batch_tokenizer
from infra.cli.main import main
from infra.dispatcher.app import create_app, served_model
from infra.dispatcher.server import BackgroundServer
from infra.local.serving import LocalService, ServeOptions
from optimizer.platform.latency_model import LatencyModel, load_profile
from tests.support.tiny_encoder import HIDDEN, build_tiny_encoder

TEXTS = ["dull", "a gripping, beautifully acted film with a plot that wanders but a cast that "
         "holds it together to the very end", "the cast holds it", "ok then"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return build_tiny_encoder(tmp_path_factory.mktemp("encoders") / "tiny-bert")


def own_outputs(directory: Path, texts: list[str]) -> np.ndarray:
    """The directory's own model, one text at a time (no padding): transformers directly."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    tokenizer = Tokenizer.from_file(str(directory / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=read_encoder_spec(directory).max_seq_length)
    model = AutoModel.from_pretrained(str(directory), local_files_only=True).eval()  # nosec B615
    rows = []
    with torch.inference_mode():
        for text in texts:
            ids = torch.tensor([tokenizer.encode(text).ids])
            hidden = model(input_ids=ids, attention_mask=torch.ones_like(ids)).last_hidden_state
            rows.append(torch.nn.functional.normalize(hidden.mean(dim=1), dim=1)[0].numpy())
    return np.stack(rows)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_a_batch_equals_the_directorys_own_unbatched_outputs(tiny: Path) -> None:
    embedder = Embedder(device="cpu", directory=tiny)
    result = embedder.embed(TEXTS)
    assert embedder.name == "tiny-bert" and result.vectors.shape == (len(TEXTS), HIDDEN)
    assert result.padded_length == len(batch_tokenizer(tiny).encode(TEXTS[1]).ids)  # longest
    assert np.all(cosines(result.vectors, own_outputs(tiny, TEXTS)) >= 0.999)


def test_sentence_transformers_agrees_on_the_directory(tiny: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    reference = np.stack([st.SentenceTransformer(str(tiny), device="cpu").encode(t)
                          for t in TEXTS])
    got = Embedder(device="cpu", directory=tiny).embed(TEXTS).vectors
    assert np.all(cosines(got, reference) >= 0.999)


def test_cls_pooling_without_normalize_is_served_as_the_directory_says(tmp_path: Path) -> None:
    st = pytest.importorskip("sentence_transformers")
    directory = build_tiny_encoder(tmp_path / "tiny-cls", pooling="cls_token", normalize=False)
    spec = read_encoder_spec(directory)
    assert (spec.pooling, spec.normalize, spec.dimension) == ("cls_token", False, HIDDEN)
    got = Embedder(device="cpu", directory=directory).embed(TEXTS).vectors
    reference = np.stack([st.SentenceTransformer(str(directory), device="cpu").encode(t)
                          for t in TEXTS])
    np.testing.assert_allclose(got, reference, rtol=1e-4, atol=1e-5)  # not unit length


def test_directories_mbs_cannot_serve_are_named(tiny: Path, tmp_path: Path) -> None:
    with pytest.raises(EncoderDirError, match="no encoder directory"):
        read_encoder_spec(tmp_path / "absent")
    dense = tmp_path / "dense"
    shutil.copytree(tiny, dense)
    modules = json.loads((dense / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_Dense",
                    "type": "sentence_transformers.models.Dense"})
    (dense / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(EncoderDirError, match="Dense"):
        read_encoder_spec(dense)
    with pytest.raises(ModelLoadError, match="dense"):
        Embedder(device="cpu", directory=dense)
    (dense / "modules.json").unlink()  # a plain Hugging Face directory: mean, no normalising
    plain = read_encoder_spec(dense)
    assert (plain.pooling, plain.normalize, plain.max_seq_length) == ("mean_tokens", False, 128)
    with pytest.raises(ValueError, match="encoder directory, got 'gpt'"):
        served_model("gpt")


def test_the_online_service_serves_the_directory(tiny: Path, monkeypatch) -> None:
    # GIVEN this process's model port set to the directory (as `mbs serve --model DIR` does)
    monkeypatch.setenv("MBS_MODEL_DIR", str(tiny))
    get_embedder.cache_clear()
    try:
        with BackgroundServer(create_app(load_plan(default_plan_path()),
                                         model=str(tiny))) as server:
            client = OpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0, timeout=60)
            reply = client.embeddings.create(input=TEXTS, model="tiny-bert",
                                             encoding_format="float")
    finally:
        get_embedder.cache_clear()
    assert reply.model == "tiny-bert" and [d.index for d in reply.data] == [0, 1, 2, 3]
    served = np.array([d.embedding for d in reply.data], dtype=np.float32)
    assert np.all(cosines(served, own_outputs(tiny, TEXTS)) >= 0.999)


def test_serving_a_directory_the_port_does_not_hold_is_refused(tiny: Path, monkeypatch) -> None:
    monkeypatch.delenv("MBS_MODEL_DIR", raising=False)
    monkeypatch.setenv("MBS_STANDIN_MODEL", "1")  # the port serves the stand-in, not tiny-bert
    get_embedder.cache_clear()
    try:
        with pytest.raises(ValueError, match="MBS_MODEL_DIR"):
            create_app(load_plan(default_plan_path()), model=str(tiny))
    finally:
        get_embedder.cache_clear()
    with pytest.raises(ValueError, match="'/no/such/encoder'"):
        LocalService(load_plan(default_plan_path()), ServeOptions(model="/no/such/encoder"))


def test_mbs_serve_takes_a_directory(capsys) -> None:
    assert main(["serve", "--model", "/no/such/encoder", "--port", "0"]) == 2
    assert "'/no/such/encoder'" in capsys.readouterr().err


@pytest.mark.e2e
def test_local_service_serves_the_directory_on_both_paths_and_restores_env(
        tiny: Path, monkeypatch) -> None:
    monkeypatch.delenv("MBS_MODEL_DIR", raising=False)
    get_embedder.cache_clear()
    try:
        with LocalService(load_plan(default_plan_path()), ServeOptions(model=str(tiny))) as svc:
            client = OpenAI(base_url=f"{svc.url}/v1", api_key="x", max_retries=0, timeout=60)
            reply = client.embeddings.create(input=TEXTS[:2], model=str(tiny),
                                             encoding_format="float")
    finally:
        get_embedder.cache_clear()
    assert reply.model == "tiny-bert"
    served = np.array([d.embedding for d in reply.data], dtype=np.float32)
    assert np.all(cosines(served, own_outputs(tiny, TEXTS[:2])) >= 0.999)
    assert "MBS_MODEL_DIR" not in os.environ


def test_mbs_profile_profiles_the_directory(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "tiny.json"
    assert main(["profile", "--model", str(tiny), "--batches", "1,2", "--lengths", "8,16",
                 "--repeats", "3", "--warmup", "1", "--threads", "1", "--patience-s", "0",
                 "--cold-start-runs", "0", "--out", str(out)]) == 0
    profile, model = load_profile(out)
    assert profile["model"].startswith(f"tiny-bert ({tiny}), float32")
    assert isinstance(model, LatencyModel) and len(profile["grid"]) == 4
    assert main(["profile", "--model", str(tmp_path / "absent")]) == 2
