"""
A leaderboard with confidence intervals
=======================================

Fit the classical recommenders on MovieLens latest-small (embedded in the package),
rank every unseen item for every test user (full ranking) and plot NDCG@10 with the
bootstrap 95% intervals that :func:`maasrec.metrics.evaluate` returns. A paired test
then says whether the best model really beats the runner-up on the same users.
"""

import warnings

import matplotlib.pyplot as plt

from maasrec import ColdStartWarning, Interactions, datasets, metrics
from maasrec.data.split import random_split
from maasrec.models import ALS, EASE, ItemKNN, Popularity, PureSVD

warnings.simplefilter("ignore", ColdStartWarning)

# %%
# Data: the movies with at least 20 ratings (1,297 of 9,724), so that EASE's item-item
# matrix stays small; a per-user random 80/10/10 split.
ds = datasets.load_movielens()
df = ds.interactions.to_pandas()
counts = df["item"].value_counts()
X = Interactions.from_pandas(df[df["item"].isin(counts.index[counts >= 20])])
train, valid, test = random_split(X, (0.8, 0.1, 0.1), random_state=0)
print(X.n_users, "users,", X.n_items, "items,", X.nnz, "ratings")

# %%
# Fit and evaluate. ``exclude=valid`` keeps the validation items out of the rankings.
models = {
    "Popularity": Popularity(),
    "ItemKNN": ItemKNN(n_neighbors=50),
    "PureSVD": PureSVD(factors=32, random_state=0),
    "ALS": ALS(factors=32, iterations=10, random_state=0),
    "EASE": EASE(l2=200.0),
}
results = {}
for name, model in models.items():
    model.fit(train)
    results[name] = metrics.evaluate(model, train, test, k=10, exclude=valid)
    print(f"{name:10s} NDCG@10 {results[name]['ndcg@10']:.4f}  CI {results[name].ci['ndcg@10']}")

# %%
# The plot: means with their 95% bootstrap intervals (users resampled).
names = sorted(results, key=lambda n: results[n]["ndcg@10"])
means = [results[n]["ndcg@10"] for n in names]
lows = [means[i] - results[n].ci["ndcg@10"][0] for i, n in enumerate(names)]
highs = [results[n].ci["ndcg@10"][1] - means[i] for i, n in enumerate(names)]
fig, ax = plt.subplots(figsize=(6, 3))
ax.barh(names, means, xerr=[lows, highs], color="tab:blue", alpha=0.8, capsize=4)
ax.set_xlabel("NDCG@10 (full ranking, 95% bootstrap CI)")
ax.set_title("MovieLens latest-small, 20+ ratings per movie")
fig.tight_layout()

# %%
# Overlapping intervals do not settle a comparison: the users are the same for both
# models, so compare per user.
best, second = names[-1], names[-2]
print(metrics.paired_test(results[best], results[second], "ndcg@10"))
