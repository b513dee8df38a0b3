"""The official OpenAI Python client, unchanged, against the online service over real HTTP."""

from __future__ import annotations

import numpy as np
import openai
import pytest
from openai import OpenAI

from buffers.plan_files import default_plan_path, load_plan
from functions.shared.model import StandInEmbedder
from infra.dispatcher.app import create_app
from infra.dispatcher.server import BackgroundServer

SHORT = ["a gripping, beautifully acted film", "dull", "the plot wanders but the cast holds it"]
LONG = ("an ambitious, sprawling story that follows three generations of one family through war, "
        "exile and return, told with patience and an eye for small gestures; ") * 12  # > 256
MIXED = [SHORT[0], LONG, SHORT[1], LONG[:400], SHORT[2]]


@pytest.fixture(scope="module")
def stand_in_url():
    with BackgroundServer(create_app(load_plan(default_plan_path()), model="stand-in")) as s:
        yield s.url


def _client(url: str) -> OpenAI:
    return OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=60)


def test_the_openai_client_gets_stand_in_vectors_in_order(stand_in_url):
    # The client asks for base64 unless told otherwise, and decodes it itself.
    reply = _client(stand_in_url).embeddings.create(input=MIXED, model="stand-in")
    assert reply.model == "stand-in" and [d.index for d in reply.data] == [0, 1, 2, 3, 4]
    expected = StandInEmbedder().embed([t for t in MIXED]).vectors
    got = np.array([d.embedding for d in reply.data], dtype=np.float32)
    # The stand-in hashes the text it is given: the long one was cut to its 256 tokens.
    np.testing.assert_array_equal(got[[0, 2, 4]], expected[[0, 2, 4]])
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert reply.usage.prompt_tokens == reply.usage.total_tokens > 256
    assert reply.model_extra["mbs"]["inputs"][1]["truncated"] is True


def test_float_encoding_and_a_single_string(stand_in_url):
    reply = _client(stand_in_url).embeddings.create(input="dull", model="stand-in",
                                                    encoding_format="float")
    assert len(reply.data) == 1 and len(reply.data[0].embedding) == 384


def test_the_openai_client_raises_its_own_errors(stand_in_url):
    client = _client(stand_in_url)
    with pytest.raises(openai.NotFoundError) as missing:
        client.embeddings.create(input="x", model="text-embedding-3-small")
    assert missing.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        client.embeddings.create(input=[], model="stand-in")
    assert bad.value.code == "empty_input"


@pytest.mark.model
def test_the_openai_client_gets_the_models_unbatched_embeddings(embedder):
    # GIVEN the service with the real model in process
    with BackgroundServer(create_app(load_plan(default_plan_path()), model="minilm")) as server:
        client = _client(server.url)
        # WHEN single and list inputs, short and long, go through the OpenAI client
        single = client.embeddings.create(input=SHORT[0], model="all-MiniLM-L6-v2")
        listed = client.embeddings.create(input=MIXED, model="all-MiniLM-L6-v2")
        as_floats = client.embeddings.create(input=MIXED, model="all-MiniLM-L6-v2",
                                             encoding_format="float")
    # THEN each is the model's own embedding of that text alone, 384-d and unit length
    assert single.model == listed.model == "all-MiniLM-L6-v2"
    for reply, texts in ((single, [SHORT[0]]), (listed, MIXED), (as_floats, MIXED)):
        got = np.array([d.embedding for d in reply.data], dtype=np.float32)
        assert got.shape == (len(texts), 384)
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        alone = np.vstack([embedder.embed([t]).vectors for t in texts])
        cosines = np.sum(got * alone, axis=1)
        assert cosines.min() >= 0.999, cosines
    buffers = [m["buffer"] for m in listed.model_extra["mbs"]["inputs"]]
    assert len(set(buffers)) > 1  # one call's inputs rode in several buffers
