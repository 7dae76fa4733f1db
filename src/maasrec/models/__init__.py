"""Classical recommenders: complete models on the :class:`~maasrec.base.Recommender` base."""

from .als import ALS
from .bpr import BPRMF
from .ease import EASE
from .itemknn import ItemKNN
from .popularity import Popularity
from .puresvd import PureSVD
from .rating_mf import BiasedMF, SVDpp
from .text_ease import TextEASE

__all__ = ["ALS", "BPRMF", "EASE", "BiasedMF", "ItemKNN", "Popularity", "PureSVD", "SVDpp",
           "TextEASE"]
