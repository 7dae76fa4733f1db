"""Classical recommenders: complete models on the :class:`~maasrec.base.Recommender` base."""

from .ease import EASE
from .popularity import Popularity

__all__ = ["EASE", "Popularity"]
