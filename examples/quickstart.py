"""Quick start: load data, split, fit, recommend, evaluate, save and load.

Run with ``python examples/quickstart.py`` (uses the embedded MovieLens latest-small).
"""

import tempfile
import warnings
from pathlib import Path

from maasrec import ColdStartWarning, Interactions, datasets, metrics
from maasrec.data.split import random_split
from maasrec.models import EASE, Popularity


def main() -> None:
    ds = datasets.load_movielens()  # embedded, works offline
    print(ds)
    # EASE inverts an items x items matrix (cost ~ n_items^3): keep the 1,297 movies with
    # 20+ ratings so that each fit takes a second instead of minutes
    df = ds.interactions.to_pandas()
    counts = df["item"].value_counts()
    X = Interactions.from_pandas(df[df["item"].isin(counts.index[counts >= 20])])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ColdStartWarning)
        train, valid, test = random_split(X, (0.8, 0.1, 0.1), random_state=0)

    # pick the regularisation on the validation part only
    best = None
    for l2 in (100.0, 300.0, 1000.0):
        model = EASE(l2=l2).fit(train)
        ndcg = metrics.evaluate(model, train, valid, k=10, metrics=["ndcg"])["ndcg@10"]
        print(f"EASE(l2={l2:g}) validation NDCG@10 = {ndcg:.4f}")
        if best is None or ndcg > best[0]:
            best = (ndcg, l2)
    model = EASE(l2=best[1]).fit(train)

    res = metrics.evaluate(model, train, test, k=(10, 20), exclude=valid)
    base = metrics.evaluate(Popularity().fit(train), train, test, k=(10, 20), exclude=valid)
    print(res)
    print("EASE vs Popularity:", metrics.paired_test(res, base, "ndcg@10"))

    titles = ds.item_titles
    ids, _ = model.recommend(1, k=5)
    print("user 1 gets:", [titles[i] for i in ids])
    ids, _ = model.recommend(history=[1, 260, 1196], k=5)  # a new user
    print("a fan of Toy Story and Star Wars gets:", [titles[i] for i in ids])

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "ease"
        model.save(path)
        again = EASE.load(path)
        assert (again.recommend(1, k=5)[0] == model.recommend(1, k=5)[0]).all()
        print("saved and loaded:", sorted(p.name for p in path.iterdir()))


if __name__ == "__main__":
    main()
