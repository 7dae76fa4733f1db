"""
Text vectors for items nobody has rated yet
===========================================

:class:`~maasrec.neural.HybridRecommender` reads each movie's text (title, year,
genres) through a frozen sentence encoder (all-MiniLM-L6-v2, shipped offline by the
``text`` extra) and learns an id embedding on top. Items held out entirely from
training (a cold-item split) are then recommended from their text alone. The plot maps
the learned item vectors to two dimensions (PCA), coloured by the first genre.
"""

import warnings

import matplotlib.pyplot as plt
import numpy as np

from maasrec import ColdStartWarning, Interactions, datasets, metrics
from maasrec.data.split import cold_item_split
from maasrec.neural import HybridRecommender

warnings.simplefilter("ignore", ColdStartWarning)

ds = datasets.load_movielens()
df = ds.interactions.to_pandas()
counts = df["item"].value_counts()
X = Interactions.from_pandas(df[df["item"].isin(counts.index[counts >= 20])])
features = ds.item_features.align(X.item_vocab)  # text, genres and year per item

# %%
# 10% of the movies go to the test part with all their ratings: the model never sees
# them in training, only their text.
train, test = cold_item_split(X, test_size=0.1, random_state=0)
model = HybridRecommender(dim=32, epochs=8, random_state=0)
model.fit(train, item_features=features)
print(model.modalities_)

# %%
# Rank, for each test user, only the cold items (``items=`` is an allow-list), and
# score the lists with :func:`~maasrec.metrics.evaluate_lists`. The same model without
# the text modality knows nothing about these items: its lists are the baseline.
cold_ids = np.unique(test.to_pandas()["item"])
users = np.unique(test.to_pandas()["user"])
id_only = HybridRecommender(item_encoders=["id"], dim=32, epochs=8, random_state=0)
id_only.fit(train, item_features=features)
for name, m in (("id + text", model), ("id only", id_only)):
    lists, _ = m.recommend(users, k=10, items=cold_ids)
    res = metrics.evaluate_lists(lists, users, test, train=train, k=10)
    print(f"{name:9s}: cold-item recall@10 {res['recall@10']:.3f} {res.ci['recall@10']}")

# %%
# An embedding map: PCA of the item vectors, first genre as colour.
V = model.item_repr_ - model.item_repr_.mean(axis=0)
_, _, vt = np.linalg.svd(V, full_matrices=False)
xy = V @ vt[:2].T
texts = features.texts()
first_genre = np.array([t.split("Genres: ")[-1].split(",")[0] for t in texts])
fig, ax = plt.subplots(figsize=(6, 5))
for g in ["Action", "Comedy", "Drama", "Horror", "Animation", "Documentary"]:
    m = first_genre == g
    ax.scatter(xy[m, 0], xy[m, 1], s=6, label=g, alpha=0.7)
cold = ~model.item_has_id_
ax.scatter(xy[cold, 0], xy[cold, 1], s=18, facecolors="none", edgecolors="k",
           linewidths=0.5, label="cold (text only)")
ax.legend(markerscale=2, fontsize=8)
ax.set_title("Item vectors (PCA), by first genre")
fig.tight_layout()
