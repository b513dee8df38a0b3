"""Padding must not change an embedding: the attention mask hides the pad tokens."""

from __future__ import annotations

import numpy as np
import pytest

from functions.shared.model import EMBEDDING_DIM
from functions.shared.tokenizer import count_tokens

pytestmark = pytest.mark.model

SHORT_TEXTS = [
    "dull",
    "a quietly moving film",
    "the plot is thin, but the acting carries it",
    "not worth the price of the ticket.",
]
LONG_TEXTS = [
    " ".join(["an ambitious, sprawling and often exhausting family saga"] * 20),
    " ".join(["the second half drags badly"] * 12),
]


def test_short_texts_embed_the_same_inside_a_padded_batch(embedder):
    # GIVEN short texts batched with texts many times longer (so each short one is mostly padding)
    batch = embedder.embed(SHORT_TEXTS + LONG_TEXTS)
    longest = max(count_tokens(t).length for t in LONG_TEXTS)
    assert batch.padded_length == longest
    assert all(count_tokens(t).length * 8 < longest for t in SHORT_TEXTS)
    # THEN each short text's vector equals its vector computed alone
    for i, text in enumerate(SHORT_TEXTS):
        alone = embedder.embed([text])
        assert alone.padded_length == count_tokens(text).length
        cosine = float(batch.vectors[i] @ alone.vectors[0])
        assert cosine >= 0.999, (text, cosine)


def test_embeddings_are_unit_length_384_float32(embedder):
    result = embedder.embed(SHORT_TEXTS + LONG_TEXTS)
    assert result.vectors.shape == (len(SHORT_TEXTS) + len(LONG_TEXTS), EMBEDDING_DIM)
    assert result.vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(result.vectors, axis=1), 1.0, atol=1e-5)
    assert result.inference_ms > 0


def test_different_texts_get_different_embeddings(embedder):
    vectors = embedder.embed(SHORT_TEXTS).vectors
    cosines = vectors @ vectors.T
    assert np.all(cosines[~np.eye(len(SHORT_TEXTS), dtype=bool)] < 0.99)


def test_text_past_the_limit_is_truncated_to_256(embedder):
    long = " ".join(["word"] * 400)
    assert embedder.embed([long]).padded_length == 256


def test_empty_batch_is_rejected(embedder):
    with pytest.raises(ValueError, match="at least one text"):
        embedder.embed([])


def test_stand_in_model_is_labelled_and_unit_length():
    from functions.shared.model import StandInEmbedder

    first = StandInEmbedder().embed(["a", "b b b"])
    again = StandInEmbedder().embed(["a", "b b b"])
    assert first.device == "stand-in" and first.inference_ms == 0.0
    assert first.vectors.shape == (2, 384)
    assert np.allclose(np.linalg.norm(first.vectors, axis=1), 1.0)
    assert np.array_equal(first.vectors, again.vectors)
