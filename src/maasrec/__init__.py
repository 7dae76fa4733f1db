"""maasrec: recommendation with pretrained language models, as a service.

One scikit-learn-style API (``fit``, ``recommend``, ``save``/``load``) over classical
and language-model recommenders, honest full-ranking evaluation and serving.

>>> from maasrec import datasets, metrics
>>> from maasrec.data.split import random_split
>>> from maasrec.models import ItemKNN
>>> ds = datasets.load_movielens()                     # embedded, offline
>>> train, valid, test = random_split(ds.interactions, (0.8, 0.1, 0.1), random_state=0)
>>> model = ItemKNN().fit(train)
>>> ids, scores = model.recommend([1, 2], k=10)
>>> res = metrics.evaluate(model, train, test, k=(10, 20), exclude=valid)
"""

from ._version import __version__
from .base import Recommender, clone
from .data import IdVocab, Interactions, ItemFeatures, UserFeatures
from .device import resolve_device
from .exceptions import (
    ColdStartWarning,
    DataError,
    DeviceError,
    MaasrecError,
    MaasrecWarning,
    ModelFormatError,
    NotFittedError,
    UnknownIdError,
)


def load(path, *, encryption_key=None):
    """Load any saved maasrec model (same as ``Recommender.load``).

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    Recommender
    """
    return Recommender.load(path, encryption_key=encryption_key)


__all__ = [
    "ColdStartWarning",
    "DataError",
    "DeviceError",
    "IdVocab",
    "Interactions",
    "ItemFeatures",
    "MaasrecError",
    "MaasrecWarning",
    "ModelFormatError",
    "NotFittedError",
    "Recommender",
    "UnknownIdError",
    "UserFeatures",
    "__version__",
    "clone",
    "load",
    "resolve_device",
]
