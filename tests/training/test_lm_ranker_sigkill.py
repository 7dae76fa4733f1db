"""LMRanker killed with SIGKILL mid-training and rerun with the same checkpoint_dir ends
with the weights of an uninterrupted fit (the subprocess protocol of test_trainer.py)."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest
import test_trainer  # the SIGKILL helper of the other models' resume test (same folder)
import torch

pytest.importorskip("transformers")

# the argv and STEP/DONE protocol of test_trainer._SCRIPT, with a tiny random LMRanker
_LM_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np, pandas as pd, torch
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    from maasrec.data import Interactions, ItemFeatures
    from maasrec.lm_ranker import LMRanker
    from maasrec.models import EASE
    from maasrec.testing.components import tiny_text_model
    kind, ckpt, out, slow = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rng = np.random.default_rng(0)
    rows = [(f"u{u}", int(100 + (u % 2) * 12 + rng.integers(12)), t)
            for u in range(30) for t in range(5)]
    X = Interactions.from_pandas(pd.DataFrame(rows, columns=["user", "item", "timestamp"]))
    ids = np.arange(100, 124)
    feats = ItemFeatures.from_pandas(pd.DataFrame(
        {"item": ids, "text": [f"{'space war' if i < 112 else 'love story'} {i % 5}"
                               for i in ids]}), "item", text="text")
    m = LMRanker(first_stage=EASE(l2=10.0), model=tiny_text_model(kind), n_candidates=8,
                 history_len=2, max_length=48, epochs=3, learning_rate=2e-3, batch_size=10,
                 positives_per_user=2, random_state=0)
    import maasrec.training.trainer as T
    if slow:
        step = T.Trainer._optimizer_step
        def slowed(self, *a, **k):
            step(self, *a, **k)
            print("STEP", self.step, flush=True)
            time.sleep(slow)
        T.Trainer._optimizer_step = slowed
        orig = T.Trainer.__init__
        def init(self, task, config=None, **k):
            orig(self, task, config, **k)
            self.config.checkpoint_every = "2 steps"
        T.Trainer.__init__ = init
    m.fit(X, item_features=feats, checkpoint_dir=ckpt if ckpt != "-" else None)
    save_file({k: v.detach().clone().contiguous() for k, v in m._lm.state_dict().items()}, out)
    print("DONE", flush=True)
""")


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["bert"])
def test_lm_ranker_sigkill_then_resume_is_bit_identical(tmp_path, monkeypatch, kind):
    from safetensors.torch import load_file

    monkeypatch.setattr(test_trainer, "_SCRIPT", _LM_SCRIPT)
    ref, ckpt, out = tmp_path / "ref.safetensors", tmp_path / "ckpt", tmp_path / "out.safetensors"
    test_trainer._run([kind, "-", str(ref), "0"])  # uninterrupted, no checkpoints
    # 30 users x 2 positives, 2 groups a step: 30 steps an epoch, 90 in all; three seeded
    # kill points (a step sleeps a little so a kill lands anywhere: between steps, in a
    # step, in a checkpoint write)
    points = sorted(int(x) for x in np.random.default_rng(22).integers(3, 85, size=3))
    for at in points:
        assert not test_trainer._run([kind, str(ckpt), str(out), "0.01"], kill_at_step=at)
        assert (ckpt / "last").is_dir()
    state = json.loads((ckpt / "last" / "state.json").read_text())["state"]
    assert state["step"] > 0  # the last run below resumes
    test_trainer._run([kind, str(ckpt), str(out), "0.0"])
    a, b = load_file(str(ref)), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
