"""Parameter checks of :class:`~maasrec.lm_ranker.LMRanker` (what ``fit`` and ``load`` run)."""

from __future__ import annotations

import os

import numpy as np
import torch

from .._validation import check_choice, check_int, check_number
from ..base import Recommender
from ..exceptions import DataError
from .network import HEADS, lora_settings
from .text import parse_template

__all__ = ["IN_MEMORY", "LM_RANKER_LOSSES", "validate_params"]

#: Accepted values of ``loss``.
LM_RANKER_LOSSES = ("bce", "listwise")
#: Prefix of the ``model`` parameter recorded for a model saved from an in-memory pair.
IN_MEMORY = "<in-memory "


def validate_params(model) -> None:
    """Check the parameters of an :class:`~maasrec.lm_ranker.LMRanker` ``model``.

    Raises
    ------
    DataError
        A parameter out of range or of the wrong type, naming it and its value.
    """
    if model.first_stage is not None and not isinstance(model.first_stage, Recommender):
        raise DataError(
            f"LMRanker's first stage proposes the candidates it re-ranks: pass None (a "
            f"fresh EASE()), EASE(...) or any maasrec Recommender, got "
            f"{model.first_stage!r}")
    if isinstance(model.model, str) and model.model.startswith(IN_MEMORY):
        raise DataError(
            f"model={model.model!r}: this LMRanker was saved from an in-memory (model, "
            f"tokenizer) pair, which is not stored as a parameter; set_params(model=...) "
            f"before fitting again")
    if isinstance(model.model, (tuple, list)):
        if len(model.model) != 2 or not isinstance(model.model[0], torch.nn.Module) or not (
                callable(model.model[1])):
            raise DataError(f"model must be a name, a path or a (torch model, tokenizer) "
                            f"pair; got a {type(model.model).__name__} of {len(model.model)} "
                            f"element(s)")
    elif not isinstance(model.model, (str, os.PathLike)):
        raise DataError(f"model must be a name, a path or a (model, tokenizer) pair, got "
                        f"{type(model.model).__name__} {model.model!r}")
    model._validate_reranker_params()
    check_int("history_len", model.history_len, low=0)
    check_int("max_length", model.max_length, low=4)
    check_int("max_item_tokens", model.max_item_tokens, low=1)
    parse_template(model.template)
    check_int("epochs", model.epochs, low=0)
    if model.learning_rate is not None:
        check_number("learning_rate", model.learning_rate, low=0.0, low_inclusive=False)
    check_int("batch_size", model.batch_size, low=1)
    m = check_int("negatives_per_positive", model.negatives_per_positive, low=1)
    check_int("random_negatives", model.random_negatives, low=0, high=m)
    check_int("positives_per_user", model.positives_per_user, low=1)
    if model.max_positives is not None:
        check_int("max_positives", model.max_positives, low=1)
    check_choice("loss", model.loss, LM_RANKER_LOSSES)
    check_choice("head", model.head, HEADS)
    if model.freeze_layers is not None:
        check_int("freeze_layers", model.freeze_layers, low=0)
    check_int("grad_accum_steps", model.grad_accum_steps, low=1)
    if lora_settings(model.peft) is not None and model.freeze_layers is not None:
        raise DataError(f"freeze_layers={model.freeze_layers} cannot be combined with "
                        f"peft={model.peft!r}: LoRA already freezes the whole base model")
    check_number("weight_decay", model.weight_decay, low=0.0)
    check_number("warmup", model.warmup, low=0.0, high=1.0, high_inclusive=False)
    if model.clip_grad_norm is not None:
        check_number("clip_grad_norm", model.clip_grad_norm, low=0.0, low_inclusive=False)
    check_choice("missing_text", model.missing_text, ("raise", "id"))
    if model.profile_fields is not None and not (
            isinstance(model.profile_fields, (list, tuple))
            and all(isinstance(f, str) for f in model.profile_fields)):
        raise DataError(f"profile_fields must be None or a sequence of feature names, got "
                        f"{model.profile_fields!r}")
    if not isinstance(model.verbose, (bool, np.bool_)):
        raise DataError(f"verbose must be True or False, got {model.verbose!r}")
