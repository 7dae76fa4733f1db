"""Explanations of LMRanker scores (see :mod:`maasrec.explain`).

What is explained is the language model's logit of the (user, item) pair -- the
second-stage score (``alpha=0``); the first stage only decides which items are
candidates. Weights are leave-one-out over the history positions in the prompt: the
logit minus the logit of the pair whose prompt leaves that history item out, all
variants scored in one call. Positions older than ``history_len`` are not in the prompt
and weigh 0 (a known user's stored history holds only the prompt's items).

``tokens=True`` adds token attributions (Captum's ``LayerIntegratedGradients`` on the
input embeddings; the baseline replaces every non-special token by the padding token),
under ``details["tokens"]`` as ``[token, attribution]`` pairs in prompt order; their sum
plus the baseline logit is the logit up to ``details["convergence_delta"]``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..explain import ExplainTerms

#: Integration steps of the token attributions.
TOKEN_STEPS = 32

NOTE = ("leave-one-out over the history positions in the prompt: the LM logit minus the "
        "logit with that history item left out of the prompt (not additive); positions "
        "older than history_len are not in the prompt and weigh 0")


def _window(model, seq: np.ndarray) -> np.ndarray:
    h = int(model.history_len)
    return seq[max(0, len(seq) - h):] if h else seq[:0]


def lm_terms(model, seq: np.ndarray, item_idx: int, user_idx, *, tokens: bool = False
             ) -> ExplainTerms:
    """Leave-one-out weights of the prompt's history positions (and token attributions)."""
    from ..exceptions import DataError

    if not isinstance(tokens, (bool, np.bool_)):
        raise DataError(f"tokens= must be a bool, got {tokens!r}")
    model._check_lm()
    seq = np.asarray(seq, dtype=np.int64)
    n = len(seq)
    h = int(model.history_len)
    inside = np.arange(max(0, n - h), n) if h else np.empty(0, dtype=np.int64)
    prof = model.user_profile_ if user_idx is not None else None
    profile = "" if prof is None else str(prof[user_idx])
    variants = [seq] + [np.delete(seq, p) for p in inside]
    b = model._builder
    pairs = [b.pair(b.user_part(_window(model, v), profile), int(item_idx)) for v in variants]
    s = model._logits(pairs).astype(np.float64)
    w = np.zeros(n, dtype=np.float64)
    w[inside] = s[0] - s[1:]
    details = token_attributions(model, pairs[0]) if tokens else {}
    return ExplainTerms(float(s[0]), seq, w, "leave-one-out", None, NOTE,
                        positions=np.arange(n, dtype=np.int64), details=details)


def token_attributions(model, pair: tuple[list[int], list[int]], n_steps: int = TOKEN_STEPS
                       ) -> dict:
    """Integrated-gradients attributions of the pair's tokens to its logit (Captum)."""
    try:
        from captum.attr import LayerIntegratedGradients
    except ImportError as exc:
        raise ImportError(
            "explain(..., tokens=True) needs Captum: pip install 'maasrec[captum]' "
            "(or pip install captum)") from exc
    enc = model._lm
    tok = model._tok
    batch = model._pairs.collate([pair])
    ids = batch["input_ids"]
    mask = batch["attention_mask"]
    types = batch.get("token_type_ids")
    special = torch.tensor(sorted(set(tok.all_special_ids)), device=ids.device)
    base = torch.where(torch.isin(ids, special), ids, torch.full_like(ids, model._pairs.pad_id))

    def forward(input_ids, attention_mask, token_type_ids=None):
        return enc(input_ids, attention_mask, token_type_ids)

    was = enc.training
    enc.eval()
    try:
        lig = LayerIntegratedGradients(forward, enc.backbone.get_input_embeddings())
        attr, delta = lig.attribute(ids, baselines=base, additional_forward_args=(mask, types),
                                    n_steps=int(n_steps), return_convergence_delta=True)
    finally:
        enc.train(was)
    per_token = attr.sum(dim=-1)[0].detach().double().cpu().numpy()
    keep = mask[0].bool().cpu().numpy()
    names = tok.convert_ids_to_tokens(ids[0].cpu().tolist())
    return {"tokens": [[str(t), float(a)] for t, a, k in zip(names, per_token, keep) if k],
            "token_method": f"LayerIntegratedGradients on the input embeddings, {n_steps} "
                            f"steps, baseline: non-special tokens -> padding",
            "convergence_delta": float(delta.detach().reshape(-1)[0])}


# -- the deletion test's view of a two-stage model ----------------------------------------
def candidates(model, seq: np.ndarray) -> np.ndarray:
    """The first stage's top ``n_candidates`` items for the history ``seq`` (not in it)."""
    from ..explain import _scores_of

    first = model._first_stage()
    s = _scores_of(first, [np.asarray(seq, dtype=np.int64)], np.arange(model.n_items_))[0]
    s[np.asarray(seq, dtype=np.int64)] = -np.inf
    k = min(int(model.n_candidates), int(np.isfinite(s).sum()))
    return np.sort(np.argsort(-s, kind="stable")[:k])


def pair_scores(model, seqs: list[np.ndarray], items: np.ndarray) -> np.ndarray:
    """LM logits ``[len(seqs), len(items)]`` of histories (cold users) x items."""
    model._check_lm()
    parts = model._user_parts_cold([np.asarray(s, dtype=np.int64) for s in seqs])
    b = model._builder
    pairs = [b.pair(p, int(i)) for p in parts for i in items]
    return model._logits(pairs).astype(np.float64).reshape(len(seqs), len(items))
