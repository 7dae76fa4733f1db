"""Quantized storage of the factor and item-vector tables a fitted model scores with.

:func:`quantize` turns a fitted matrix-factorisation-style model (``ALS``, ``BPRMF``,
``PureSVD``, ``EASE``'s item-item matrix, ``HybridRecommender``'s final user and item
vectors) into a :class:`QuantizedRecommender`: the float32 tables are replaced by int8
codes with one float32 scale per row (``"int8"``, 4x smaller), or by 16-bit floats
(``"float16"``, ``"bfloat16"``, 2x smaller). The model then scores with the dequantized
tables (``codes * scale``, computed once), so its recommendations are those of the
original model with rounded vectors; saved, only the codes and scales are written (the
inner model's directory holds everything else), and loading rebuilds bit-identical
tables.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..base import Recommender, clone
from ..exceptions import DataError, ModelFormatError, NotFittedError
from ._wrapped import SUBDIR, WrappedRecommender

__all__ = ["CODECS", "QuantizedRecommender", "dequantize_table", "quantize", "quantize_table"]

#: Table storage formats: bytes per value.
CODECS = {"int8": 1, "float16": 2, "bfloat16": 2}

#: Fitted float tables ``[rows, dim]`` quantized per model class (public class name ->
#: attribute names; attributes that are None or absent on a fitted model are skipped).
_TABLES = {
    "ALS": ("item_factors_", "user_factors_"),
    "BPRMF": ("item_factors_", "user_factors_"),
    "PureSVD": ("item_factors_",),
    "EASE": ("B_",),
    "HybridRecommender": ("item_repr_", "user_repr_", "history_repr_"),
}

#: Why the other models are refused (class name -> reason).
_NOT_APPLICABLE = {
    "Popularity": "it stores one count per item, no vector tables",
    "ItemKNN": "its item-item similarities are a sparse matrix, not a dense table",
    "SequentialRecommender": "its item table is computed by its network from the weights; "
                             "table quantization covers models that store their final "
                             "vectors (ALS, BPRMF, PureSVD, EASE, HybridRecommender)",
    "NeuMF": "it scores through an MLP over learned embeddings, not stored vector tables",
}


def _supported(model: Recommender) -> tuple[str, ...] | None:
    for klass in type(model).__mro__:
        if klass.__name__ in _TABLES and klass.__module__.startswith("maasrec."):
            return _TABLES[klass.__name__]
    return None


def _check_codec(tables: Any) -> str:
    if not isinstance(tables, str) or tables not in CODECS:
        raise DataError(f"tables must be one of {sorted(CODECS)}, got {tables!r}")
    return tables


# -- codecs ---------------------------------------------------------------------------------
def quantize_table(table: np.ndarray, codec: str) -> dict[str, np.ndarray]:
    """Encode a float table ``[rows, dim]``.

    Parameters
    ----------
    table : np.ndarray of float, shape (rows, dim)
    codec : {"int8", "float16", "bfloat16"}
        ``"int8"``: symmetric per-row codes in ``[-127, 127]`` with scale
        ``max(|row|) / 127`` (a zero row gets scale 0); ``"float16"``: IEEE half
        (values beyond its range become +-65504); ``"bfloat16"``: the upper 16 bits of
        each float32, rounded to nearest even, stored as uint16.

    Returns
    -------
    dict
        ``codes`` (int8, float16 or uint16, same shape) and, for int8, ``scales``
        (float32, one per row).
    """
    codec = _check_codec(codec)
    t = np.ascontiguousarray(table, dtype=np.float32)
    if t.ndim != 2:
        raise DataError(f"a table must be 2-d [rows, dim], got shape {t.shape}")
    if not np.isfinite(t).all():
        raise DataError("the table holds NaN or inf values; refit the model")
    if codec == "int8":
        scales = (np.abs(t).max(axis=1) / 127.0).astype(np.float32) if t.shape[1] else (
            np.zeros(len(t), np.float32))
        safe = np.where(scales > 0, scales, 1.0).astype(np.float32)
        codes = np.clip(np.rint(t / safe[:, None]), -127, 127).astype(np.int8)
        return {"codes": codes, "scales": scales}
    if codec == "float16":
        big = np.finfo(np.float16).max
        return {"codes": np.clip(t, -big, big).astype(np.float16)}
    bits = t.view(np.uint32).astype(np.uint64)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16  # round to nearest even
    return {"codes": rounded.astype(np.uint16)}


def dequantize_table(codec: str, codes: np.ndarray, scales: np.ndarray | None = None
                     ) -> np.ndarray:
    """Decode what :func:`quantize_table` wrote into a float32 table.

    Parameters
    ----------
    codec : {"int8", "float16", "bfloat16"}
    codes : np.ndarray
    scales : np.ndarray of float32, optional
        Required for ``"int8"``.

    Returns
    -------
    np.ndarray of float32, C-contiguous
    """
    if codec == "int8":
        return np.ascontiguousarray(codes.astype(np.float32) * scales[:, None])
    if codec == "float16":
        return np.ascontiguousarray(codes.astype(np.float32))
    return (codes.astype(np.uint32) << 16).view(np.float32)


# -- the public entry point -----------------------------------------------------------------
def quantize(model: Recommender, tables: str = "int8") -> QuantizedRecommender:
    """Store a fitted model's scoring tables as int8 codes (or 16-bit floats).

    Parameters
    ----------
    model : Recommender
        A fitted ``ALS``, ``BPRMF``, ``PureSVD``, ``EASE`` or ``HybridRecommender``
        (subclasses included). It is not modified: the result holds a shallow copy of
        it whose tables are replaced by their dequantized values (the read-only parts,
        such as ``seen_`` and the vocabularies, are shared). A retriever attached to it
        is rebuilt, with the same parameters, over the quantized vectors.
    tables : {"int8", "float16", "bfloat16"}, default "int8"
        Storage of the tables: int8 with one float32 scale per row (about 4x
        smaller), or 16-bit floats (2x).

    Returns
    -------
    QuantizedRecommender
        A fitted recommender: ``recommend``, ``score``, ``evaluate``, retrievers,
        ``save``/``load`` and ``maasrec serve`` work as for any model.

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    DataError
        ``model`` is not a recommender, is already quantized, is a model whose scoring
        does not go through stored dense tables (the message says why), or ``tables``
        is not a known format.

    Examples
    --------
    >>> from maasrec.models import ALS                      # doctest: +SKIP
    >>> q = quantize(ALS().fit(train), tables="int8")        # doctest: +SKIP
    >>> q.save("als-int8")                                   # doctest: +SKIP
    """
    codec = _check_codec(tables)
    if isinstance(model, QuantizedRecommender):
        raise DataError(f"the model is already quantized (tables={model.tables!r}); quantize "
                        f"the original model instead")
    if not isinstance(model, Recommender):
        from ..encoders.text import TextEncoder

        hint = (" (for a TextEncoder, use maasrec.compress.quantize_encoder)"
                if isinstance(model, TextEncoder) else "")
        raise DataError(f"quantize takes a fitted maasrec Recommender, got "
                        f"{type(model).__name__}{hint}")
    names = _supported(model)
    if names is None:
        reason = _NOT_APPLICABLE.get(type(model).__name__,
                                     "it stores no dense float tables that it scores with")
        raise DataError(f"table quantization does not apply to {type(model).__name__}: "
                        f"{reason}. It applies to {sorted(_TABLES)}")
    if not model.is_fitted:
        raise NotFittedError(f"this {type(model).__name__} is not fitted yet; fit it before "
                             f"quantizing it")
    out = QuantizedRecommender(model=clone(model), tables=codec)
    inner = copy.copy(model)
    inner._retriever = None  # the original's index stays the original's
    out._adopt(inner, names)
    out.fitted_at_ = getattr(model, "fitted_at_", None)
    retriever = getattr(model, "_retriever", None)
    if retriever is not None:  # the same kind of index, built over the rounded vectors
        out.set_retriever(type(retriever)(**retriever.get_params()))
    return out


class QuantizedRecommender(WrappedRecommender):
    """A fitted model whose scoring tables are stored quantized (see :func:`quantize`).

    Usually made by :func:`quantize` from a fitted model; ``fit`` fits a clone of
    ``model`` and quantizes it.

    Parameters
    ----------
    model : Recommender, optional
        The (unfitted) model to fit and quantize; one of the models :func:`quantize`
        takes.
    tables : {"int8", "float16", "bfloat16"}, default "int8"

    Attributes
    ----------
    model_ : Recommender
        The inner fitted model, scoring with the dequantized tables (reach its own
        methods through it, e.g. ``model_.recalculate_users``).
    quantized_tables_ : dict
        ``{attribute: {"codec", "shape"}}`` for each quantized table.
    table_bytes_ : dict
        ``{"float32": bytes of the original tables, "stored": bytes of codes and
        scales}``.

    Notes
    -----
    Scores are computed with float32 tables rebuilt once from the codes (the int8
    codes and their scales stay in memory for ``save``), so scoring speed is that of the
    original model; the saving is on disk, in transfers and in the model's load time.
    """

    _not_fitted = ("this {} is not fitted yet; call fit(X) or use "
                   "maasrec.compress.quantize(fitted_model)")

    def __init__(self, model: Recommender | None = None, tables: str = "int8"):
        self.model = model
        self.tables = tables

    @property
    def table_bytes_(self) -> dict[str, int]:
        self._check_fitted()
        stored = sum(int(getattr(self, f"{n}codes_").nbytes) + (
            int(getattr(self, f"{n}scales_").nbytes) if i["codec"] == "int8" else 0)
            for n, i in self.quantized_tables_.items())
        full = sum(4 * int(np.prod(i["shape"])) for i in self.quantized_tables_.values())
        return {"float32": full, "stored": stored}

    def _validate_params(self) -> None:
        _check_codec(self.tables)
        if not isinstance(self.model, Recommender) or isinstance(self.model,
                                                                 QuantizedRecommender):
            raise DataError(f"model must be a maasrec Recommender to quantize, got "
                            f"{self.model!r}")
        if _supported(self.model) is None:
            quantize(self.model, self.tables)  # raises the error naming the reason

    def fit(self, X, item_features=None, user_features=None, *, validation=None,
            checkpoint_dir=None) -> QuantizedRecommender:
        """Fit a clone of ``model`` on ``X`` and quantize its tables.

        Parameters
        ----------
        X, item_features, user_features, validation, checkpoint_dir
            As for :meth:`maasrec.base.Recommender.fit`.

        Returns
        -------
        self
        """
        if checkpoint_dir is not None:
            raise DataError("QuantizedRecommender.fit takes no checkpoint_dir; fit the model "
                            "with a checkpoint, then quantize it")
        self._check_standard_params()
        self._validate_params()
        self.__dict__.pop("_inner", None)
        inner = clone(self.model).fit(X, item_features, user_features, validation=validation)
        self._adopt(inner, _supported(inner))
        self.fitted_at_ = getattr(inner, "fitted_at_", None)
        return self

    def _adopt(self, inner: Recommender, names: tuple[str, ...]) -> None:
        """Quantize ``inner``'s tables (in place: ``inner`` is ours) and keep it."""
        info = {}
        for name in names:
            table = getattr(inner, name, None)
            if not (isinstance(table, np.ndarray) and table.ndim == 2 and table.dtype.kind == "f"
                    and table.size):
                continue
            enc = quantize_table(table, self.tables)
            setattr(self, f"{name}codes_", enc["codes"])
            if "scales" in enc:
                setattr(self, f"{name}scales_", enc["scales"])
            setattr(inner, name, dequantize_table(self.tables, enc["codes"], enc.get("scales")))
            info[name] = {"codec": self.tables, "shape": [int(s) for s in table.shape]}
        if not info:
            raise DataError(f"this {type(inner).__name__} holds no float tables to quantize")
        self.quantized_tables_ = info
        for cache in ("_vectors_cache", "_pop_cache"):
            inner.__dict__.pop(cache, None)
        self._inner = inner
        self._pop_cache = None

    # -- scoring: the inner model, on dequantized tables (more in WrappedRecommender) --
    def _similar_scores(self, item_idx: np.ndarray):
        return self.model_._similar_scores(item_idx)

    def _item_vectors(self):
        return self.model_._item_vectors()

    def _user_vectors(self, user_idx: np.ndarray):
        return self.model_._user_vectors(user_idx)

    def _history_vectors(self, history: sp.csr_matrix):
        return self.model_._history_vectors(history)

    # -- persistence ----------------------------------------------------------------------
    def _save_extra_files(self, tmp) -> None:
        skeleton = copy.copy(self.model_)
        for name in self.quantized_tables_:
            skeleton.__dict__.pop(name, None)  # written as codes by this object
        skeleton._retriever = None  # a retriever belongs to this object (saved below)
        skeleton.save(os.path.join(tmp, SUBDIR))
        super()._save_extra_files(tmp)

    def _load_extra_files(self, path) -> None:
        info = getattr(self, "quantized_tables_", None)
        d, klass, folder, where = self._read_inner(path)
        names = _TABLES.get(klass.__name__) if isinstance(klass, type) else None
        if names is None or not issubclass(klass, Recommender) or issubclass(
                klass, QuantizedRecommender):
            raise ModelFormatError(f"{where}: the inner model is a {d['meta'].get('class')}, "
                                   f"which table quantization does not apply to")
        if not isinstance(info, dict) or not info or set(info) - set(names):
            raise ModelFormatError(f"{where}: quantized_tables_ {info!r} does not name "
                                   f"tables of a {klass.__name__} ({list(names)})")
        attributes = d["meta"].get("attributes")
        if not isinstance(attributes, dict):
            raise ModelFormatError(f"{where}: the inner model's attributes are not a JSON "
                                   f"object")
        for name, entry in info.items():
            table = self._decoded(where, name, entry)
            if name in attributes or name in d["arrays"]:
                raise ModelFormatError(f"{where}: the inner model stores {name!r} itself, "
                                       f"but it is quantized here")
            d["arrays"][name] = table
            attributes[name] = {"type": "ndarray"}
        inner = Recommender._load_checked(d, folder)
        self._inner = inner
        super()._load_extra_files(path)

    def _decoded(self, where: str, name: str, entry: Any) -> np.ndarray:
        """The float32 table ``name`` from its loaded codes, after checking them."""
        from .._loadcheck import check_dense

        if not isinstance(entry, dict) or entry.get("codec") != self.tables:
            raise ModelFormatError(f"{where}: quantized_tables_[{name!r}] = {entry!r} does not "
                                   f"match tables={self.tables!r}")
        shape = entry.get("shape")
        if not (isinstance(shape, list) and len(shape) == 2 and all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s < 2**40
                for s in shape)):
            raise ModelFormatError(f"{where}: quantized_tables_[{name!r}] has a bad shape "
                                   f"{shape!r}")
        codes = getattr(self, f"{name}codes_", None)
        want = {"int8": np.int8, "float16": np.float16, "bfloat16": np.uint16}[self.tables]
        if not isinstance(codes, np.ndarray) or codes.dtype != want:
            raise ModelFormatError(f"{where}: the codes {name}codes_ are missing or not "
                                   f"{np.dtype(want).name}")
        if list(codes.shape) != shape:
            raise ModelFormatError(f"{where}: {name}codes_ has shape {list(codes.shape)}, "
                                   f"described as {shape}")
        scales = None
        if self.tables == "int8":
            scales = getattr(self, f"{name}scales_", None)
            check_dense(where, f"{name}scales_", scales, shape=(shape[0],), kind="f")
            if scales.dtype != np.float32 or (scales < 0).any():
                raise ModelFormatError(f"{where}: {name}scales_ must be non-negative float32")
        table = dequantize_table(self.tables, codes, scales)
        check_dense(where, name, table, shape=tuple(shape), kind="f")  # bfloat16 inf/NaN
        return table
