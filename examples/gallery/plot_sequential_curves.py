"""
Training curves of a sequential model with item attributes
==========================================================

:class:`~maasrec.neural.SequentialRecommender` reads each user's movies in time order
with a small causal transformer (SASRec) and predicts the next one. With
``item_side="fuse"`` each movie's genres join its vector. ``training_log_`` keeps the
loss and the validation NDCG@10 of every epoch; here they are plotted for the model
with and without genres.
"""

import warnings

import matplotlib.pyplot as plt

from maasrec import ColdStartWarning, Interactions, datasets, metrics
from maasrec.data.split import leave_last_out
from maasrec.neural import SequentialRecommender

warnings.simplefilter("ignore", ColdStartWarning)

ds = datasets.load_movielens()
df = ds.interactions.to_pandas()
counts = df["item"].value_counts()
X = Interactions.from_pandas(df[df["item"].isin(counts.index[counts >= 20])])
features = ds.item_features.align(X.item_vocab)
train, valid, test = leave_last_out(X)  # last item test, second-to-last validation

# %%
logs, results = {}, {}
for side in ("none", "fuse"):
    model = SequentialRecommender(max_len=20, dim=32, n_layers=1, epochs=3,
                                  item_side=side, random_state=0)
    model.fit(train, item_features=features, validation=valid)
    model.extend_history(valid)  # the validation item is the latest of each history
    logs[side] = model.training_log_
    results[side] = metrics.evaluate(model, train, test, k=10, exclude=valid)
    print(f"item_side={side!r}: test NDCG@10 {results[side]['ndcg@10']:.4f} "
          f"{results[side].ci['ndcg@10']}")

# %%
fig, (a1, a2) = plt.subplots(1, 2, figsize=(8, 3))
for side, log in logs.items():
    epochs = range(1, len(log["losses"]) + 1)
    a1.plot(epochs, log["losses"], marker="o", label=f"item_side={side}")
    a2.plot(epochs, log["metrics"], marker="o", label=f"item_side={side}")
a1.set_xlabel("epoch")
a1.set_ylabel("training loss")
a2.set_xlabel("epoch")
a2.set_ylabel("validation NDCG@10")
a2.legend()
fig.tight_layout()
