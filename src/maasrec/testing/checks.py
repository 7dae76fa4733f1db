"""Contract checks (plain functions raising AssertionError; no pytest needed)."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from ..base import Recommender, clone
from ..data.interactions import Interactions
from ..exceptions import DataError, ModelFormatError, NotFittedError, UnknownIdError

__all__ = ["CONTRACT_CHECKS", "check_recommender", "iter_checks", "tiny_interactions"]

Factory = Callable[[], Recommender]


def tiny_interactions(n_users: int = 40, n_items: int = 30, per_user: int = 6,
                      seed: int = 0) -> Interactions:
    """A small implicit data set with two taste clusters and a popularity skew.

    User ids are strings (``"u0"``...), item ids integers starting at 1000, so that
    raw ids never coincide with indices.

    Parameters
    ----------
    n_users, n_items, per_user : int
    seed : int

    Returns
    -------
    Interactions
        With ratings (1-5) and timestamps.
    """
    rng = np.random.default_rng(seed)
    rows = []
    half = n_items // 2
    for u in range(n_users):
        group = u % 2
        pool = np.arange(half) + group * half
        p = 1.0 / (np.arange(len(pool)) + 1.0)
        chosen = rng.choice(pool, size=per_user, replace=False, p=p / p.sum())
        extra = rng.integers(0, n_items)
        for t, i in enumerate([extra, *chosen]):
            rows.append((f"u{u}", 1000 + int(i), float(rng.integers(1, 6)), 1_000_000 + 10 * t + u))
    df = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp"])
    return Interactions.from_pandas(df, duplicates="first")


@contextmanager
def _tmpdir():
    d = tempfile.mkdtemp(prefix="maasrec-check-")
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _seeded(factory: Factory) -> Recommender:
    model = factory()
    if "random_state" in model.get_params(deep=False) and model.get_params()["random_state"] is None:
        model.set_params(random_state=0)
    return model


def _fitted(factory: Factory, data: Interactions | None = None) -> tuple[Recommender, Interactions]:
    data = data if data is not None else tiny_interactions()
    return _seeded(factory).fit(data), data


def _raises(exc_type, fn, *args, match: str | None = None, **kwargs):
    try:
        fn(*args, **kwargs)
    except exc_type as exc:
        if match is not None and match not in str(exc):
            raise AssertionError(f"{exc_type.__name__} raised but its message {str(exc)!r} does "
                                 f"not name {match!r}") from exc
        return exc
    except Exception as exc:
        raise AssertionError(f"expected {exc_type.__name__}, got {type(exc).__name__}: {exc}") from exc
    raise AssertionError(f"expected {exc_type.__name__}, nothing was raised")


# -- the checks ----------------------------------------------------------------------

def check_params(factory: Factory) -> None:
    """``__init__`` stores params unchanged and does no work; get/set/clone agree."""
    model = factory()
    params = model.get_params(deep=False)
    assert set(params) == set(type(model)._get_param_names())
    fitted = [k for k in vars(model) if k.endswith("_") and not k.startswith("_")]
    assert not fitted, f"__init__ set fitted attributes {fitted}"
    c = clone(model)
    assert type(c) is type(model)
    for k, v in params.items():
        cv = c.get_params(deep=False)[k]
        if not hasattr(v, "get_params"):
            assert repr(cv) == repr(v), f"clone changed parameter {k}: {v!r} -> {cv!r}"
    _raises(DataError, model.set_params, not_a_parameter=1, match="not_a_parameter")
    if params:
        name, value = next(iter(params.items()))
        assert model.set_params(**{name: value}) is model
    repr(model)


def check_not_fitted(factory: Factory) -> None:
    """Using an unfitted model raises NotFittedError."""
    model = factory()
    _raises(NotFittedError, model.recommend, ["u0"], k=3)
    with _tmpdir() as d:
        _raises(NotFittedError, model.save, d / "m")
    assert not model.is_fitted


def check_fit_returns_self(factory: Factory) -> None:
    """``fit`` returns self and sets the vocabularies."""
    data = tiny_interactions()
    model = _seeded(factory)
    assert model.fit(data) is model
    assert model.is_fitted
    assert model.user_vocab_ == data.user_vocab and model.item_vocab_ == data.item_vocab
    assert model.n_items_ == data.n_items


def check_recommend_output(factory: Factory) -> None:
    """Shapes, raw ids, sorted scores, no duplicates, no seen items."""
    model, data = _fitted(factory)
    users = list(data.user_vocab.ids[:7])
    ids, scores = model.recommend(users, k=5)
    assert ids.shape == (7, 5) and scores.shape == (7, 5), (ids.shape, scores.shape)
    assert scores.dtype == np.float32
    assert np.isin(ids, data.item_vocab.ids).all(), "recommend returned ids outside the catalogue"
    assert (np.diff(scores, axis=1) <= 1e-6).all(), "scores are not sorted best first"
    seen = data.to_csr()
    for r, u in enumerate(users):
        assert len(set(ids[r].tolist())) == 5, f"duplicate items for user {u}: {ids[r]}"
        uidx = data.user_vocab.index([u])[0]
        seen_ids = set(data.item_vocab.ids[seen[uidx].indices].tolist())
        assert not seen_ids & set(ids[r].tolist()), f"user {u} got seen items"
    one_ids, one_scores = model.recommend(users[0], k=5)
    assert one_ids.shape == (5,), "a single user id must give 1-d arrays"
    np.testing.assert_array_equal(one_ids, ids[0])
    # a network scores a batch of other shapes (padding, blocking): float32 rounding of
    # about 1e-5 (an LMRanker's cross-encoder over pairs padded to another length)
    np.testing.assert_allclose(one_scores, scores[0], rtol=1e-5, atol=1e-5)
    ids2, _ = model.recommend(users, k=5, batch_size=2)
    np.testing.assert_array_equal(ids2, ids)


def check_exclude_seen_false(factory: Factory) -> None:
    """With ``exclude_seen=False`` every item is a candidate."""
    model, data = _fitted(factory)
    ids, scores = model.recommend(list(data.user_vocab.ids[:3]), k=data.n_items,
                                  exclude_seen=False)
    assert np.isfinite(scores).all(), "exclude_seen=False must rank the whole catalogue"
    for row in ids:
        assert sorted(row.tolist()) == sorted(data.item_vocab.ids.tolist())


def check_unknown_ids(factory: Factory) -> None:
    """Unknown users and items raise UnknownIdError naming them."""
    model, _ = _fitted(factory)
    err = _raises(UnknownIdError, model.recommend, ["u0", "no-such-user"], k=3, match="no-such-user")
    assert "no-such-user" in err.ids
    _raises(UnknownIdError, model.recommend, ["u0"], k=3, items=[1000, 424242], match="424242")
    _raises(UnknownIdError, model.score, ["u0"], [999999], match="999999")


def check_bad_k(factory: Factory) -> None:
    """k must be a positive integer; k beyond the catalogue is capped at the number of
    items, and rows with fewer candidates (seen items excluded) are padded."""
    model, data = _fitted(factory)
    for bad in (0, -1, 2.5, "3", None, True):
        _raises(DataError, model.recommend, ["u0"], k=bad)
    _raises(DataError, model.recommend, [], k=3)
    k = data.n_items + 5
    ids, scores = model.recommend(["u0", "u1"], k=k)
    assert ids.shape == scores.shape == (2, data.n_items), (
        f"k={k} > {data.n_items} items must give {data.n_items} columns, got {ids.shape}")
    n_seen = data.to_csr()[data.user_vocab.index(["u0"])[0]].nnz
    n_cand = data.n_items - n_seen
    assert np.isfinite(scores[0, :n_cand]).all()
    assert np.isneginf(scores[0, n_cand:]).all(), "padding must have score -inf"
    pad_id = -1 if data.item_vocab.ids.dtype.kind in "iuf" else None
    assert all(x == pad_id for x in ids[0, n_cand:]), "padding id must be the documented sentinel"


def check_huge_k(factory: Factory) -> None:
    """k=10**9 costs no more than k=n_items: the same arrays, one column per item."""
    model, data = _fitted(factory)
    n = data.n_items
    huge = 10**9
    for kwargs in ({}, {"exclude_seen": False}):
        ids, scores = model.recommend(["u0", "u1"], k=huge, **kwargs)
        ref_ids, ref_scores = model.recommend(["u0", "u1"], k=n, **kwargs)
        assert ids.shape == scores.shape == (2, n), f"k=10**9 gave shape {ids.shape}, not (2, {n})"
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(scores, ref_scores)
    ids, scores = model.recommend("u0", k=huge)
    assert ids.shape == scores.shape == (n,)
    if model.supports_history:
        hist = [data.item_vocab.ids[0].item()]
        ids, scores = model.recommend(history=hist, k=huge)
        assert ids.shape == (n,)
        assert np.isneginf(scores[-1]) and hist[0] not in ids[np.isfinite(scores)].tolist()
    try:
        ids, scores = model.similar_items(data.item_vocab.ids[:2].tolist(), k=huge)
    except NotImplementedError:
        return
    assert ids.shape == scores.shape == (2, n)
    assert np.isneginf(scores[:, -1]).all(), "an item is never similar to itself: last is padding"


def check_filters(factory: Factory) -> None:
    """Allow-lists and deny-lists (global and per user) are never violated."""
    model, data = _fitted(factory)
    allow = list(data.item_vocab.ids[::3])
    deny = list(data.item_vocab.ids[:10])
    ids, scores = model.recommend(["u0", "u1", "u2"], k=4, items=allow, exclude=deny)
    real = np.isfinite(scores)
    assert set(ids[real].tolist()) <= set(allow) - set(deny)
    per_user = [allow[:4], allow[4:], allow]
    ids, scores = model.recommend(["u0", "u1", "u2"], k=3, items=per_user)
    for r in range(3):
        got = set(ids[r][np.isfinite(scores[r])].tolist())
        assert got <= set(per_user[r]), f"row {r} broke its allow-list"
    ids, _ = model.recommend(["u0", "u1"], k=5, exclude=[deny[:2], deny])
    assert not set(ids[0].tolist()) & set(deny[:2]) and not set(ids[1].tolist()) & set(deny)
    _raises(DataError, model.recommend, ["u0", "u1"], k=3, items=[allow, allow, allow])


def check_history(factory: Factory) -> None:
    """``history=`` serves cold users; history items are excluded; errors are clear."""
    model, data = _fitted(factory)
    if not model.supports_history:
        _raises(NotImplementedError, model.recommend, history=[1000, 1001], k=3)
        return
    hist = [int(x) for x in data.item_vocab.ids[[0, 1, 2]]]
    ids, _ = model.recommend(history=hist, k=5)
    assert ids.shape == (5,) and not set(ids.tolist()) & set(hist)
    ids2, _ = model.recommend(["new-user-a", "new-user-b"], history=[hist, hist[:1]], k=5)
    assert ids2.shape == (2, 5)
    np.testing.assert_array_equal(ids2[0], ids)
    _raises(UnknownIdError, model.recommend, history=[hist[0], 987654], k=3, match="987654")
    _, s3 = model.recommend(history=[[], hist], k=5)  # empty history: popular items
    assert np.isfinite(s3[0]).all()
    _raises(DataError, model.recommend, ["a", "b", "c"], history=[hist, hist], k=3)


def check_score(factory: Factory) -> None:
    """``score`` agrees with the scores ``recommend`` returns."""
    model, _ = _fitted(factory)
    ids, scores = model.recommend(["u3"], k=4)
    s = model.score(["u3"] * 4, list(ids[0]))
    np.testing.assert_allclose(s, scores[0], rtol=1e-4, atol=1e-5)
    _raises(DataError, model.score, ["u3", "u4"], [ids[0][0]])


def check_input_types(factory: Factory) -> None:
    """A frame, Interactions and a scipy.sparse matrix give the same model."""
    data = tiny_interactions()
    frame = data.to_pandas()
    a = _seeded(factory).fit(data)
    b = _seeded(factory).fit(frame)
    ia, sa = a.recommend(["u0", "u5"], k=5)
    ib, sb = b.recommend(["u0", "u5"], k=5)
    np.testing.assert_array_equal(ia, ib)
    np.testing.assert_allclose(sa, sb, rtol=1e-6)
    csr = data.to_csr()
    c = _seeded(factory).fit(csr)
    ic, _ = c.recommend([0, 5], k=5)
    assert ic.shape == (2, 5) and np.isin(ic, np.arange(data.n_items)).all()


def check_bad_data(factory: Factory) -> None:
    """Empty data, NaN ratings and wrong types raise DataError naming the problem."""
    frame = tiny_interactions().to_pandas()
    _raises(DataError, _seeded(factory).fit, frame.iloc[:0], match="empty")
    bad = frame.copy()
    bad.loc[3, "rating"] = np.nan
    _raises(DataError, _seeded(factory).fit, bad, match="NaN")
    _raises(DataError, _seeded(factory).fit, [[1, 2], [3, 4]])


def check_save_load(factory: Factory) -> None:
    """save/load round-trips exactly; no pickle; atomic; refuses newer formats."""
    model, data = _fitted(factory)
    users = list(data.user_vocab.ids[:6])
    ids, scores = model.recommend(users, k=5)
    with _tmpdir() as d:
        path = d / "model"
        model.save(path)
        files = sorted(p.name for p in path.rglob("*") if p.is_file())
        assert not any(f.endswith((".pkl", ".pickle", ".pt", ".bin", ".joblib")) for f in files), files
        loaded = type(model).load(path)
        assert type(loaded) is type(model)
        assert loaded.get_params(deep=False).keys() == model.get_params(deep=False).keys()
        ids2, scores2 = loaded.recommend(users, k=5)
        np.testing.assert_array_equal(ids2, ids)
        np.testing.assert_allclose(scores2, scores, rtol=1e-6, atol=1e-7)
        if model.supports_history:
            h = [int(x) for x in data.item_vocab.ids[:3]]
            np.testing.assert_array_equal(loaded.recommend(history=h, k=4)[0],
                                          model.recommend(history=h, k=4)[0])
        from .. import load as generic_load

        assert type(generic_load(path)) is type(model)
        _raises(FileExistsError, model.save, path)
        model.save(path, overwrite=True)
        # a failed save leaves the previous model intact
        model.unsaveable_ = object()
        try:
            _raises(Exception, model.save, path, overwrite=True)
        finally:
            del model.unsaveable_
        np.testing.assert_array_equal(type(model).load(path).recommend(users, k=5)[0], ids)
        leftovers = [p.name for p in d.iterdir() if p.name != "model"]
        assert not leftovers, f"save left temporary files behind: {leftovers}"
        meta_path = path / "maasrec.json"
        meta = json.loads(meta_path.read_text())
        meta["format_version"] = 999
        meta_path.write_text(json.dumps(meta))
        _raises(ModelFormatError, type(model).load, path, match="999")
        (d / "empty").mkdir()
        _raises(ModelFormatError, type(model).load, d / "empty", match="maasrec.json")
        _raises(ModelFormatError, type(model).load, d / "missing")


def check_deterministic(factory: Factory) -> None:
    """Same seed, same data, same device: same result."""
    data = tiny_interactions()
    users = list(data.user_vocab.ids[:10])
    a = _seeded(factory).fit(data).recommend(users, k=5)
    b = _seeded(factory).fit(data).recommend(users, k=5)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def check_learns(factory: Factory) -> None:
    """Beats chance (by 30%) on the last item of each user of the tiny clustered data."""
    full = tiny_interactions(n_users=60, per_user=8, seed=1)
    counts = full.user_counts()
    last = full.user_indptr[1:] - 1
    test_mask = np.zeros(full.nnz, dtype=bool)
    test_mask[last[counts > 1]] = True
    train, test = full.subset(~test_mask), full.subset(test_mask)
    model = _seeded(factory).fit(train)
    users = full.user_vocab.ids[test.user_indices]
    ids, _ = model.recommend(list(users), k=10)
    hits = np.mean([t in row for t, row in zip(full.item_vocab.ids[test.item_indices], ids)])
    chance = 10 / full.n_items
    assert hits >= 1.3 * chance, f"hit rate@10 {hits:.3f} is not above chance ({chance:.3f})"


CONTRACT_CHECKS: list[Callable[[Factory], None]] = [
    check_params,
    check_not_fitted,
    check_fit_returns_self,
    check_recommend_output,
    check_exclude_seen_false,
    check_unknown_ids,
    check_bad_k,
    check_huge_k,
    check_filters,
    check_history,
    check_score,
    check_input_types,
    check_bad_data,
    check_save_load,
    check_deterministic,
    check_learns,
]


def iter_checks(factory: Factory | type) -> Iterator[tuple[str, Callable[[], None]]]:
    """Yield ``(name, check)`` pairs, each check a no-argument callable.

    Parameters
    ----------
    factory : callable returning an unfitted Recommender, or a Recommender class

    Yields
    ------
    name : str
    check : callable
    """
    for chk in CONTRACT_CHECKS:
        yield chk.__name__, (lambda chk=chk: chk(factory))


def check_recommender(factory: Factory | type) -> None:
    """Run every contract check against the models ``factory`` builds.

    Parameters
    ----------
    factory : callable returning an unfitted Recommender, or a Recommender class
        Called once per check (models with ``random_state=None`` get 0).

    Raises
    ------
    AssertionError
        Naming the failed check.
    """
    for name, chk in iter_checks(factory):
        try:
            chk()
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from exc
