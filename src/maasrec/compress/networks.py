"""int8 Linear layers for the networks that run at scoring time: LMRanker, SequentialRecommender.

:func:`quantize_network` turns a fitted ``LMRanker`` (its cross-encoder) or
``SequentialRecommender`` (its transformer blocks) into an :class:`Int8Recommender`: every
``torch.nn.Linear`` layer of that network computes in int8 (per-channel weights,
per-token activations: :class:`~maasrec.compress.Int8Linear`) on the CPU; the rest of the
model (tokenization, candidates, the item table, ranking) is unchanged. Saved with its
codes and scales (``int8.safetensors``) and their description (``maasrec.json``), loaded
exactly, served by ``maasrec serve`` like any model.

``HybridRecommender``'s towers run at fit time only (it scores from stored user and item
vectors): :func:`~maasrec.compress.quantize` with ``tables="int8"`` is its compression.
"""

from __future__ import annotations

import os

import torch

from ..base import Recommender
from ..exceptions import DataError, ModelFormatError
from ._proxy import NetworkProxy, fingerprint
from .linear import Int8Linear, quantize_linear_layers

__all__ = ["Int8Recommender", "quantize_network"]

_FILE = "int8.safetensors"


def quantize_network(model: Recommender) -> Int8Recommender:
    """int8 Linear layers for a fitted LMRanker or SequentialRecommender (CPU inference).

    Parameters
    ----------
    model : LMRanker or SequentialRecommender
        Fitted; not modified (the result holds a shallow copy of it whose network pass
        runs a quantized copy of the network).

    Returns
    -------
    Int8Recommender
        Fitted: ``recommend``, ``score``, ``evaluate``, ``save``/``load`` and ``maasrec
        serve`` work as for the original model.

    Raises
    ------
    NotFittedError
        ``model`` is not fitted.
    DataError
        A model whose network does not run at scoring time (the message names the
        method that applies), or an already compressed model.

    Examples
    --------
    >>> q = quantize_network(fitted_ranker)        # doctest: +SKIP
    >>> q.save("ranker-int8")                      # doctest: +SKIP
    """
    out = Int8Recommender(model=None)
    adapter = out._adopt_checked(model)
    import copy

    inner = copy.copy(model)
    out._compress(inner, adapter)
    out.fitted_at_ = getattr(model, "fitted_at_", None)
    return out


class Int8Recommender(NetworkProxy):
    """A fitted LMRanker or SequentialRecommender whose network runs int8 Linear layers.

    Usually made by :func:`quantize_network`; ``fit`` fits a clone of ``model`` and
    quantizes it.

    Parameters
    ----------
    model : LMRanker or SequentialRecommender, optional
        The (unfitted) model to fit and quantize (``None`` for a loaded one).

    Attributes
    ----------
    model_ : Recommender
        The inner fitted model, scoring through the int8 network.
    int8_layers_ : list of str
        Qualified names of the quantized Linear layers.
    float_fingerprint_ : str
        SHA-256 of the float network the codes were made from (checked on load).
    network_bytes_ : dict
        ``{"float32": bytes of the float network, "int8": bytes of the quantized
        network (codes, scales, biases, and the layers left float)}``.

    Notes
    -----
    The directory holds the inner model with its float weights (``model/``) and the codes
    and scales (``int8.safetensors``); the float weights are kept so that the codes are
    checked against what they were made from. Runs on the CPU.
    """

    _what = "int8 network quantization"

    def _compress(self, inner: Recommender, adapter=None) -> None:
        from ._proxy import adapter_for

        adapter = adapter or adapter_for(inner, self._what)
        float_net = adapter.module(inner)
        qnet, _ = quantize_linear_layers(float_net, skip=adapter.skip())
        self._attach(inner, adapter, float_net, qnet)

    def _attach(self, inner, adapter, float_net, qnet) -> None:
        layers = sorted(n for n, m in qnet.named_modules() if isinstance(m, Int8Linear))
        if not layers:
            raise DataError(f"the {adapter.name}'s network has no Linear layer to quantize")
        adapter.attach(inner, adapter.int8_runner(inner, qnet))
        self._qnet = qnet
        self.int8_layers_ = layers
        self.float_fingerprint_ = fingerprint(float_net)
        self._inner = inner
        self._pop_cache = None

    @property
    def network_bytes_(self) -> dict[str, int]:
        self._check_fitted()
        float_net = self._adapter().module(self.model_)
        size = lambda m: sum(t.numel() * t.element_size()  # noqa: E731
                             for t in m.state_dict().values())
        return {"float32": size(float_net), "int8": size(self._qnet)}

    def _adapter(self):
        from ._proxy import adapter_for

        return adapter_for(self.model_, self._what)

    def _int8_state(self) -> dict[str, torch.Tensor]:
        state = {}
        modules = dict(self._qnet.named_modules())
        for name in self.int8_layers_:
            for key, t in modules[name].state_dict().items():
                state[f"{name}.{key}"] = t.detach().cpu().contiguous()
        return state

    def _save_runtime(self, tmp) -> None:
        from safetensors.torch import save_file

        save_file(self._int8_state(), os.path.join(tmp, _FILE),
                  metadata={"format": "maasrec-int8-network", "version": "1"})

    def _load_extra_files(self, path) -> None:
        from safetensors.torch import load_file

        inner, adapter, where = self._load_inner(path)
        float_net = adapter.module(inner)
        want = getattr(self, "float_fingerprint_", None)
        if fingerprint(float_net) != want:
            raise ModelFormatError(f"{where}: the int8 codes were made from another network "
                                   f"(fingerprint {str(want)[:12]}...) than the inner "
                                   f"{adapter.name}'s: quantize the model again")
        qnet, _ = quantize_linear_layers(float_net, skip=adapter.skip())
        layers = sorted(n for n, m in qnet.named_modules() if isinstance(m, Int8Linear))
        if layers != getattr(self, "int8_layers_", None):
            raise ModelFormatError(f"{where}: int8_layers_ does not name the Linear layers "
                                   f"of the inner {adapter.name}")
        try:
            state = load_file(os.path.join(path, _FILE))
        except Exception as exc:  # safetensors raises its own error types
            raise ModelFormatError(f"{where}: cannot read {_FILE}: {exc}") from exc
        modules = dict(qnet.named_modules())
        expected = {f"{n}.{k}": t for n in layers for k, t in modules[n].state_dict().items()}
        if set(state) != set(expected):
            raise ModelFormatError(f"{where}: {_FILE} holds {sorted(set(state) ^ set(expected))[:4]}"
                                   f"... unlike the quantized layers")
        for key, t in state.items():
            ref = expected[key]
            if t.dtype != ref.dtype or t.shape != ref.shape:
                raise ModelFormatError(f"{where}: {_FILE}[{key!r}] is {t.dtype} "
                                       f"{tuple(t.shape)}, expected {ref.dtype} "
                                       f"{tuple(ref.shape)}")
            if t.dtype.is_floating_point and not bool(torch.isfinite(t).all()):
                raise ModelFormatError(f"{where}: {_FILE}[{key!r}] holds non-finite values")
        for name in layers:
            sub = {k[len(name) + 1:]: v for k, v in state.items() if k.startswith(name + ".")}
            modules[name].load_state_dict(sub, strict=True)
        self._attach(inner, adapter, float_net, qnet)
        super()._load_extra_files(path)
