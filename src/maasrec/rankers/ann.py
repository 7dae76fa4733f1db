"""Approximate nearest-neighbour candidate retrieval over item vectors, with faiss.

:class:`FaissRetriever` indexes one vector per item and returns, for query (user)
vectors, the items with the largest inner product (or cosine). It is the first stage
of ``Recommender.recommend(..., retriever=...)``: candidates are then re-scored exactly
with the model's scorer and filtered (see :func:`maasrec.rankers.retrieve_topk`).

faiss is imported lazily (on ``fit``/``search``/``load``), so ``import maasrec`` does not
load it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .._loadcheck import check_json_int
from .._validation import check_choice, check_int
from .._version import __version__
from ..exceptions import DataError, ModelFormatError, NotFittedError
from .topk import _check_k

__all__ = ["FaissRetriever", "as_matrix", "check_vectors", "fingerprint"]

logger = logging.getLogger(__name__)

FORMAT_NAME = "maasrec-retriever"
FORMAT_VERSION = 1
META_FILE = "retriever.json"
INDEX_FILE = "index.faiss"

#: k-means of the IVF coarse quantizer trains on at most this many points per list.
IVF_TRAIN_POINTS_PER_LIST = 64
#: k-means iterations of the IVF coarse quantizer (faiss's default).
IVF_TRAIN_ITERATIONS = 10
#: Default HNSW efSearch (measured: recall@10 >= 0.95 at 1M x 64, benchmarks/).
DEFAULT_EF_SEARCH = 128
_INDEX_TYPES = ("flat", "ivf", "hnsw", "ivfpq", "sq8")
#: Index types whose quantizer or codebooks are trained on the vectors given to ``fit``.
_TRAINED = ("ivf", "ivfpq", "sq8")
#: Index types searched through inverted lists (``nprobe``).
_IVF_TYPES = ("ivf", "ivfpq")
_METRICS = ("ip", "cosine")
_PARAMS = ("index", "metric", "n_candidates", "nlist", "nprobe", "hnsw_m", "ef_construction",
           "ef_search", "random_state", "n_threads", "pq_m", "pq_nbits")


def _faiss():
    try:
        import faiss
    except ImportError as exc:  # pragma: no cover - faiss-cpu is a dependency
        raise ImportError("FaissRetriever needs faiss: pip install faiss-cpu") from exc
    return faiss


#: Below this much work (items to index, or queries x items to search) faiss runs on one
#: thread: OpenMP start-up costs more than it saves on small jobs (2-8x slower measured).
SMALL_JOB = 20_000


_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"active": 0, "saved": None}


@contextlib.contextmanager
def _threads(n: int | None, work: int | None = None):
    """Run faiss with ``n`` OpenMP threads, restoring the previous setting afterwards.

    With ``n=None``, small jobs (``work < SMALL_JOB``) run on one thread and larger ones
    with faiss's current setting. Safe with concurrent callers: the setting found
    before the first of overlapping calls is the one restored after the last.
    """
    if n is None:
        if work is None or work >= SMALL_JOB:
            yield
            return
        n = 1
    faiss = _faiss()
    with _THREADS_LOCK:
        if _THREADS_STATE["active"] == 0:
            _THREADS_STATE["saved"] = faiss.omp_get_max_threads()
        _THREADS_STATE["active"] += 1
        faiss.omp_set_num_threads(int(n))
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["active"] -= 1
            if _THREADS_STATE["active"] == 0:
                faiss.omp_set_num_threads(_THREADS_STATE["saved"])


def as_matrix(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """A 2-d numeric array of vectors, without copying and without a scan of the values.

    Parameters
    ----------
    x : array-like or torch tensor, shape (n, d)
    name : str
        Used in error messages.
    dim : int, optional
        Required number of columns.

    Returns
    -------
    np.ndarray

    Raises
    ------
    DataError
        Not 2-d, not numeric, zero or wrong dimension.
    """
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise DataError(f"{name} must be a numeric array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise DataError(f"{name} must be a 2-d array [n, dim], got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise DataError(f"{name} has shape {arr.shape}: vectors need at least one dimension")
    if dim is not None and arr.shape[1] != dim:
        raise DataError(f"{name} have dimension {arr.shape[1]}, but the index holds {dim}-d "
                        f"item vectors")
    return arr


def check_vectors(x: Any, name: str, dim: int | None = None) -> np.ndarray:
    """Validate a 2-d finite float matrix; return it as C-contiguous float32.

    Parameters
    ----------
    x : array-like, shape (n, d)
    name : str
        Used in error messages.
    dim : int, optional
        Required number of columns.

    Returns
    -------
    np.ndarray of float32, shape (n, d)

    Raises
    ------
    DataError
        Not 2-d, wrong dimension, empty dimension, not numeric, NaN or inf values.
    """
    arr = np.ascontiguousarray(as_matrix(x, name, dim), dtype=np.float32)
    finite = np.isfinite(arr).all(axis=1)
    if not finite.all():
        row = int(np.flatnonzero(~finite)[0])
        raise DataError(f"{name} contain NaN or inf (first in row {row}: "
                        f"{arr[row][~np.isfinite(arr[row])][0]!r}); "
                        f"{int((~finite).sum())} bad rows in all")
    return arr


def _normalise(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0)


def fingerprint(vectors: np.ndarray, n: int | None = None) -> str:
    """A cheap fingerprint of the first ``n`` rows of ``vectors`` (shape + sampled rows).

    Hashes the shape and up to 2,048 evenly spaced rows (including the first and the
    last), about 1 ms, so it can run on every ``recommend``. It detects a refit model
    (every vector changes) and appended items; an in-place edit of rows that are not
    sampled is not detected (refit the retriever explicitly after such an edit).

    Parameters
    ----------
    vectors : np.ndarray, shape (n_items, d)
    n : int, optional
        Only the first ``n`` rows (default: all).

    Returns
    -------
    str
    """
    n = len(vectors) if n is None else int(n)
    rows = np.unique(np.linspace(0, max(n - 1, 0), num=min(n, 2048)).round().astype(np.int64))
    h = hashlib.blake2b(digest_size=16)
    h.update(np.asarray([n, vectors.shape[1]], dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(vectors[rows], dtype=np.float32).tobytes())
    return h.hexdigest()


class FaissRetriever:
    """Approximate top-k retrieval of items by inner product or cosine, with faiss.

    ``fit(item_vectors)`` builds the index; ``search(query_vectors, k)`` returns the
    (approximately) best items for each query. Used through
    ``model.recommend(users, retriever=FaissRetriever(...))`` or
    ``model.set_retriever(...)``, candidates are re-scored exactly with the model's
    scorer, filtered (seen items, allow/deny lists) with automatic over-fetching, and
    rows that stay short fall back to exact scoring.

    Parameters
    ----------
    index : {"hnsw", "ivf", "flat", "ivfpq", "sq8"}, default "hnsw"
        ``"flat"``: exact brute force (faiss BLAS); ``"ivf"``: inverted file with a
        k-means coarse quantizer (``IndexIVFFlat``); ``"hnsw"``: hierarchical navigable
        small-world graph (``IndexHNSWFlat``). These store the vectors uncompressed.
        Compressed: ``"ivfpq"``: inverted file with product-quantized residuals
        (``IndexIVFPQ``; ``pq_m`` codes of ``pq_nbits`` bits per vector, e.g. 16 bytes
        instead of 256 for 64-d vectors); ``"sq8"``: every vector as one byte per
        dimension, scanned exhaustively (``IndexScalarQuantizer``, 8-bit, 4x smaller).
        ``recommend`` re-scores the candidates exactly, so compression costs recall of
        the candidate list only (benchmarks/bench_compress.py).
    metric : {"ip", "cosine"}, default "ip"
        Retrieval similarity. ``"ip"`` matches matrix-factorisation scores
        ``<user, item>``; ``"cosine"`` normalises items and queries first (the final
        ranking in ``recommend`` still uses the model's own scores).
    n_candidates : int, default 100
        Candidates fetched per query before exact re-ranking in ``recommend`` (at
        least ``k``; more when exclusions or allow-lists would otherwise starve ``k``).
    nlist : int, optional
        IVF lists. Default ``4 * sqrt(n_items)``, at most ``n_items / 39`` (faiss wants
        39 training points per list), at least 1.
    nprobe : int, optional
        IVF lists visited per query. Default ``max(32, nlist // 64)``, at most
        ``nlist``: 62 of 4,000 lists at 1M items (recall@10 0.999 on the synthetic
        benchmark), 32 of 95 on MovieLens 1M ALS vectors (0.96; inner-product IVF needs
        a larger share of the lists there). Raised automatically when a search asks
        for more items than the visited lists are expected to hold.
    hnsw_m : int, default 32
        HNSW graph degree ``M``.
    ef_construction : int, default 40
        HNSW candidate-list size while building (faiss's default).
    ef_search : int, optional
        HNSW candidate-list size while searching; default 128 (recall@10 0.96 on the
        1M x 64 synthetic benchmark, 1.0 on MovieLens 1M ALS vectors). Always raised to
        at least the number of items asked.
    pq_m : int, optional
        ``"ivfpq"``: sub-quantizers (bytes per vector at 8 bits); must divide the vector
        dimension. Default: the largest divisor of the dimension that is at most a
        quarter of it.
    pq_nbits : int, optional
        ``"ivfpq"``: bits per sub-quantizer code, 1 to 8. Default 8, lowered to
        ``floor(log2(n_items))`` for catalogues of fewer than 256 items (the codebooks
        need at least ``2**pq_nbits`` training vectors).
    random_state : int or None, default 0
        Seed of the IVF and PQ k-means (initial centroids and training sample). HNSW has no
        free randomness (faiss seeds its level generator with a constant).
    n_threads : int, optional
        OpenMP threads for faiss while building and searching; the previous setting is
        restored afterwards. Default: one thread for small jobs (fewer than 20,000 items
        to index; small query batches), where OpenMP start-up costs more than it saves,
        and faiss's current setting (``faiss.omp_set_num_threads``) otherwise.

    Attributes
    ----------
    index_ : faiss.Index
    index_type_, metric_ : str
        The ``index`` and ``metric`` the index was built with.
    n_items_ : int
        Number of indexed items (item index ``i`` is faiss id ``i``).
    dim_ : int
    nlist_ : int or None
        IVF lists actually used.
    pq_shape_ : list of int or None
        ``[pq_m, pq_nbits]`` of an ``"ivfpq"`` index.
    n_trained_ : int
        Items in the index when it was built (IVF: its quantizer was trained on them).
    fingerprint_ : str
        :func:`fingerprint` of the indexed vectors, to notice stale indexes.

    Notes
    -----
    **Determinism.** Flat and IVF indexes are reproducible bit for bit (seeded
    k-means). faiss builds HNSW graphs with several threads; the graph was identical
    across builds in our tests, but faiss does not promise it: pass ``n_threads=1``
    for a guaranteed reproducible HNSW graph. A saved index is reloaded exactly.

    **Ties.** Within a returned list, equal scores are ordered by lower item index.
    Which of several tied items at the cut make it into an approximate list is up to
    faiss; ``recommend`` re-checks the cut exactly for ``index="flat"`` with
    ``metric="ip"`` so that it equals exact ranking, ties included.

    Examples
    --------
    >>> import numpy as np
    >>> V = np.random.default_rng(0).standard_normal((1000, 16)).astype("float32")
    >>> r = FaissRetriever("hnsw").fit(V)
    >>> idx, scores = r.search(V[:3], k=5)
    >>> idx.shape
    (3, 5)
    """

    def __init__(self, index: str = "hnsw", metric: str = "ip", *, n_candidates: int = 100,
                 nlist: int | None = None, nprobe: int | None = None, hnsw_m: int = 32,
                 ef_construction: int = 40, ef_search: int | None = None,
                 random_state: int | None = 0, n_threads: int | None = None,
                 pq_m: int | None = None, pq_nbits: int | None = None):
        self.index = index
        self.metric = metric
        self.n_candidates = n_candidates
        self.nlist = nlist
        self.nprobe = nprobe
        self.hnsw_m = hnsw_m
        self.ef_construction = ef_construction
        self.ef_search = ef_search
        self.random_state = random_state
        self.n_threads = n_threads
        self.pq_m = pq_m
        self.pq_nbits = pq_nbits

    # -- parameters ----------------------------------------------------------------------
    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """Parameters of this retriever.

        Parameters
        ----------
        deep : bool
            Ignored (no nested components).

        Returns
        -------
        dict
        """
        return {p: getattr(self, p) for p in _PARAMS}

    def set_params(self, **params) -> FaissRetriever:
        """Set parameters. Search-time ones (``n_candidates``, ``nprobe``, ``ef_search``,
        ``n_threads``) apply to the next search; the others (``index``, ``metric``,
        ``nlist``, ``hnsw_m``, ``ef_construction``, ``random_state``) to the next ``fit``.

        Parameters
        ----------
        **params

        Returns
        -------
        self
        """
        for k, v in params.items():
            if k not in _PARAMS:
                raise DataError(f"{k!r} is not a parameter of FaissRetriever; valid "
                                f"parameters: {list(_PARAMS)}")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        defaults = FaissRetriever()
        parts = [f"{p}={getattr(self, p)!r}" for p in _PARAMS
                 if getattr(self, p) != getattr(defaults, p)]
        return f"FaissRetriever({', '.join(parts)})"

    def _validate_params(self) -> None:
        check_choice("index", self.index, _INDEX_TYPES)
        check_choice("metric", self.metric, _METRICS)
        check_int("n_candidates", self.n_candidates, low=1)
        check_int("hnsw_m", self.hnsw_m, low=2)
        check_int("ef_construction", self.ef_construction, low=1)
        for name in ("nlist", "nprobe", "ef_search", "n_threads", "pq_m"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1)
        if self.pq_nbits is not None:
            check_int("pq_nbits", self.pq_nbits, low=1, high=8)
        if self.random_state is not None:
            check_int("random_state", self.random_state, low=0)

    @property
    def is_fitted(self) -> bool:
        """bool: whether an index has been built or loaded."""
        return getattr(self, "index_", None) is not None

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError("this FaissRetriever is not fitted yet; call fit(item_vectors)")

    @property
    def exact(self) -> bool:
        """bool: whether search returns the exact inner-product top-k (flat, ``"ip"``)."""
        self._check_fitted()
        return self.index_type_ == "flat" and self.metric_ == "ip"

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.default_rng().integers(2**31 - 1))
        return int(self.random_state)

    def _default_nlist(self, n: int) -> int:
        if self.nlist is not None:
            return max(1, min(int(self.nlist), n))
        return int(max(1, min(round(4 * math.sqrt(n)), n // 39)))

    def _pq_shape(self, n: int, d: int) -> tuple[int, int]:
        """(sub-quantizers, bits per code) for ``n`` training vectors of dimension ``d``."""
        if self.pq_m is not None:
            m = int(self.pq_m)
            if d % m:
                raise DataError(f"pq_m={m} must divide the vector dimension {d}")
        else:
            m = max(k for k in range(1, max(1, d // 4) + 1) if d % k == 0)
        limit = max(1, max(n, 2).bit_length() - 1)  # floor(log2(n))
        if self.pq_nbits is not None:
            nbits = int(self.pq_nbits)
            if 2**nbits > n:
                raise DataError(f"pq_nbits={nbits} needs at least {2**nbits} vectors to train "
                                f"its codebooks; the index gets {n} (use pq_nbits <= {limit})")
        else:
            nbits = min(8, limit)
        return m, nbits

    def _nprobe(self, k: int) -> int:
        nlist = int(self.nlist_)
        nprobe = self.nprobe if self.nprobe is not None else max(32, nlist // 64)
        # enough lists to hold about 2k items, so large fetches are not starved
        per_list = max(self.index_.ntotal / nlist, 1.0)
        return int(min(nlist, max(nprobe, math.ceil(2 * k / per_list))))

    # -- building ------------------------------------------------------------------------
    def _prepare(self, v: np.ndarray) -> np.ndarray:
        return _normalise(v) if self.metric_ == "cosine" else v

    def fit(self, item_vectors) -> FaissRetriever:
        """Build the index over item vectors (row ``i`` = item index ``i``).

        Parameters
        ----------
        item_vectors : array-like of float, shape (n_items, dim)

        Returns
        -------
        self

        Raises
        ------
        DataError
            Bad parameters (an unknown ``index`` or ``metric`` is named), or vectors that
            are not 2-d, empty, or not finite.
        """
        self._validate_params()
        v = check_vectors(item_vectors, "item_vectors")
        if len(v) == 0:
            raise DataError("item_vectors is empty; the index needs at least one item")
        faiss = _faiss()
        n, d = v.shape
        self.metric_ = self.metric
        x = self._prepare(v)
        t0 = time.perf_counter()
        ip = faiss.METRIC_INNER_PRODUCT
        nlist = None
        with _threads(self.n_threads, n):
            if self.index == "flat":
                index = faiss.IndexFlatIP(d)
            elif self.index == "hnsw":
                index = faiss.IndexHNSWFlat(d, int(self.hnsw_m), ip)
                index.hnsw.efConstruction = int(self.ef_construction)
            elif self.index == "sq8":
                index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
                index.train(x)
            else:
                nlist = self._default_nlist(n)
                quantizer = faiss.IndexFlatIP(d)
                if self.index == "ivfpq":
                    m, nbits = self._pq_shape(n, d)
                    index = faiss.IndexIVFPQ(quantizer, d, nlist, m, nbits, ip)
                    index.pq.cp.seed = self._seed()
                    index.pq.cp.min_points_per_centroid = 1  # small catalogues: no warning
                    index.pq.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST * 4
                else:
                    index = faiss.IndexIVFFlat(quantizer, d, nlist, ip)
                index.cp.seed = self._seed()
                index.cp.niter = IVF_TRAIN_ITERATIONS
                index.cp.max_points_per_centroid = IVF_TRAIN_POINTS_PER_LIST
                index.cp.min_points_per_centroid = 1 if n < 39 * nlist else 39
                index.train(x)
            index.add(x)
        self.index_ = index
        self.index_type_ = self.index
        self.n_items_ = int(n)
        self.dim_ = int(d)
        self.nlist_ = nlist
        self.pq_shape_ = [int(index.pq.M), int(index.pq.nbits)] if self.index == "ivfpq" else None
        self.n_trained_ = int(n)
        self.fingerprint_ = fingerprint(v)
        logger.info("FaissRetriever: built %s index (%s) over %d x %d vectors in %.2fs%s",
                    self.index, self.metric, n, d, time.perf_counter() - t0,
                    f", nlist={nlist}" if nlist else "")
        return self

    def add(self, item_vectors) -> FaissRetriever:
        """Append items: the new rows get the next item indices (``n_items_``, ...).

        The IVF quantizer is not retrained (see :meth:`sync`, which rebuilds an IVF
        index once the catalogue has doubled).

        Parameters
        ----------
        item_vectors : array-like of float, shape (n_new, dim)

        Returns
        -------
        self
        """
        self._check_fitted()
        v = check_vectors(item_vectors, "item_vectors", self.dim_)
        if len(v):
            with _threads(self.n_threads, len(v)):
                self.index_.add(self._prepare(v))
            self.n_items_ += len(v)
        return self

    def sync(self, item_vectors) -> str:
        """Bring the index up to date with a model's item vectors.

        Parameters
        ----------
        item_vectors : array-like of float, shape (n_items, dim)
            The model's current vectors.

        Returns
        -------
        str
            ``"unchanged"``; ``"added"`` (only new rows were appended: they are added to
            the index); ``"built"`` (the retriever was not fitted) or ``"rebuilt"``
            (dimension or vectors changed, e.g. the model was refit, or a trained index
            (IVF, IVF-PQ, SQ8) more than doubled).
        """
        v = as_matrix(item_vectors, "item_vectors")
        if not self.is_fitted:
            self.fit(v)
            return "built"
        n_old = self.n_items_
        if v.shape[1] == self.dim_ and len(v) >= n_old and (
                fingerprint(v, n_old) == self.fingerprint_):
            if len(v) == n_old:
                return "unchanged"  # the common case: ~1 ms, no scan of the vectors
            if not (self.index_type_ in _TRAINED and len(v) > 2 * self.n_trained_):
                self.add(v[n_old:])
                self.fingerprint_ = fingerprint(v)
                logger.info("FaissRetriever: added %d items (now %d)", len(v) - n_old, len(v))
                return "added"
        logger.info("FaissRetriever: item vectors changed (%d -> %d items); rebuilding the "
                    "index", n_old, len(v))
        self.fit(v)
        return "rebuilt"

    # -- searching -----------------------------------------------------------------------
    def search(self, query_vectors, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-k items for each query vector.

        Parameters
        ----------
        query_vectors : array-like of float, shape (n_queries, dim)
        k : int
            Items per query, capped at the number of items the index holds (a huge
            ``k`` costs no more than ``k = ntotal``).

        Returns
        -------
        indices : np.ndarray of int64, shape (n_queries, min(k, ntotal))
            Item indices, best first (ties by lower index); ``-1`` = padding.
        scores : np.ndarray of float32, shape (n_queries, min(k, ntotal))
            Inner products (cosines for ``metric="cosine"``); ``-inf`` = padding.

        Raises
        ------
        NotFittedError, DataError
        """
        self._check_fitted()
        k = _check_k(k)
        q = check_vectors(query_vectors, "query_vectors", self.dim_)
        self._validate_params()
        faiss = _faiss()
        q = self._prepare(q)
        kk = k = _check_k(k, self.index_.ntotal)  # never more columns than items
        params = None
        if self.index_type_ == "hnsw":
            ef = self.ef_search if self.ef_search is not None else DEFAULT_EF_SEARCH
            params = faiss.SearchParametersHNSW(efSearch=int(max(ef, kk)))
        elif self.index_type_ in _IVF_TYPES:
            params = faiss.SearchParametersIVF(nprobe=self._nprobe(kk))
        # per-query work: ~ef * M distance evaluations (HNSW), nprobe lists (IVF), all (flat)
        if self.index_type_ == "hnsw":
            per_query = 64 * params.efSearch
        elif self.index_type_ in _IVF_TYPES:
            per_query = params.nprobe * self.index_.ntotal // max(1, self.nlist_)
        else:
            per_query = self.index_.ntotal
        with _threads(self.n_threads, len(q) * max(per_query, 1) // 64):
            if len(q):
                dist, idx = self.index_.search(q, kk, params=params)
            else:
                dist = np.empty((0, kk), np.float32)
                idx = np.empty((0, kk), np.int64)
        idx = idx.astype(np.int64, copy=False)
        dist = dist.astype(np.float32, copy=False)
        dist[idx < 0] = -np.inf
        key = np.where(idx < 0, np.iinfo(np.int64).max, idx)
        order = np.lexsort((key, -dist), axis=1)
        idx = np.take_along_axis(idx, order, axis=1)
        dist = np.take_along_axis(dist, order, axis=1)
        if kk < k:
            pad = k - kk
            idx = np.concatenate([idx, np.full((len(idx), pad), -1, np.int64)], axis=1)
            dist = np.concatenate([dist, np.full((len(idx), pad), -np.inf, np.float32)], axis=1)
        return idx, dist

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write the retriever into the directory ``path`` (created; must not exist).

        Files: ``retriever.json`` (parameters and state) and ``index.faiss`` (faiss's own
        binary format via ``faiss.write_index``; no pickle). Model directories call this
        inside their temporary directory, so the model save stays atomic.

        Parameters
        ----------
        path : str or Path
        """
        self._check_fitted()
        faiss = _faiss()
        p = Path(path)
        p.mkdir(parents=True, exist_ok=False)
        faiss.write_index(self.index_, str(p / INDEX_FILE))
        meta = {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "maasrec_version": __version__,
            "faiss_version": getattr(faiss, "__version__", None),
            "class": "FaissRetriever",
            "params": self.get_params(),
            "state": {"index": self.index_type_, "metric": self.metric_,
                      "n_items": self.n_items_, "dim": self.dim_, "nlist": self.nlist_,
                      "n_trained": self.n_trained_, "fingerprint": self.fingerprint_,
                      "pq": self.pq_shape_},
        }
        with open(p / META_FILE, "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> FaissRetriever:
        """Read a retriever written by :meth:`save`.

        Parameters
        ----------
        path : str or Path

        Returns
        -------
        FaissRetriever

        Raises
        ------
        ModelFormatError
            Missing or corrupt files, a newer format, or an index that does not match
            its description.
        """
        from ..persistence import read_json

        p = Path(path)
        if not (p / META_FILE).is_file():
            raise ModelFormatError(f"{str(p)!r} is not a saved FaissRetriever: no {META_FILE}")
        meta = read_json(p / META_FILE)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            raise ModelFormatError(f"{str(p / META_FILE)!r} does not describe a retriever")
        version = meta.get("format_version")
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ModelFormatError(
                f"{str(p)!r} holds retriever format {version!r}; this maasrec ({__version__}) "
                f"reads formats up to {FORMAT_VERSION}: upgrade maasrec to load it")
        params = meta.get("params", {})
        if not isinstance(params, dict) or set(params) - set(_PARAMS):
            raise ModelFormatError(f"{str(p / META_FILE)!r} has unknown parameters {params!r}")
        try:
            self = cls(**params)
            self._validate_params()
        except (DataError, TypeError, ValueError) as exc:
            raise ModelFormatError(f"{str(p / META_FILE)!r}: bad parameters: {exc}") from exc
        state = meta.get("state", {})
        where = repr(str(p / META_FILE))
        # the description is checked before faiss's C++ reader sees the index file
        try:
            if not isinstance(state, dict):
                raise TypeError("not a JSON object")
            n = check_json_int(where, "state.n_items", state["n_items"], high=2**40)
            d = check_json_int(where, "state.dim", state["dim"], low=1, high=2**20)
            nlist = state.get("nlist")
            if nlist is not None:
                nlist = check_json_int(where, "state.nlist", nlist, low=1, high=2**40)
            n_trained = check_json_int(where, "state.n_trained", state["n_trained"], high=2**40)
            fp = state["fingerprint"]
            if not isinstance(fp, str):
                raise TypeError(f"fingerprint {fp!r} is not a string")
        except (KeyError, TypeError) as exc:
            raise ModelFormatError(f"{where}: bad state {state!r}: {exc}") from exc
        index_type = state.get("index", self.index)
        metric = state.get("metric", self.metric)
        if index_type not in _INDEX_TYPES or metric not in _METRICS:
            raise ModelFormatError(f"{where}: unknown index or metric in {state!r}")
        pq_shape = state.get("pq")
        if index_type == "ivfpq":
            if not (isinstance(pq_shape, list) and len(pq_shape) == 2):
                raise ModelFormatError(f"{where}: an ivfpq index needs state.pq = [pq_m, "
                                       f"pq_nbits], got {pq_shape!r}")
            pq_shape = (check_json_int(where, "state.pq[0]", pq_shape[0], low=1, high=d),
                        check_json_int(where, "state.pq[1]", pq_shape[1], low=1, high=8))
            if nlist is None:
                raise ModelFormatError(f"{where}: an ivfpq index needs state.nlist")
        elif pq_shape is not None:
            raise ModelFormatError(f"{where}: state.pq is set for a {index_type} index")
        if not (p / INDEX_FILE).is_file():
            raise ModelFormatError(f"index file {str(p / INDEX_FILE)!r} is missing")
        faiss = _faiss()
        _check_index_file(p / INDEX_FILE, index_type, n, d)
        try:
            index = faiss.read_index(str(p / INDEX_FILE))
        except (RuntimeError, MemoryError) as exc:
            raise ModelFormatError(f"cannot read {str(p / INDEX_FILE)!r}: {exc}") from exc
        if index.ntotal != n or index.d != d:
            raise ModelFormatError(
                f"{str(p / INDEX_FILE)!r} holds {index.ntotal} x {index.d} vectors, but its "
                f"description says {n} x {d}")
        _check_index_structure(faiss, index, index_type, nlist, str(p / INDEX_FILE),
                               pq_shape)
        self.index_, self.n_items_, self.dim_ = index, n, d
        self.index_type_, self.metric_ = index_type, metric
        self.nlist_ = nlist
        self.n_trained_, self.fingerprint_ = n_trained, fp
        self.pq_shape_ = None if pq_shape is None else list(pq_shape)
        return self


#: The first four bytes faiss writes for each index type (inner-product indexes).
_FOURCC = {"flat": b"IxFI", "hnsw": b"IHNf", "ivf": b"IwFl", "ivfpq": b"IwPQ",
           "sq8": b"IxSQ"}
#: Bytes of an IndexFlatIP file before its vectors (fourcc, d, ntotal, dummies, metric,
#: then the codes' length): the file is exactly this plus 4 * n * d.
_FLAT_HEADER = 45
#: Bytes of an 8-bit IndexScalarQuantizer file besides its ``2 * d`` float32 trained
#: ranges and its ``n * d`` codes.
_SQ_HEADER = 81


def _check_index_file(path: Path, index_type: str, n: int, d: int) -> None:
    """Check a faiss index file's type (fourcc) and, for flat indexes, its exact size.

    Run before ``faiss.read_index``: its C++ reader trusts the sizes written in the file.
    """
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(4)
    want = _FOURCC[index_type]
    if head != want:
        raise ModelFormatError(f"{str(path)!r} starts with {head!r}, not the {want!r} of a "
                               f"faiss {index_type} index")
    if index_type == "flat" and size != _FLAT_HEADER + 4 * n * d:
        raise ModelFormatError(f"{str(path)!r} has {size} bytes; a flat index of {n} x {d} "
                               f"vectors has {_FLAT_HEADER + 4 * n * d}")
    if index_type == "sq8" and size != _SQ_HEADER + 8 * d + n * d:
        raise ModelFormatError(f"{str(path)!r} has {size} bytes; an 8-bit scalar-quantizer "
                               f"index of {n} x {d} vectors has {_SQ_HEADER + 8 * d + n * d}")


def _check_pq(faiss, index, pq_shape, bad) -> None:
    """The product quantizer of an IVF-PQ index read from a file."""
    pq = getattr(index, "pq", None)
    if pq is None:
        bad("no product quantizer")
    m, nbits = int(pq.M), int(pq.nbits)
    if pq_shape is not None and (m, nbits) != tuple(pq_shape):
        bad(f"pq_m={m}, pq_nbits={nbits}, described as {tuple(pq_shape)}")
    if not (1 <= nbits <= 8) or m < 1 or m * int(pq.dsub) != index.d:
        bad(f"pq_m={m} x dsub={pq.dsub} for {index.d}-d vectors, {nbits} bits")
    if int(pq.code_size) != (m * nbits + 7) // 8 or int(index.code_size) != int(pq.code_size):
        bad(f"code size {index.code_size} for {m} codes of {nbits} bits")
    if len(faiss.vector_to_array(pq.centroids)) != index.d * (1 << nbits):
        bad("codebooks do not match the dimension")


def _check_index_structure(faiss, index, index_type: str, nlist, where: str,
                           pq_shape=None) -> None:
    """Check the graph (HNSW) or inverted lists (IVF) of an index read from a file.

    Neighbour and id values index arrays inside faiss's C++ search code: a crafted file
    with consistent hashes must not reach it with an id out of range.
    """
    n = int(index.ntotal)

    def bad(msg):
        raise ModelFormatError(f"{where!r}: corrupt faiss {index_type} index: {msg}")

    if index_type == "hnsw":
        index = faiss.downcast_index(index)
        h = getattr(index, "hnsw", None)
        if h is None:
            bad("no HNSW graph")
        storage = faiss.downcast_index(index.storage)
        if storage.ntotal != n or storage.d != index.d:
            bad(f"storage of {storage.ntotal} x {storage.d} vectors")
        nb = faiss.vector_to_array(h.neighbors)
        off = faiss.vector_to_array(h.offsets)
        levels = faiss.vector_to_array(h.levels)
        cum = faiss.vector_to_array(h.cum_nneighbor_per_level)
        if len(off) != n + 1 or len(levels) != n:
            bad(f"{len(off)} offsets and {len(levels)} levels for {n} vectors")
        if n and (off[0] != 0 or (np.diff(off.astype(np.int64)) < 0).any()
                  or int(off[-1]) != len(nb)):
            bad("offsets are not a non-decreasing partition of the neighbour table")
        if nb.size and (nb.min() < -1 or nb.max() >= n):
            bad(f"neighbour id {int(nb.max() if nb.max() >= n else nb.min())} outside "
                f"[-1, {n})")
        max_level = int(h.max_level)
        if len(cum) < 2 or (max_level < 0 and n):
            bad("no levels")
        if n and (levels.min() < 1 or levels.max() > min(max_level + 1, len(cum) - 1)):
            bad(f"levels outside [1, {max_level + 1}]")
        if n and len(levels):
            # the neighbours a vector of level l owns: cum[l] slots
            need = cum[levels.astype(np.int64)]
            if (np.diff(off.astype(np.int64)) < need).any():
                bad("a vector has fewer neighbour slots than its level needs")
        if n and not (0 <= int(h.entry_point) < n):
            bad(f"entry point {int(h.entry_point)} outside [0, {n})")
    elif index_type == "sq8":
        index = faiss.downcast_index(index)
        sq = getattr(index, "sq", None)
        if sq is None or int(sq.qtype) != int(faiss.ScalarQuantizer.QT_8bit):
            bad("not an 8-bit scalar quantizer")
        if int(index.code_size) != index.d or int(sq.code_size) != index.d:
            bad(f"code size {index.code_size} for {index.d}-d vectors")
        if len(faiss.vector_to_array(sq.trained)) != 2 * index.d:
            bad("trained ranges do not match the dimension")
        if int(index.codes.size()) != n * index.d:
            bad(f"{index.codes.size()} code bytes for {n} vectors")
    elif index_type in _IVF_TYPES:
        index = faiss.downcast_index(index)
        if index_type == "ivfpq":
            _check_pq(faiss, index, pq_shape, bad)
        q = faiss.downcast_index(index.quantizer)
        if nlist is not None and int(index.nlist) != nlist:
            bad(f"{index.nlist} lists, described as {nlist}")
        if q.ntotal != index.nlist or q.d != index.d:
            bad(f"quantizer of {q.ntotal} x {q.d} for {index.nlist} lists")
        il = index.invlists
        if il.nlist != index.nlist or il.code_size != index.code_size:
            bad("inverted lists do not match the index")
        total = 0
        for i in range(int(il.nlist)):
            m = int(il.list_size(i))
            total += m
            if m:
                ids = faiss.rev_swig_ptr(il.get_ids(i), m)
                if ids.min() < 0 or ids.max() >= n:
                    bad(f"list {i} holds id {int(ids.max())} outside [0, {n})")
        if total != n:
            bad(f"the lists hold {total} vectors for {n}")
