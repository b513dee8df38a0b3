from __future__ import annotations

import json

import numpy as np
import pytest

from optimizer.workload.texts import (
    DEFAULT_LONG_FRACTION,
    TextCorpus,
    corpus_from_texts,
    load_texts,
    pang_lee_corpus,
    passages,
    sample_texts,
)


def test_load_plain_text_skips_blank_lines(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("first text\n\n   \n  second text  \n")
    assert load_texts(path) == ["first text", "second text"]


def test_load_latin1_fallback(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_bytes("café au lait\n".encode("latin-1"))
    assert load_texts(path) == ["café au lait"]


def test_load_jsonl(tmp_path):
    path = tmp_path / "texts.jsonl"
    lines = [json.dumps({"text": "a query", "id": 1}), "", json.dumps({"text": "naïve doc"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert load_texts(path) == ["a query", "naïve doc"]


def test_a_plain_line_in_a_jsonl_file_is_an_error_not_a_text(tmp_path):
    # The format is decided per file: a .jsonl file is JSON lines throughout.
    path = tmp_path / "texts.jsonl"
    path.write_text(json.dumps({"text": "a query"}) + "\nplain line\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"texts\.jsonl: line 2: invalid JSON"):
        load_texts(path)


def test_json_lines_without_the_suffix_are_known_by_their_first_line(tmp_path):
    path = tmp_path / "export.txt"
    path.write_text("\n  \n" + json.dumps({"text": "from an export"}) + "\n"
                    + json.dumps({"text": "{braces} inside"}) + "\n", encoding="utf-8")
    assert load_texts(path) == ["from an export", "{braces} inside"]


def test_a_plain_text_file_keeps_a_line_that_starts_with_a_brace(tmp_path):
    # GIVEN a plain corpus whose line 951 starts with "{" (as a real one did) and another that
    # is a whole JSON object: both are texts, because the first line says plain text.
    texts = [f"review number {i}: a fine film" for i in range(1, 1001)]
    texts[950] = "{sic} the director's cut runs long"
    texts[951] = '{"text": "this line looks like JSON but the file is plain text"}'
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    assert load_texts(path) == texts


def test_a_first_line_that_only_starts_with_a_brace_means_plain_text(tmp_path):
    path = tmp_path / "notes"
    path.write_text("{draft} first note\nsecond note\n", encoding="utf-8")
    assert load_texts(path) == ["{draft} first note", "second note"]


def test_jsonl_errors_name_line_number(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n\n{"txt": "no text field"}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl: line 3: .*'text'"):
        load_texts(path)
    path.write_text('{"text": "ok"}\n{"text": 5}\n')
    with pytest.raises(ValueError, match="line 2"):
        load_texts(path)
    path.write_text('{"text": "ok"}\n{broken\n')
    with pytest.raises(ValueError, match="line 2: invalid JSON"):
        load_texts(path)


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n  \n")
    with pytest.raises(ValueError, match="empty.txt: contains no texts"):
        load_texts(path)


def test_passages_close_at_target():
    sentences = ["a" * 40, "b" * 40, "c" * 40, "d" * 10]
    assert passages(sentences, 70) == ["a" * 40 + " " + "b" * 40]  # trailing short run dropped
    assert passages(sentences, 10) == sentences


def test_pang_lee_corpus_is_real_and_mixed():
    corpus = pang_lee_corpus()
    assert corpus.source == "pang-lee"
    assert len(corpus.short) == 10662  # 5331 positive + 5331 negative sentences
    assert len(corpus.long) > 5000
    mean_short = np.mean([len(t) for t in corpus.short])
    mean_long = np.mean([len(t) for t in corpus.long])
    assert 80 < mean_short < 150
    assert mean_long > 4 * mean_short
    assert min(len(t) for t in corpus.long) >= 300
    assert all(t.strip() == t and t for t in corpus.short[:1000])
    # Windows-1252 leftovers (e.g. U+0096) are mapped back to real punctuation.
    assert not any("\x80" <= ch <= "\x9f" for t in corpus.short for ch in t)
    assert pang_lee_corpus() is corpus


def test_sample_texts_deterministic_under_seed():
    first = sample_texts(200, np.random.default_rng(7))
    assert first == sample_texts(200, np.random.default_rng(7))
    assert first != sample_texts(200, np.random.default_rng(8))
    assert len(first) == 200
    assert sample_texts(0, np.random.default_rng(7)) == []


def test_long_fraction_respected():
    corpus = pang_lee_corpus()
    long_set = set(corpus.long)
    texts = sample_texts(1000, np.random.default_rng(0))
    fraction = sum(t in long_set for t in texts) / len(texts)
    assert DEFAULT_LONG_FRACTION == 0.3
    assert 0.24 <= fraction <= 0.36
    only_short = sample_texts(300, np.random.default_rng(1), long_fraction=0.0)
    assert not any(t in long_set for t in only_short)
    only_long = sample_texts(300, np.random.default_rng(1), long_fraction=1.0)
    assert all(t in long_set for t in only_long)


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan")])
def test_bad_long_fraction_rejected(bad):
    with pytest.raises(ValueError, match=f"long_fraction {bad!r}"):
        sample_texts(5, np.random.default_rng(0), long_fraction=bad)


def test_user_corpus_puts_everything_in_short(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("one\ntwo\nthree\n")
    corpus = corpus_from_texts(load_texts(path), source=str(path))
    assert corpus.short == ("one", "two", "three") and corpus.long == ()
    texts = sample_texts(50, np.random.default_rng(3), corpus, long_fraction=0.9)
    assert set(texts) <= {"one", "two", "three"}
    with pytest.raises(ValueError, match="no texts"):
        corpus_from_texts([])
    with pytest.raises(ValueError, match="text 1"):
        corpus_from_texts(["ok", "  "])


def test_long_only_corpus_samples_long():
    corpus = TextCorpus(short=(), long=("doc",), source="docs")
    assert sample_texts(3, np.random.default_rng(0), corpus, long_fraction=0.0) == ["doc"] * 3
    with pytest.raises(ValueError, match="no texts"):
        TextCorpus(short=(), long=(), source="none")
