"""all-MiniLM-L6-v2 run with numpy gives sentence-transformers' own vectors.

The reference (`data/minilm_reference.json`) was made once with sentence-transformers 6.2.0 and
PyTorch 2.14 (CPU) from the same packaged weights; PyTorch is not a dependency of Capstan."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from capstan.serving.minilm import MiniLM

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())


@pytest.fixture(scope="module")
def model() -> MiniLM:
    return MiniLM()


def test_vectors_match_sentence_transformers(model: MiniLM) -> None:
    ours = model.embed(REFERENCE["sentences"])
    theirs = np.array(REFERENCE["embeddings"], dtype=np.float32)
    assert ours.shape == (4, 384)
    assert np.abs(ours - theirs).max() < 1e-5


def test_a_batch_gives_each_text_the_vector_it_gets_alone(model: MiniLM) -> None:
    batch = model.embed(REFERENCE["sentences"])
    alone = np.vstack([model.embed([text]) for text in REFERENCE["sentences"]])
    assert np.abs(batch - alone).max() < 1e-5  # padding never leaks into a shorter text


def test_vectors_have_unit_length(model: MiniLM) -> None:
    norms = np.linalg.norm(model.embed(["short", "a somewhat longer sentence about loans"]), axis=1)
    assert np.allclose(norms, 1.0, atol=1e-6)


def test_texts_past_the_models_window_are_truncated(model: MiniLM) -> None:
    long = "word " * 2000
    assert model.tokens([long]) == [model.max_tokens]
    assert model.embed([long]).shape == (1, 384)


def test_similar_sentences_are_closer_than_unrelated_ones(model: MiniLM) -> None:
    food, bread, market = model.embed(REFERENCE["sentences"][:3])
    assert food @ bread > 0.7 > food @ market
