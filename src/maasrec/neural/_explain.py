"""Explanations of the neural models' scores (see :mod:`maasrec.explain`).

What each model returns, and why:

- :class:`~maasrec.neural.LightGCN` is linear in the history: a user's propagated vector
  is ``e_u / (K + 1) + sum_j S_j / ((K + 1) sqrt(d_u d_j))`` (``S_j``: the sum of item
  ``j``'s layers 0..K-1), so history item ``j`` contributes exactly its term's inner
  product with the explained item's vector; the user's own embedding is the baseline
  (known users), 0 for a ``history=`` (the fold-in is that sum with ``d_j + 1``).
- :class:`~maasrec.neural.HybridRecommender` (and :class:`~maasrec.neural.NeuMF`) pool
  the history through the user tower (``sqrt(n)`` normalisation, a tanh, a fusion with
  the user id) or attend over it: not additive. The weights are leave-one-out: the score
  minus the score with that item left out, all ``n`` variants in one batch (the pooled
  sum minus one item's vector: O(n d)). That is what the deletion test removes, so the
  weights answer it directly. The item side is split exactly: the explained item's vector
  is ``id + W text (+ features)`` (residual fusion), and each part's share of the score
  is the score minus the score without that part (``u . part`` for the dot scorer,
  where the parts and the bias add up to the score).
- :class:`~maasrec.neural.MultVAE` and :class:`~maasrec.neural.RecVAE`: leave-one-out;
  the encoder's first layer is linear in the normalised row (``x / sqrt(n)`` for a binary
  row, both models), so the ``n`` variants cost one column sum each; the rest of the
  encoder and the decoder run once on the ``n + 1`` first-layer outputs.
- :class:`~maasrec.neural.SequentialRecommender` and :class:`~maasrec.neural.BERT4Rec`:
  leave-one-out over history *positions* (one forward pass for all variants). Positions
  older than the model's window weigh exactly 0 (removing them leaves the window
  unchanged). Attention weights are not returned: in a multi-layer, multi-head
  transformer they say where the states looked, not what the score depends on.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..explain import ExplainTerms
from ._implicit import binary_csr

LOO_NOTE = ("leave-one-out: the score minus the score with that history item left out "
            "(not additive: the weights do not sum to the score)")


# -- LightGCN: exact --------------------------------------------------------------------
def lightgcn_terms(model, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
    """Exact contributions of a LightGCN history (see the module docstring)."""
    h = binary_csr(row).indices.astype(np.int64)
    target = model.item_factors_[item_idx].astype(np.float64)
    F = model.fold_in_factors_[h].astype(np.float64)
    n = max(len(h), 1)
    if user_idx is None:  # the fold-in: n^-1/2 sum_j F_j
        w = (F @ target) / np.sqrt(n)
        return ExplainTerms(float(w.sum()), h, w, "exact", 0.0,
                            "n^-1/2 F_j . v_item: the history item's share of the fold-in "
                            "vector (exact)")
    # a known user: S_j / ((K+1) sqrt(d_u d_j)) with F_j = S_j / ((K+1) sqrt(d_j + 1))
    deg = model.item_degree_[h].astype(np.float64)
    scale = np.sqrt((deg + 1.0) / np.maximum(deg, 1.0)) / np.sqrt(n)
    w = (F @ target) * scale
    score = float(model.user_factors_[user_idx].astype(np.float64) @ target)
    return ExplainTerms(score, h, w, "exact", score - float(w.sum()),
                        "S_j . v_item / ((K+1) sqrt(d_u d_j)): the history item's term of "
                        "the propagated user vector (exact); baseline: the user's own "
                        "embedding")


# -- MultVAE / RecVAE: leave-one-out ------------------------------------------------------
def vae_terms(model, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
    """Leave-one-out contributions of a MultVAE or RecVAE history, in one batch."""
    from .recvae import RecVAENetwork

    h = binary_csr(row).indices.astype(np.int64)
    net = model.network_
    loo = _recvae_loo if isinstance(net, RecVAENetwork) else _vae_loo
    dev = model._net_device()
    was = net.training
    net.eval()
    try:
        with torch.no_grad():
            s = loo(net, torch.from_numpy(h).to(dev), int(item_idx))
    finally:
        net.train(was)
    s = s.double().cpu().numpy()
    return ExplainTerms(float(s[0]), h, s[0] - s[1:], "leave-one-out", None, LOO_NOTE)


def _first_layer_loo(first: torch.nn.Linear, h: torch.Tensor) -> torch.Tensor:
    """``first(x / sqrt(|x|))`` for the binary row ``x`` of ``h`` and, below it, each row
    with one entry of ``h`` left out ``[n + 1, width]`` (an empty row gives the bias)."""
    n = len(h)
    cols = first.weight[:, h].T.float()                          # [n, width]
    total = cols.sum(0, keepdim=True)
    sums = torch.cat([total, total - cols], 0)                  # full, then without j
    counts = torch.cat([torch.tensor([float(n)]), torch.full((n,), float(n - 1))]).to(
        sums.device)
    return sums / counts.clamp(min=1.0).sqrt().unsqueeze(1) + first.bias


def _vae_loo(net, h: torch.Tensor, item: int) -> torch.Tensor:
    """Logit of ``item`` for the row ``h`` and each row with one entry of ``h`` left out."""
    layers = [*net.encoder, net.to_latent]
    a = _first_layer_loo(layers[0], h)
    if len(layers) == 1:
        z = a.chunk(2, dim=1)[0]
    else:
        x = torch.tanh(a)
        for lin in layers[1:-1]:
            x = torch.tanh(lin(x))
        z = net.to_latent(x).chunk(2, dim=1)[0]
    for lin in net.decoder:
        z = torch.tanh(lin(z))
    return z @ net.to_items.weight[item] + net.to_items.bias[item]


def _recvae_loo(net, h: torch.Tensor, item: int) -> torch.Tensor:
    """RecVAE's logit of ``item`` for the row ``h`` and each row with one entry left out."""
    enc = net.encoder
    mu = enc.after_first(_first_layer_loo(enc.layers[0], h))[0]
    return mu @ net.decoder.weight[item] + net.decoder.bias[item]


# -- sequence models: leave-one-out over positions ---------------------------------------
def sequence_terms(model, seq: np.ndarray, item_idx: int, window: int) -> ExplainTerms:
    """Leave-one-out over the positions of an ordered history, in one forward pass.

    ``window``: how many of the latest items the model reads; older positions weigh 0.
    """
    seq = np.asarray(seq, dtype=np.int64)
    n = len(seq)
    inside = np.arange(max(0, n - int(window)), n)
    variants = [seq] + [np.delete(seq, p) for p in inside]
    s = model._scores_from(variants)
    if hasattr(s, "cpu"):
        s = s.float().cpu().numpy()
    s = np.asarray(s, dtype=np.float64)[:, item_idx]
    w = np.zeros(n, dtype=np.float64)
    w[inside] = s[0] - s[1:]
    return ExplainTerms(float(s[0]), seq, w, "leave-one-out", None,
                        LOO_NOTE.replace("history item", "history position")
                        + f"; positions older than the latest {int(window)} weigh 0 (the "
                        "model does not read them)", positions=np.arange(n, dtype=np.int64))


# -- HybridRecommender / NeuMF ------------------------------------------------------------
def hybrid_terms(model, row: sp.csr_matrix, item_idx: int, user_idx) -> ExplainTerms:
    """Leave-one-out history contributions, text similarity and the modality split."""
    scoring = model._scoring
    users = model._users()
    attention = scoring.kind == "attention"
    if not attention and not users.pools_history():
        return _hybrid_without_history(model, row, item_idx, user_idx)
    if attention and user_idx is not None and getattr(model, "history_order_", None) \
            is not None:
        ip = model.history_indptr_
        h = np.asarray(model.history_order_[ip[user_idx]:ip[user_idx + 1]], dtype=np.int64)
    else:
        R = sp.csr_matrix(row)
        if user_idx is not None and model._implicit_feedback():
            R = binary_csr(R)
        R.sort_indices()
        h = R.indices.astype(np.int64)
    C = getattr(model, "history_repr_", None)
    V = model._V()
    C = V if C is None else torch.from_numpy(C)
    n = len(h)
    b = n + 1
    urows = torch.full((b,), -1 if user_idx is None else int(user_idx), dtype=torch.long)
    ht = torch.from_numpy(h)
    with torch.no_grad():
        if attention:
            keep = ~torch.eye(n, dtype=torch.bool)
            rows = torch.cat([torch.zeros(n, dtype=torch.long),
                              1 + torch.arange(n).repeat_interleave(n - 1)])
            cols = torch.cat([ht, ht.repeat(n, 1)[keep]])
            u = scoring.user_repr(users, V, rows, cols, b, urows)
        else:  # the pooled sum without one item: O(n d)
            Ch = C[ht]
            total = Ch.sum(0, keepdim=True)
            summed = torch.cat([total, total - Ch], 0)
            counts = torch.cat([torch.tensor([float(n)]), torch.full((n,), float(n - 1))])
            pooled = users.normalise(summed, counts)
            u = users.static(pooled, counts > 0, urows, None)
        t = torch.tensor([int(item_idx)])
        s = model.scorer_.score_all(u, V[t], user_idx=urows, item_idx=t)[:, 0].double()
        modalities = _modality_split(model, u if not attention else _first(u), int(item_idx),
                                     urows[:1], float(s[0]))
    s = s.numpy()
    extras = {}
    sim = _text_similarity(model, h, int(item_idx))
    if sim is not None:
        extras["text_similarity"] = sim
    note = LOO_NOTE + ("; modalities: the explained item's vector split into its parts "
                       "(the score minus the score without the part")
    note += "; with the bias they add up to the score)" if scoring.kind == "dot" else ")"
    return ExplainTerms(float(s[0]), h, s[0] - s[1:], "leave-one-out", None, note,
                        modalities=modalities, extras=extras)


def _first(u):
    """The first user of a user representation (a tensor or a tuple of tensors)."""
    if isinstance(u, tuple):
        return tuple(None if x is None else x[:1] for x in u)
    return u[:1]


def _item_parts(model, rows: torch.Tensor) -> dict[str, torch.Tensor] | None:
    """The id / text / features parts of the item tower's vectors of ``rows`` (residual
    fusion or a single modality), or None when the fusion mixes them."""
    tower = model.item_tower_
    dims = tower.input_dims
    V = model._V()[rows]
    if tower.residual is None and len(dims) > 1:
        return None
    if len(dims) == 1:
        return {next(iter(dims)): V}
    inputs, masks = tower.lookup(rows)
    parts: dict[str, torch.Tensor] = {}
    rest = V.clone()
    if "id" in inputs:
        has = torch.from_numpy(np.asarray(model.item_has_id_))[rows]
        parts["id"] = torch.where(has.unsqueeze(1), inputs["id"], 0.0)
        rest = rest - parts["id"]
    if "features" in inputs:
        parts["features"] = torch.where(masks["features"].unsqueeze(1), inputs["features"], 0.0)
        rest = rest - parts["features"]
    if "text" in dims:
        parts["text"] = rest  # W text + b where the item has text, else 0
    return parts


def _modality_split(model, u, item_idx: int, urow: torch.Tensor, score: float
                    ) -> dict[str, float]:
    parts = _item_parts(model, torch.tensor([item_idx]))
    if parts is None:
        return {}
    V = model._V()[[item_idx]]
    t = torch.tensor([item_idx])
    out = {}
    for name, p in parts.items():
        s = model.scorer_.score_all(u, V - p, user_idx=urow, item_idx=t)[0, 0]
        out[name] = score - float(s)
    if model._scoring.kind == "dot":
        out["bias"] = float(model.scorer_.score_all(u, torch.zeros_like(V), user_idx=urow,
                                                    item_idx=t)[0, 0])
    return out


def _text_similarity(model, h: np.ndarray, item_idx: int) -> np.ndarray | None:
    """Cosine similarity of the text parts (``W text``) of the explained item and each
    history item (NaN where an item has no text); None without a text modality."""
    if "text" not in model.item_tower_.input_dims:
        return None
    rows = torch.from_numpy(np.concatenate([[item_idx], h]).astype(np.int64))
    with torch.no_grad():
        parts = _item_parts(model, rows)
    if parts is None or "text" not in parts:
        return None
    T = parts["text"].double().numpy()
    norms = np.linalg.norm(T, axis=1)
    bias = model.item_tower_.residual["text"].bias.detach().double().numpy() if (
        model.item_tower_.residual is not None) else None
    # an item without text has the zero part; W.0 + b only appears with text
    has = norms > 1e-12
    if bias is not None:
        has &= ~np.all(np.isclose(T, 0.0), axis=1)
    if not has[0]:
        return np.full(len(h), np.nan)
    sim = (T[1:] @ T[0]) / np.where(has[1:], norms[1:] * norms[0], 1.0)
    return np.where(has[1:], sim, np.nan)


def _hybrid_without_history(model, row, item_idx: int, user_idx) -> ExplainTerms:
    """No history modality: the score ignores the history; the history items closest to
    the explained one in item-vector space stand in (an approximation, as BPRMF)."""
    R = sp.csr_matrix(row)
    h = R.indices.astype(np.int64)
    V = model.item_repr_.astype(np.float64)
    norms = np.linalg.norm(V[h], axis=1) * np.linalg.norm(V[item_idx])
    w = (V[h] @ V[item_idx]) / np.where(norms > 0, norms, 1.0)
    score = float(model._score_users(np.array([user_idx]))[0, item_idx])
    return ExplainTerms(score, h, w, "approximation", None,
                        "cosine similarity of the history item to the explained item in "
                        "item-vector space (an approximation: this model has no 'history' "
                        "user modality, so its score does not depend on the history)")
