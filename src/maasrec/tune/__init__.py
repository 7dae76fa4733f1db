"""Hyper-parameter search: :func:`tune` chooses a model and its parameters (extra ``tune``).

>>> from maasrec.tune import tune                          # doctest: +SKIP
>>> res = tune(train, valid, models="auto", budget="10min")  # doctest: +SKIP
>>> res.best_model.recommend(users, k=10)                  # doctest: +SKIP
>>> res.leaderboard                                        # doctest: +SKIP

Optuna is imported only when :func:`tune` runs; without it a
:class:`~maasrec.exceptions.MaasrecError` names the extra (``pip install "maasrec[tune]"``).
See ``docs/tuning.rst``.
"""

from ._budget import parse_budget
from ._models import AUTO_MODELS, KNOWN_MODELS
from .callbacks import BudgetExhausted, TrialCallback, trainer_callbacks
from .cli import add_tune_parser, cli_main
from .result import TuneBudgetError, TuneResult, leaderboard
from .search import tune
from .spaces import DEFAULT_SPACES, parse_space, search_space_of

__all__ = ["AUTO_MODELS", "DEFAULT_SPACES", "KNOWN_MODELS", "BudgetExhausted", "TrialCallback",
           "TuneBudgetError", "TuneResult", "add_tune_parser", "cli_main", "leaderboard",
           "parse_budget", "parse_space", "search_space_of", "trainer_callbacks", "tune"]
