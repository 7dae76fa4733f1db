"""Top-k for every user, sharded across ranks: one part file per rank, read as one.

Under ``torchrun`` each rank scores a contiguous slice of the users (rank ``r`` of
``W`` takes users ``[r * n / W, (r + 1) * n / W)``) and writes
``part-RRRRR-of-WWWWW.safetensors`` (``user_index`` [n_r], ``item_index`` [n_r, k],
``score`` [n_r, k]; indices into the model's vocabularies; no pickle). Without a
process group one process writes the single part ``part-00000-of-00001``.
:func:`read_recommendations` checks that every part of one run is there and
concatenates them in user order.

::

    torchrun --nproc-per-node 4 my_script.py   # calls recommend_all(model, "recs/", k=100)
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from .exceptions import DataError, ModelFormatError

__all__ = ["read_recommendations", "recommend_all"]

_PART = re.compile(r"part-(\d{5})-of-(\d{5})\.safetensors")


def recommend_all(model: Any, out_dir: str | os.PathLike, k: int = 10, *,
                  exclude_seen: bool = True, batch_size: int = 4096,
                  rank: int | None = None, world_size: int | None = None) -> Path:
    """Write this rank's part of the top-``k`` items of every known user.

    Parameters
    ----------
    model : fitted maasrec Recommender
    out_dir : str or Path
        Created if needed; each rank writes only its own part file.
    k : int, default 10
    exclude_seen : bool, default True
        Leave out each user's training items.
    batch_size : int, default 4096
        Users scored per call.
    rank, world_size : int, optional
        Default: the ``torch.distributed`` group's (0 and 1 without one).

    Returns
    -------
    Path
        The part file written.

    Raises
    ------
    DataError
        A bad ``k``, ``batch_size``, ``rank`` or ``world_size``.
    NotFittedError
    """
    from safetensors.numpy import save_file

    from .training import distributed as dist

    r = dist.rank() if rank is None else rank
    w = dist.world_size() if world_size is None else world_size
    for name, v in (("k", k), ("batch_size", batch_size), ("world_size", w)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise DataError(f"{name} must be a positive integer, got {v!r}")
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r < w:
        raise DataError(f"rank must be an integer in [0, {w}), got {r!r}")
    n = len(model.user_vocab_)
    lo, hi = (r * n) // w, ((r + 1) * n) // w
    users = np.arange(lo, hi, dtype=np.int64)
    kk = min(int(k), len(model.item_vocab_))
    items = np.empty((len(users), kk), dtype=np.int64)
    scores = np.empty((len(users), kk), dtype=np.float32)
    for s in range(0, len(users), int(batch_size)):
        u = users[s:s + int(batch_size)]
        idx, sc = model.rank_indices(u, kk, exclude=model.seen_[u] if exclude_seen else None)
        items[s:s + len(u)], scores[s:s + len(u)] = idx, sc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"part-{r:05d}-of-{w:05d}.safetensors"
    tmp = path.with_suffix(".tmp")
    save_file({"user_index": users, "item_index": items, "score": scores}, str(tmp),
              metadata={"k": str(kk), "n_users": str(n)})
    os.replace(tmp, path)
    return path


def read_recommendations(out_dir: str | os.PathLike, model: Any = None
                         ) -> dict[str, np.ndarray]:
    """Merge the part files of :func:`recommend_all` into one result.

    Parameters
    ----------
    out_dir : str or Path
    model : fitted Recommender, optional
        Adds ``users`` and ``items``: the raw ids of the indices.

    Returns
    -------
    dict of np.ndarray
        ``user_index`` [n], ``item_index`` [n, k], ``score`` [n, k] (and ``users``,
        ``items`` with ``model``), in user order.

    Raises
    ------
    ModelFormatError
        No part files, parts of different runs (world sizes), a missing part, or users
        not covering ``0 .. n - 1`` exactly once.
    """
    from safetensors import safe_open
    from safetensors.numpy import load_file

    out = Path(out_dir)
    parts = sorted((int(m[1]), int(m[2]), p) for p in out.glob("part-*.safetensors")
                   if (m := _PART.fullmatch(p.name)))
    if not parts:
        raise ModelFormatError(f"no recommend_all part files in {str(out)!r}")
    sizes = {w for _, w, _ in parts}
    if len(sizes) != 1:
        raise ModelFormatError(f"{str(out)!r} mixes part files of runs with world sizes "
                               f"{sorted(sizes)}; remove the stale ones")
    w = sizes.pop()
    missing = sorted(set(range(w)) - {r for r, _, _ in parts})
    if missing:
        raise ModelFormatError(f"{str(out)!r} lacks part(s) {missing} of {w}")
    blocks = [load_file(str(p)) for _, _, p in parts]
    with safe_open(str(parts[0][2]), "np") as f:
        n = int(f.metadata()["n_users"])
    res = {key: np.concatenate([b[key] for b in blocks]) for key in blocks[0]}
    if not np.array_equal(res["user_index"], np.arange(n)):
        raise ModelFormatError(f"the parts in {str(out)!r} do not cover the {n} users once")
    if model is not None:
        res["users"] = np.asarray(model.user_vocab_.ids)[res["user_index"]]
        res["items"] = np.asarray(model.item_vocab_.ids)[res["item_index"]]
    return res
