"""Public data set loaders: ``from maasrec import datasets; datasets.load_movielens()``.

A thin re-export of :mod:`maasrec.data.datasets`; see there for the search order
(``data_home`` -> ``$MAASREC_DATA`` -> embedded latest-small -> cache -> verified download).

>>> from maasrec import datasets
>>> ds = datasets.load_movielens()          # MovieLens latest-small, embedded, offline
>>> ds.interactions.nnz
100836
"""

from .data.datasets import Dataset, item_text, load_amazon_sequences, load_movielens, make_synthetic

__all__ = ["Dataset", "item_text", "load_amazon_sequences", "load_movielens", "make_synthetic"]
