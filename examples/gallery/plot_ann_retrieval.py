"""
Approximate retrieval: recall against speed
===========================================

A model with user and item vectors (ALS here) can hand its top-k search to a
:class:`~maasrec.rankers.FaissRetriever`: the index proposes candidates, the model
re-scores them exactly and applies the usual filters. The plot shows how often the
approximate top-10 equals the exact one as the HNSW search list ``ef_search`` grows.
"""

import time

import matplotlib.pyplot as plt
import numpy as np

from maasrec.datasets import make_synthetic
from maasrec.models import ALS
from maasrec.rankers import FaissRetriever

# %%
# A synthetic catalogue with planted clusters: 2,000 users, 5,000 items.
ds = make_synthetic(n_users=2000, n_items=5000, density=0.005, seed=0, with_text=False)
model = ALS(factors=32, iterations=8, random_state=0).fit(ds.interactions)
users = ds.interactions.user_vocab.ids[:500]

t0 = time.perf_counter()
exact, _ = model.recommend(users, k=10, retriever="exact")
t_exact = time.perf_counter() - t0

# %%
rows = []
for ef in (10, 20, 40, 80, 160):
    retriever = FaissRetriever("hnsw", ef_search=ef, n_candidates=20, n_threads=1)
    model.recommend(users[:1], k=10, retriever=retriever)  # builds the index
    t0 = time.perf_counter()
    approx, _ = model.recommend(users, k=10, retriever=retriever)
    seconds = time.perf_counter() - t0
    recall = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    rows.append((ef, recall, seconds))
    print(f"ef_search={ef:4d}  recall@10 vs exact {recall:.3f}  {seconds * 1e3:.0f} ms")
print(f"exact: {t_exact * 1e3:.0f} ms")

# %%
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot([r[0] for r in rows], [r[1] for r in rows], marker="o")
ax.set_xscale("log")
ax.set_xlabel("ef_search (HNSW)")
ax.set_ylabel("recall@10 against exact top-10")
ax.set_ylim(0, 1.02)
fig.tight_layout()
