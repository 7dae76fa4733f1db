"""Data layer: id vocabularies, interactions, side features, splits and data sets."""

from .features import Features, ItemFeatures, UserFeatures
from .interactions import Interactions, as_interactions
from .vocab import IdVocab

__all__ = ["Features", "IdVocab", "Interactions", "ItemFeatures", "UserFeatures", "as_interactions"]
