"""The cross-encoder: a language model with a one-logit classification head.

- Encoder (BERT-style) models become ``AutoModelForSequenceClassification`` with
  ``num_labels=1`` (the model's own pooler and classifier, e.g. ``[CLS]`` -> dense/tanh ->
  linear for BERT).
- Decoder (GPT-style) models, and encoders without a sequence-classification class, get a
  **last-token** head (first-token for encoders): the hidden state of the last real token
  -- found from the attention mask, so left- and right-padded batches give the same
  result -- goes through dropout and a linear layer.

:func:`save_cross_encoder` writes a folder that ``transformers`` reads by itself
(``config.json``, ``model.safetensors``, the tokenizer's JSON/text files) plus
``maasrec_lm.json`` and, for the last-token head, ``score_head.safetensors``. Nothing is
pickled, and :func:`load_cross_encoder` refuses a folder holding a pickle-based file.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..encoders.hub import _not_available, load_config, load_model_and_tokenizer, resolve_model
from ..encoders.text import is_decoder_config, pool_hidden_states
from ..exceptions import DataError, ModelFormatError

__all__ = [
    "PICKLE_SUFFIXES",
    "CrossEncoder",
    "apply_lora",
    "build_cross_encoder",
    "freeze_lower_layers",
    "load_cross_encoder",
    "merge_lora",
    "own_aligned_storage",
    "save_cross_encoder",
]

logger = logging.getLogger(__name__)

#: File name endings of pickle-based formats: never written, refused on load.
PICKLE_SUFFIXES = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".joblib", ".npy", ".npz")
_META = "maasrec_lm.json"
_HEAD = "score_head.safetensors"
_KINDS = ("sequence_classification", "last_token", "first_token", "mean_tokens")
#: ``head`` choices of :func:`build_cross_encoder` (and of ``LMRanker``).
HEADS = ("auto", "mean", "first", "last")
_HEAD_KIND = {"mean": "mean_tokens", "first": "first_token", "last": "last_token"}
_POOL = {"last_token": "last", "first_token": "cls", "mean_tokens": "mean"}


@contextlib.contextmanager
def _quiet_transformers():
    """Silence transformers' load reports and progress bars (expected missing head weights)."""
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover
        yield
        return
    level = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled() if hasattr(
        hf_logging, "is_progress_bar_enabled") else None
    hf_logging.set_verbosity_error()
    if bars:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


class CrossEncoder(nn.Module):
    """A language model scoring token sequences with one logit each.

    Parameters
    ----------
    model : transformers.PreTrainedModel
        A ``...ForSequenceClassification`` model (``kind="sequence_classification"``) or
        a base model (``AutoModel``) for the token heads.
    kind : {"sequence_classification", "last_token", "first_token", "mean_tokens"}
        The model's own classification head, or a linear head on the last real token,
        the first token or the mean of the real tokens' hidden states.
    is_decoder : bool
    dropout : float, default 0.1
        Dropout before the token head.
    """

    def __init__(self, model: nn.Module, kind: str, *, is_decoder: bool, dropout: float = 0.1):
        super().__init__()
        if kind not in _KINDS:
            raise DataError(f"kind must be one of {_KINDS}, got {kind!r}")
        self.model = model
        self.kind = kind
        self.is_decoder = bool(is_decoder)
        self._accepts = set(inspect.signature(model.forward).parameters)
        if kind != "sequence_classification":
            hidden = _hidden_size(model.config)
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(hidden, 1)
            nn.init.normal_(self.head.weight, std=0.02)
            nn.init.zeros_(self.head.bias)

    @property
    def config(self):
        """transformers.PretrainedConfig: the language model's config."""
        return self.model.config

    @property
    def backbone(self) -> nn.Module:
        """torch.nn.Module: the transformer without its head."""
        m = self.model
        if hasattr(m, "get_base_model"):  # a peft wrapper
            m = m.get_base_model()
        return m.base_model if self.kind == "sequence_classification" else m

    def accepts_token_types(self) -> bool:
        """bool: whether the model uses token types (BERT-family models do, GPT-2 does not)."""
        return ("token_type_ids" in self._accepts
                and int(getattr(self.config, "type_vocab_size", 0) or 0) >= 2)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        """One logit per sequence.

        Parameters
        ----------
        input_ids, attention_mask : torch.Tensor of int64, shape (b, L)
        token_type_ids : torch.Tensor, optional

        Returns
        -------
        torch.Tensor of float32, shape (b,)
        """
        kwargs: dict[str, Any] = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            kwargs["token_type_ids"] = token_type_ids
        if self.kind == "sequence_classification":
            return self.model(**kwargs).logits[:, 0].float()
        left = bool((attention_mask[:, 0] == 0).any())
        if left and "position_ids" in self._accepts:
            # positions count real tokens, so left padding does not shift them
            kwargs["position_ids"] = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        if self.is_decoder and "use_cache" in self._accepts:
            kwargs["use_cache"] = False
        out = self.model(**kwargs)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]
        pooled = pool_hidden_states(hidden.float(), attention_mask, _POOL[self.kind])
        return self.head(self.dropout(pooled).to(self.head.weight.dtype))[:, 0].float()


def _hidden_size(config) -> int:
    for attr in ("hidden_size", "d_model", "n_embd", "dim"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise DataError(f"cannot tell the hidden size of a {type(config).__name__}")


def _seq_cls_from_base(base: nn.Module) -> nn.Module | None:
    """An ``AutoModelForSequenceClassification`` holding ``base``'s weights, or None."""
    from transformers import AutoModelForSequenceClassification

    config = copy.deepcopy(base.config)
    config.num_labels = 1
    try:
        with _quiet_transformers():
            clf = AutoModelForSequenceClassification.from_config(config)
    except (ValueError, KeyError):
        return None
    source = getattr(base, "base_model", base)
    missing, unexpected = clf.base_model.load_state_dict(source.state_dict(), strict=False)
    if unexpected or any("pooler" not in k for k in missing):
        logger.debug("base weights do not fit %s (missing %s, unexpected %s)",
                     type(clf).__name__, missing, unexpected)
        return None
    return clf.to(torch.float32)


def _fix_pad(tokenizer) -> None:
    if getattr(tokenizer, "pad_token", None) is None:
        for name in ("eos_token", "sep_token", "unk_token", "bos_token"):
            tok = getattr(tokenizer, name, None)
            if tok is not None:
                tokenizer.pad_token = tok
                return


def build_cross_encoder(model: Any, *, dropout: float = 0.1, head: str = "auto"):
    """Load a language model with a fresh classification head.

    Call under a seeded torch RNG: the head's initial weights come from it.

    Parameters
    ----------
    model : str, path or (model, tokenizer) pair
        A name resolved by :func:`maasrec.encoders.hub.resolve_model` (packaged weights,
        a local directory or ``.gguf`` file, or the hub), or an in-memory pair (deep-copied:
        the caller's model is never changed).
    dropout : float, default 0.1
        Dropout of the token head (sequence-classification models keep their own).
    head : {"auto", "mean", "first", "last"}, default "auto"
        ``"auto"``: the model's own sequence-classification head where ``transformers``
        has one for an encoder (BERT-style: ``[CLS]`` -> pooler -> classifier), else a
        linear head on the last real token (GPT-style). ``"mean"``, ``"first"``,
        ``"last"``: a fresh linear head on the mean of the real tokens' hidden states,
        the first token's or the last real token's (``"mean"`` suits
        sentence-transformers checkpoints, which were trained with mean pooling).

    Returns
    -------
    encoder : CrossEncoder
    tokenizer : transformers tokenizer
    """
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    if head not in HEADS:
        raise DataError(f"head must be one of {HEADS}, got {head!r}")
    if isinstance(model, (tuple, list)):
        base, tokenizer = copy.deepcopy(model[0]), copy.deepcopy(model[1])
        decoder = is_decoder_config(base.config)
        clf = None if (decoder or head != "auto") else _seq_cls_from_base(base)
        if clf is not None:
            enc = CrossEncoder(clf, "sequence_classification", is_decoder=False)
        else:
            base = getattr(base, "base_model", base)
            enc = CrossEncoder(base.to(torch.float32), _token_kind(head, decoder),
                               is_decoder=decoder, dropout=dropout)
    else:
        source = resolve_model(model)
        config = load_config(source)
        decoder = is_decoder_config(config)
        enc = None
        if not decoder and not source.gguf_file and head == "auto":
            try:
                with _quiet_transformers():
                    clf = AutoModelForSequenceClassification.from_pretrained(
                        source.path, num_labels=1, dtype=torch.float32,
                        **source.from_pretrained_kwargs())
                    tokenizer = AutoTokenizer.from_pretrained(source.path,
                                                              **source.from_pretrained_kwargs())
                enc = CrossEncoder(clf, "sequence_classification", is_decoder=False)
            except ValueError:  # no sequence-classification class for this architecture
                enc = None
            except OSError as exc:  # offline and not cached, a misspelt name...
                raise _not_available(source, exc) from exc
        if enc is None:
            with _quiet_transformers():
                base, tokenizer = load_model_and_tokenizer(source)
            enc = CrossEncoder(base, _token_kind(head, decoder), is_decoder=decoder,
                               dropout=dropout)
    _fix_pad(tokenizer)
    return enc, tokenizer


def _token_kind(head: str, decoder: bool) -> str:
    """The token-head kind for ``head`` ("auto": last token of a decoder, else first)."""
    if head == "auto":
        return "last_token" if decoder else "first_token"
    return _HEAD_KIND[head]


def _layer_list(backbone: nn.Module) -> tuple[str, nn.ModuleList]:
    config = backbone.config
    n = next((getattr(config, a) for a in ("num_hidden_layers", "n_layer", "num_layers")
              if isinstance(getattr(config, a, None), int)), None)
    for name, module in backbone.named_modules():
        if isinstance(module, nn.ModuleList) and (n is None or len(module) == n) and len(module):
            return name, module
    raise DataError(f"cannot find the transformer layers of {type(backbone).__name__} to freeze")


def freeze_lower_layers(encoder: CrossEncoder, n_layers: int) -> int:
    """Freeze the embeddings and the ``n_layers`` lowest transformer layers.

    Parameters
    ----------
    encoder : CrossEncoder
    n_layers : int
        0 freezes the embeddings only; the number of layers leaves only the head (and
        pooler/final norm) trainable.

    Returns
    -------
    int
        Number of parameters frozen.

    Raises
    ------
    DataError
        ``n_layers`` larger than the model's number of layers.
    """
    backbone = encoder.backbone
    prefix, layers = _layer_list(backbone)
    if n_layers > len(layers):
        raise DataError(f"freeze_layers={n_layers} but the model has only {len(layers)} layers")
    frozen = 0
    in_layers = False
    for name, p in backbone.named_parameters():
        if name.startswith(prefix + "."):
            in_layers = True
            idx = int(name[len(prefix) + 1:].split(".", 1)[0])
            if idx < n_layers:
                p.requires_grad_(False)
                frozen += p.numel()
        elif not in_layers:  # registered before the layers: the embeddings
            p.requires_grad_(False)
            frozen += p.numel()
    return frozen


def lora_settings(spec: Any) -> dict[str, Any] | None:
    """Validate ``peft`` and return the LoRA settings (None without LoRA).

    Parameters
    ----------
    spec : None, "lora" or dict
        A dict may set ``r`` (8), ``alpha`` (16), ``dropout`` (0.05) and
        ``target_modules`` (default: peft's choice for the architecture).

    Returns
    -------
    dict or None

    Raises
    ------
    DataError
    """
    if spec is None:
        return None
    defaults = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": None}
    if spec == "lora":
        return defaults
    if isinstance(spec, dict) and spec.get("method", "lora") == "lora":
        unknown = set(spec) - {*defaults, "method"}
        if unknown:
            raise DataError(f"peft has unknown LoRA setting(s) {sorted(unknown)}; known: "
                            f"{sorted(defaults)}")
        out = {**defaults, **{k: v for k, v in spec.items() if k != "method"}}
        if not (isinstance(out["r"], int) and out["r"] > 0):
            raise DataError(f"peft r must be a positive integer, got {out['r']!r}")
        return out
    raise DataError(f"peft must be None, 'lora' or a dict of LoRA settings, got {spec!r}")


def apply_lora(encoder: CrossEncoder, settings: dict[str, Any]) -> None:
    """Wrap the language model with LoRA adapters (the base weights freeze).

    Parameters
    ----------
    encoder : CrossEncoder
    settings : dict
        From :func:`lora_settings`.

    Raises
    ------
    DataError
        peft is not installed, or cannot place adapters in this architecture.
    """
    try:
        from peft import LoraConfig, TaskType, get_peft_model
    except ImportError as exc:
        raise DataError("peft='lora' needs the peft package: pip install 'maasrec[lora]' "
                        "(or pip install peft)") from exc
    seq_cls = encoder.kind == "sequence_classification"
    target = settings["target_modules"]
    cfg = LoraConfig(r=int(settings["r"]), lora_alpha=float(settings["alpha"]),
                     lora_dropout=float(settings["dropout"]),
                     target_modules=list(target) if target else None,
                     task_type=TaskType.SEQ_CLS if seq_cls else None)
    try:
        encoder.model = get_peft_model(encoder.model, cfg)
    except ValueError as exc:
        raise DataError(f"LoRA cannot be applied to {type(encoder.model).__name__}: {exc}; pass "
                        f"peft={{'target_modules': [...]}} naming its attention layers") from exc
    if not seq_cls:
        for p in encoder.head.parameters():
            p.requires_grad_(True)


def merge_lora(encoder: CrossEncoder) -> None:
    """Fold the LoRA adapters into the weights (a plain model again, as fast as before).

    Parameters
    ----------
    encoder : CrossEncoder
    """
    if hasattr(encoder.model, "merge_and_unload"):
        encoder.model = encoder.model.merge_and_unload()


def own_aligned_storage(module: nn.Module) -> nn.Module:
    """Copy every parameter and buffer into fresh, contiguous memory owned by torch.

    CPU matrix-product kernels take different code paths for differently aligned
    operands, and their float sums then differ in the last bit. Weights a
    ``from_pretrained`` call reads from a safetensors file sit wherever the file's header
    leaves them (e.g. 24 or 40 bytes past a 64-byte boundary, not the same for the
    packaged and a saved file), while torch's allocator aligns to 64 bytes. Without
    this copy a model and its save/load round trip scored ~3e-8 apart, enough to swap
    near-tied candidates. Tied weights stay tied (the ``Parameter`` objects are kept).

    Parameters
    ----------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        ``module``, changed in place.
    """
    with torch.no_grad():
        for p in module.parameters():
            p.data = p.data.clone(memory_format=torch.contiguous_format)
        for sub in module.modules():
            for name, buf in list(sub._buffers.items()):
                if buf is not None:
                    sub._buffers[name] = buf.clone(memory_format=torch.contiguous_format)
    return module


def _refuse_pickles(folder: Path) -> None:
    bad = sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                 if p.is_file() and p.name.lower().endswith(PICKLE_SUFFIXES))
    if bad:
        raise ModelFormatError(f"{str(folder)!r} holds pickle-based file(s) {bad}; maasrec "
                               f"reads only JSON, text and safetensors files")


def save_cross_encoder(encoder: CrossEncoder, tokenizer, folder: str | os.PathLike) -> None:
    """Write the fine-tuned model and tokenizer as a ``transformers`` folder (no pickle).

    Parameters
    ----------
    encoder : CrossEncoder
    tokenizer : transformers tokenizer
    folder : path
        Created; must not exist.

    Raises
    ------
    ModelFormatError
        If a pickle-based file was written (the model or tokenizer class does not
        support safe serialisation).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True)
    model = encoder.model
    if hasattr(model, "merge_and_unload"):
        raise ModelFormatError("merge the LoRA adapters (merge_lora) before saving")
    with _quiet_transformers():
        model.save_pretrained(str(folder))
        tokenizer.save_pretrained(str(folder))
    meta = {"format": "maasrec-cross-encoder", "version": 1, "kind": encoder.kind,
            "is_decoder": encoder.is_decoder}
    if getattr(encoder, "pruned", None) is not None:  # per-layer sizes (compress.prune)
        meta["pruned"] = encoder.pruned
    if getattr(encoder, "external_weights", None) is not None:  # held by a compressed model
        meta["external_weights"] = encoder.external_weights
    if encoder.kind != "sequence_classification":
        save_file({k: v.detach().cpu().contiguous() for k, v in encoder.head.state_dict().items()},
                  str(folder / _HEAD))
        meta["dropout"] = float(encoder.dropout.p)
    with open(folder / _META, "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=1)
    _refuse_pickles(folder)


def _from_pretrained(klass, folder: Path, meta: dict):
    """``klass.from_pretrained``, or the per-layer shapes of a pruned model
    (:func:`maasrec.compress.prune` records them in ``meta["pruned"]``)."""
    if meta.get("external_weights") is not None:  # int8 / ONNX model around it: no weights
        from ..compress._adapters import load_shell

        return load_shell(folder, meta)
    if meta.get("pruned") is not None:
        from ..compress._prune_lm import load_pruned

        return load_pruned(folder, meta["kind"], meta["pruned"])
    return klass.from_pretrained(str(folder), local_files_only=True, dtype=torch.float32)


def load_cross_encoder(folder: str | os.PathLike, device: torch.device):
    """Read what :func:`save_cross_encoder` wrote (offline; JSON, text and safetensors only).

    Parameters
    ----------
    folder : path
    device : torch.device

    Returns
    -------
    encoder : CrossEncoder
        In eval mode, on ``device``.
    tokenizer : transformers tokenizer

    Raises
    ------
    ModelFormatError
        Missing or corrupt files, or a pickle-based file in the folder.
    """
    from safetensors.torch import load_file
    from transformers import AutoModel, AutoModelForSequenceClassification, AutoTokenizer

    folder = Path(folder)
    if not (folder / _META).is_file():
        raise ModelFormatError(f"{str(folder)!r} has no {_META}; not a saved LMRanker model")
    _refuse_pickles(folder)
    try:
        with open(folder / _META, encoding="utf-8") as f:
            meta = json.load(f)
        kind = meta["kind"]
        with _quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
            if kind == "sequence_classification":
                model = _from_pretrained(AutoModelForSequenceClassification, folder, meta)
                enc = CrossEncoder(model, kind, is_decoder=bool(meta.get("is_decoder")))
            else:
                model = _from_pretrained(AutoModel, folder, meta)
                enc = CrossEncoder(model, kind, is_decoder=bool(meta.get("is_decoder")),
                                   dropout=float(meta.get("dropout", 0.1)))
                enc.head.load_state_dict(load_file(str(folder / _HEAD)))
            if meta.get("pruned") is not None:
                enc.pruned = meta["pruned"]
    except Exception as exc:  # tokenizers and transformers raise many types
        raise ModelFormatError(f"cannot load the language model in {str(folder)!r}: "
                               f"{type(exc).__name__}: {exc}") from exc
    _fix_pad(tokenizer)
    if meta.get("external_weights") is not None:  # a compressed model's shell: no weights
        return enc.eval(), tokenizer
    return own_aligned_storage(enc.to(device)).eval(), tokenizer
