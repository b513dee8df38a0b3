"""Request texts for load generation: user files, or the bundled Pang & Lee movie-review corpus."""

from __future__ import annotations

import functools
import json
import math
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optimizer.workload.paths import data_dir

SENTENCE_POLARITY_ZIP = "texts/sentence_polarity.zip"
MOVIE_REVIEWS_ZIP = "texts/movie_reviews.zip"
_SENTENCE_MEMBERS = ("sentence_polarity/rt-polarity.pos", "sentence_polarity/rt-polarity.neg")
_REVIEW_DIRS = ("movie_reviews/pos/", "movie_reviews/neg/")

# Passage lengths cycle through these targets by review index; a passage closes once it reaches
# its target, so passages run from ~300 to ~1400 characters (roughly 60-300 model tokens).
PASSAGE_TARGETS_CHARS = (300, 500, 800, 1200)

# Default mix of request texts: 70% short sentences (like search queries, ~10-50 tokens) and
# 30% review passages (like documents, a long tail up to the model's 256-token limit). The long
# tail is what makes length-aware batching matter: one long text pads a whole batch.
DEFAULT_LONG_FRACTION = 0.3

# The Cornell files were converted from Windows-1252 as if Latin-1, leaving C1 control characters
# (e.g. U+0096 for an en dash); map them back to the characters they were meant to be.
_C1_TO_CP1252 = {
    0x80 + i: char
    for i, char in enumerate(bytes(range(0x80, 0xA0)).decode("cp1252", errors="replace"))
    if char != "\ufffd"
}


@dataclass(frozen=True)
class TextCorpus:
    """Short texts (queries) and long texts (documents) to draw requests from."""

    short: tuple[str, ...]
    long: tuple[str, ...]
    source: str

    def __post_init__(self) -> None:
        if not self.short and not self.long:
            raise ValueError(f"text corpus {self.source}: has no texts")


def _decode(data: bytes) -> str:
    """Decode UTF-8 (BOM allowed), falling back to Latin-1; normalise stray C1 characters."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.translate(_C1_TO_CP1252)


def _parse_jsonl_line(path: Path, line_number: int, line: str) -> str:
    """The string "text" field of one JSON object line."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"texts {path}: line {line_number}: invalid JSON ({error.msg})") from None
    text = record.get("text") if isinstance(record, dict) else None
    if not isinstance(text, str):
        raise ValueError(
            f"texts {path}: line {line_number}: JSON object has no string 'text' field"
        )
    return text


JSON_LINES_SUFFIXES = (".jsonl", ".json")


def _first_line_is_object(lines: list[str]) -> bool:
    """Whether the first non-blank line parses as a JSON object."""
    first = next((line.strip() for line in lines if line.strip()), "")
    try:
        return isinstance(json.loads(first), dict)
    except json.JSONDecodeError:
        return False


def is_json_lines(path: Path, lines: list[str]) -> bool:
    """The file's format, decided once per file: a .jsonl/.json suffix, else the first line.

    Never per line: a plain text corpus may hold a line that starts with "{" (a real one did at
    line 951), and that line is a text like any other.
    """
    return path.suffix.lower() in JSON_LINES_SUFFIXES or _first_line_is_object(lines)


def load_texts(path: str | Path) -> list[str]:
    """Load one text per line, or JSON lines ({"text": ...}); blank lines are skipped."""
    path = Path(path)
    lines = _decode(path.read_bytes()).splitlines()
    json_lines = is_json_lines(path, lines)
    texts: list[str] = []
    for line_number, raw_line in enumerate(lines, start=1):
        line = raw_line.strip()
        if not line:
            continue
        text = _parse_jsonl_line(path, line_number, line) if json_lines else line
        if text.strip():
            texts.append(text)
    if not texts:
        raise ValueError(f"texts {path}: contains no texts")
    return texts


def corpus_from_texts(texts: Iterable[str], source: str = "user texts") -> TextCorpus:
    """Corpus of user texts; all go in `short`, so sample_texts ignores long_fraction for it."""
    short = tuple(texts)
    if not short:
        raise ValueError(f"text corpus {source}: has no texts")
    for index, text in enumerate(short):
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"text corpus {source}: text {index} {text!r} is not a non-empty str")
    return TextCorpus(short=short, long=(), source=source)


def _sentences(text: str) -> list[str]:
    """Non-blank lines of a file, stripped."""
    return [line.strip() for line in text.splitlines() if line.strip()]


def passages(sentences: list[str], target_chars: int) -> list[str]:
    """Join consecutive sentences into passages, each closing once it reaches target_chars."""
    result: list[str] = []
    current: list[str] = []
    length = 0
    for sentence in sentences:
        current.append(sentence)
        length += len(sentence) + (1 if length else 0)
        if length >= target_chars:
            result.append(" ".join(current))
            current, length = [], 0
    return result  # a trailing run shorter than the target is dropped


def _review_members(archive: zipfile.ZipFile) -> list[str]:
    """Review file names, positive then negative, each sorted."""
    names = archive.namelist()
    return [
        name
        for prefix in _REVIEW_DIRS
        for name in sorted(names)
        if name.startswith(prefix) and name.endswith(".txt")
    ]


@functools.lru_cache(maxsize=1)
def pang_lee_corpus() -> TextCorpus:
    """Short sentences (sentence polarity v1.0) and review passages (polarity dataset v2.0)."""
    root = data_dir()
    with zipfile.ZipFile(root / SENTENCE_POLARITY_ZIP) as archive:
        short = [
            s for member in _SENTENCE_MEMBERS for s in _sentences(_decode(archive.read(member)))
        ]
    long: list[str] = []
    with zipfile.ZipFile(root / MOVIE_REVIEWS_ZIP) as archive:
        for index, member in enumerate(_review_members(archive)):
            target_chars = PASSAGE_TARGETS_CHARS[index % len(PASSAGE_TARGETS_CHARS)]
            long.extend(passages(_sentences(_decode(archive.read(member))), target_chars))
    if not short or not long:
        raise ValueError(f"Pang & Lee corpus under {root / 'texts'}: archives hold no texts")
    return TextCorpus(short=tuple(short), long=tuple(long), source="pang-lee")


def sample_texts(
    n: int,
    rng: np.random.Generator,
    corpus: TextCorpus | None = None,
    long_fraction: float = DEFAULT_LONG_FRACTION,
) -> list[str]:
    """Draw n texts, each long with probability long_fraction (if both pools are non-empty)."""
    if n < 0:
        raise ValueError(f"sample_texts: n {n!r} must be >= 0")
    if not (math.isfinite(long_fraction) and 0.0 <= long_fraction <= 1.0):
        raise ValueError(f"sample_texts: long_fraction {long_fraction!r} must be in [0, 1]")
    corpus = pang_lee_corpus() if corpus is None else corpus
    if not corpus.long:
        long_fraction = 0.0  # e.g. a corpus_from_texts corpus: everything is short
    elif not corpus.short:
        long_fraction = 1.0
    is_long = rng.random(n) < long_fraction
    short_index = rng.integers(0, max(len(corpus.short), 1), size=n)
    long_index = rng.integers(0, max(len(corpus.long), 1), size=n)
    return [
        corpus.long[j] if pick_long else corpus.short[i]
        for pick_long, i, j in zip(is_long, short_index, long_index, strict=True)
    ]
