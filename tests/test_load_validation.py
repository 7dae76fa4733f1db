"""``load`` validates a model directory: corrupt or crafted files raise ModelFormatError.

The specific cases of issue 17 (point 1) plus the corruption fuzzer, which runs its cases
in a subprocess so that a segfault fails the test instead of killing pytest.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import load_file, save_file

from maasrec import Recommender
from maasrec.exceptions import MaasrecError, ModelFormatError
from maasrec.models import ALS, EASE, ItemKNN
from maasrec.neural import SequentialRecommender
from maasrec.testing.checks import tiny_interactions

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import reliability_fuzz as fuzz  # noqa: E402


def _saved(tmp_path, model, name="m"):
    path = tmp_path / name
    model.fit(tiny_interactions()).save(path)
    return path


def _edit_arrays(path: Path, fn, file="arrays.safetensors"):
    arrays = dict(load_file(str(path / file)))
    fn(arrays)
    save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(path / file))
    fuzz.rehash(path)  # a crafted model rewrites the manifest hashes too


def _edit_meta(path: Path, fn, file="maasrec.json"):
    meta = json.loads((path / file).read_text())
    fn(meta)
    (path / file).write_text(json.dumps(meta))
    fuzz.rehash(path)


def test_ease_seen_index_beyond_catalogue_fails_at_load_in_subprocess(tmp_path):
    # the segfault: load succeeded and recommend died inside scipy's C code
    path = _saved(tmp_path, EASE(l2=10.0))
    _edit_arrays(path, lambda a: a["seen_.indices"].__setitem__(3, 10**6))
    code = textwrap.dedent(f"""
        from maasrec import Recommender
        from maasrec.exceptions import ModelFormatError
        try:
            m = Recommender.load({str(path)!r})
        except ModelFormatError as exc:
            print("MFE", exc)
        else:
            m.recommend(m.user_vocab_.ids[0], k=5)
            print("LOADED")
    """)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("MFE"), res.stdout
    assert "seen_.indices" in res.stdout and "1000000" in res.stdout


@pytest.mark.parametrize("edit, match", [
    (lambda a: a["seen_.indptr"].__setitem__(2, 10**4), "seen_.indptr"),
    (lambda a: a["seen_.indptr"].__setitem__(0, 1), "seen_.indptr"),
    (lambda a: a.__setitem__("seen_.indptr", a["seen_.indptr"][:-1]), "seen_.indptr"),
    (lambda a: a["seen_.indices"].__setitem__(0, -1), "seen_.indices"),
    (lambda a: a.__setitem__("seen_.indices", a["seen_.indices"].astype(np.float32)),
     "seen_.indices"),
    (lambda a: a["seen_.data"].__setitem__(0, np.nan), "seen_.data"),
    (lambda a: a["B_"].__setitem__((1, 2), np.inf), "B_"),
    (lambda a: a.__setitem__("B_", a["B_"][:-1]), "B_"),
    (lambda a: a.__setitem__("B_", a["B_"].astype(np.int32)), "B_"),
    (lambda a: a.pop("B_"), "B_"),
])
def test_ease_corrupt_arrays_raise(tmp_path, edit, match):
    path = _saved(tmp_path, EASE(l2=10.0))
    _edit_arrays(path, edit)
    with pytest.raises(ModelFormatError, match=match):
        Recommender.load(path)


def test_params_out_of_range_raise(tmp_path):
    path = _saved(tmp_path, EASE(l2=10.0))
    _edit_meta(path, lambda m: m["params"].__setitem__("l2", -5))
    with pytest.raises(ModelFormatError, match=r"maasrec\.json.*l2.*-5"):
        Recommender.load(path)


@pytest.mark.parametrize("model, param, value", [
    (ALS(factors=4, iterations=1), "random_state", "abc"),
    (EASE(l2=10.0), "implicit", "no"),
])
def test_standard_params_checked_at_load(tmp_path, model, param, value):
    # the checks fit runs on every model (bools are bools, seeds are seeds) run at load too
    path = _saved(tmp_path, model)
    _edit_meta(path, lambda m: m["params"].__setitem__(param, value))
    with pytest.raises(ModelFormatError, match=rf"maasrec\.json.*{param}.*{value}"):
        Recommender.load(path)


@pytest.mark.parametrize("version", [-7, 0, True, "1", 1.0])
def test_format_version_must_be_a_known_int(tmp_path, version):
    path = _saved(tmp_path, EASE(l2=10.0))
    _edit_meta(path, lambda m: m.__setitem__("format_version", version))
    with pytest.raises(ModelFormatError, match="format_version"):
        Recommender.load(path)


def test_seen_shape_must_match_vocabularies(tmp_path):
    path = _saved(tmp_path, EASE(l2=10.0))
    _edit_meta(path, lambda m: m["attributes"]["seen_"].__setitem__("shape", [40, 29]))
    with pytest.raises(ModelFormatError, match="seen_"):
        Recommender.load(path)


def test_factor_shapes_checked(tmp_path):
    path = _saved(tmp_path, ALS(factors=4, iterations=1, random_state=0))
    _edit_arrays(path, lambda a: a.__setitem__("user_factors_", a["user_factors_"][:, :3]))
    with pytest.raises(ModelFormatError, match="user_factors_"):
        Recommender.load(path)


def test_itemknn_similarity_shape_checked(tmp_path):
    path = _saved(tmp_path, ItemKNN(n_neighbors=5))
    _edit_meta(path, lambda m: m["attributes"]["similarity_"].__setitem__("shape", [30, 31]))
    with pytest.raises(ModelFormatError, match="similarity_"):
        Recommender.load(path)


def test_sequential_history_index_checked(tmp_path):
    model = SequentialRecommender(max_len=5, dim=8, n_layers=1, n_heads=1, epochs=1,
                                  verbose=False, random_state=0)
    path = _saved(tmp_path, model)
    _edit_arrays(path, lambda a: a["history_items_"].__setitem__(0, 30))
    with pytest.raises(ModelFormatError, match="history_items_"):
        Recommender.load(path)


def test_sequential_nonfinite_weight_and_huge_sizes(tmp_path):
    model = SequentialRecommender(max_len=5, dim=8, n_layers=1, n_heads=1, epochs=1,
                                  verbose=False, random_state=0)
    path = _saved(tmp_path, model)
    good = (path / "weights.safetensors").read_bytes()
    _edit_arrays(path, lambda a: a["network_.item_emb"].__setitem__((0, 0), np.nan),
                 file="weights.safetensors")
    with pytest.raises(ModelFormatError, match="non-finite"):
        Recommender.load(path)
    (path / "weights.safetensors").write_bytes(good)
    # a crafted size must not allocate before the weights are compared
    _edit_meta(path, lambda m: m["params"].__setitem__("ffn_dim", 2 * 10**7))
    with pytest.raises(ModelFormatError, match="weights"):
        Recommender.load(path)


def test_pristine_models_still_load(tmp_path):
    for model in (EASE(l2=10.0), ItemKNN(n_neighbors=5)):
        path = _saved(tmp_path, model, name=type(model).__name__)
        loaded = Recommender.load(path)
        np.testing.assert_array_equal(loaded.recommend("u1", k=5)[0],
                                      model.recommend("u1", k=5)[0])


# -- the fuzzer ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fuzz_base(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-base")


def _assert_no_failures(results):
    bad = [r for r in results if r["outcome"] not in ("ok", "maasrec")]
    assert not bad, json.dumps(bad[:5], indent=1, default=str)[:4000]


def test_fuzz_worker_reports_crash_and_hang(fuzz_base, monkeypatch):
    # the parent must survive a worker that dies and name the case that was running
    res = fuzz.run_cases([{"id": 0, "model": "Popularity", "kind": "crash"}], fuzz_base,
                         timeout=30)
    assert res[0]["outcome"] == "crash" and res[0]["exit_code"] != 0
    res = fuzz.run_cases([{"id": 0, "model": "Popularity", "kind": "hang"}], fuzz_base,
                         timeout=3)
    assert res[0]["outcome"] == "hang"


@pytest.mark.slow
@settings(max_examples=3, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(rng=st.randoms(use_true_random=False))
def test_fuzz_corrupt_models_load_or_raise_maasrec_error(fuzz_base, rng):
    # each example: a batch of corruptions over every class, in one worker subprocess
    cases = [fuzz.random_case(rng, i) for i in range(100)]
    results = fuzz.run_cases(cases, fuzz_base, timeout=60)
    _assert_no_failures(results)
    summary = fuzz.summarize(results)
    assert summary["total"].get("maasrec", 0) > 0  # the corruptions are seen


def test_maasrec_error_is_the_contract():
    assert issubclass(ModelFormatError, MaasrecError)
