"""Tests of maasrec.training.Trainer: the loop, accumulation, callbacks, TensorBoard,
checkpoint/resume (in process and after SIGKILL), bad checkpoints."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from maasrec.exceptions import DataError, MaasrecError, ModelFormatError
from maasrec.training import (
    Callback,
    NonFiniteLossError,
    Trainer,
    TrainerConfig,
    TrainingTask,
    fit_loop,
    no_decay,
    param_groups,
    torch_generator,
)


def linear_task(n=64, d=5, bs=8, seed=0, noise_gen=False):
    """A least-squares problem whose batches and dropout-free loss draw from ``g``."""
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    y = X @ torch.randn(d, generator=gen) + 0.1 * torch.randn(n, generator=gen)
    module = torch.nn.Linear(d, 1)
    with torch.no_grad():
        module.weight.copy_(torch.randn(1, d, generator=gen))
        module.bias.zero_()
    g = torch_generator(seed + 1)

    def batches(epoch):
        order = torch.randperm(n, generator=g)
        return [order[s:s + bs] for s in range(0, n, bs)]

    def loss(idx):
        pred = module(X[idx]).squeeze(1)
        if noise_gen:  # randomness drawn inside the step too (negatives, dropout masks)
            pred = pred + 0.01 * torch.randn(len(idx), generator=g)
        return torch.nn.functional.mse_loss(pred, y[idx])

    return TrainingTask(module, batches, loss, generators=[g]), X, y


def weights(module):
    return [t.detach().clone() for t in module.state_dict().values()]


def same(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))


# -- the loop --------------------------------------------------------------------------------

def test_fit_loop_is_a_trainer_and_both_are_deterministic():
    task, *_ = linear_task()
    hist = Trainer(task, epochs=3, learning_rate=0.05, random_state=0).fit()
    task2, *_ = linear_task()
    hist2 = fit_loop(task2.module, task2.loss, task2.batches, epochs=3, learning_rate=0.05,
                     random_state=0, generators=task2.generators)
    assert same(weights(task.module), weights(task2.module))
    assert hist.losses == hist2.losses and hist.steps == hist2.steps == 24
    assert hist.losses[-1] < hist.losses[0]


def test_param_groups_rule():
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.LayerNorm(3))
    net.add_module("ln_f", torch.nn.LayerNorm(3))
    net.add_module("emb", torch.nn.Embedding(5, 3))
    net.register_parameter("gate", torch.nn.Parameter(torch.ones(3)))
    frozen = torch.nn.Linear(3, 3)
    frozen.requires_grad_(False)
    net.add_module("frozen", frozen)
    decay, exempt = param_groups(net, 0.1)
    names = {id(p): n for n, p in net.named_parameters()}
    assert decay["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    assert sorted(names[id(p)] for p in decay["params"]) == ["0.weight", "emb.weight"]
    assert sorted(names[id(p)] for p in exempt["params"]) == [
        "0.bias", "1.bias", "1.weight", "gate", "ln_f.bias", "ln_f.weight"]
    # a 2-d parameter inside a norm module is exempt by name
    assert no_decay("blocks.0.ln1.weight", torch.ones(2, 2))
    assert no_decay("encoder.LayerNorm.weight", torch.ones(2, 2))
    assert not no_decay("blocks.0.qkv.weight", torch.ones(2, 2))


def test_grad_accumulation_equals_one_big_batch():
    torch.manual_seed(0)
    X, y = torch.randn(32, 4), torch.randn(32)

    def run(bs, k):
        module = torch.nn.Linear(4, 1)
        with torch.no_grad():
            module.weight.fill_(0.5)
            module.bias.fill_(0.1)
        task = TrainingTask(module, lambda e: [torch.arange(s, s + bs) for s in range(0, 32, bs)],
                            lambda i: torch.nn.functional.mse_loss(module(X[i]).squeeze(1),
                                                                   y[i]))
        hist = Trainer(task, epochs=2, optimizer="sgd", learning_rate=0.1,
                       grad_accumulation=k).fit()
        return module, hist

    big, hb = run(16, 1)
    small, hs = run(4, 4)
    assert hb.steps == hs.steps == 4
    for a, b in zip(big.parameters(), small.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    # a last, shorter accumulation (2 batches of k=3) steps like the mean of its batches
    odd, ho = run(16, 3)
    whole, hw = run(32, 1)
    assert ho.steps == hw.steps == 2
    for a, b in zip(odd.parameters(), whole.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_non_finite_loss_raises_before_the_step():
    task, *_ = linear_task()
    base = task.loss
    calls = []

    def loss(b):
        calls.append(1)
        out = base(b)
        return out * float("nan") if len(calls) == 11 else out

    task.loss = loss
    trainer = Trainer(task, epochs=3, learning_rate=0.05)
    with pytest.raises(NonFiniteLossError, match="epoch 2, step 3") as info:
        trainer.fit()
    assert info.value.epoch == 2 and info.value.step == 3
    assert trainer.step == 10 and all(torch.isfinite(p).all() for p in task.module.parameters())


def test_callbacks_order_and_stop():
    events = []

    class Rec(Callback):
        def on_fit_start(self, trainer):
            events.append("start")

        def on_step_end(self, trainer, step, logs):
            assert set(logs) >= {"loss", "lr", "samples", "seconds"}
            events.append(f"step{step}")

        def on_epoch_end(self, trainer, epoch, logs):
            events.append(f"epoch{epoch}")
            return epoch == 2

        def on_fit_end(self, trainer):
            events.append("end")

    task, *_ = linear_task(n=16, bs=8)
    plain = []
    hist = Trainer(task, epochs=5, callbacks=[Rec(), lambda e, logs: plain.append(
        (e, sorted(logs)))]).fit()
    assert events == ["start", "step1", "step2", "epoch1", "step3", "step4", "epoch2", "end"]
    assert [e for e, _ in plain] == [1, 2] and "loss" in plain[0][1]
    assert hist.stopped_early and hist.epochs == 2
    with pytest.raises(DataError, match="callbacks"):
        Trainer(task, callbacks=[42])


def test_config_is_checked():
    task, *_ = linear_task()
    for bad in ({"grad_accumulation": 0}, {"epochs": -1}, {"optimizer": "lbfgs"},
                {"checkpoint_every": "3 weeks"}, {"param_groups": "some"}, {"nope": 1}):
        with pytest.raises(DataError):
            Trainer(task, **bad)
    assert TrainerConfig(checkpoint_every="5 steps").checkpoint_steps() == (1, 5)


def test_tensorboard_event_file(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from maasrec.training import TensorBoardCallback

    task, *_ = linear_task(n=32, bs=8)
    task.validate = lambda: 0.5
    task.validate.name = "ndcg@10"
    Trainer(task, epochs=2, callbacks=[TensorBoardCallback(tmp_path)]).fit()
    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_second",
            "epoch/loss", "epoch/samples_per_second", "validation/ndcg@10"} <= tags
    assert [e.step for e in acc.Scalars("train/loss")] == list(range(1, 9))
    assert [e.value for e in acc.Scalars("validation/ndcg@10")] == [0.5, 0.5]


def test_tensorboard_missing_names_the_extra(monkeypatch):
    import builtins

    from maasrec.training import TensorBoardCallback

    real = builtins.__import__

    def fake(name, *a, **k):
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError(name)
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake)
    with pytest.raises(MaasrecError, match=r"maasrec\[tensorboard\]"):
        TensorBoardCallback("x")


# -- checkpoint and resume ---------------------------------------------------------------------

class Crash(Exception):
    pass


def crash_after(n):
    class C(Callback):
        def on_step_end(self, trainer, step, logs):
            if step == n:
                raise Crash
    return C()


@pytest.mark.parametrize("every, crash_step", [(1, 16), ("3 steps", 13), ("1 steps", 5)])
def test_resume_is_bit_identical(tmp_path, every, crash_step):
    task, *_ = linear_task(noise_gen=True)
    task.validate = lambda: -float(task.module.weight.abs().sum())  # changes every epoch
    full = Trainer(task, epochs=4, learning_rate=0.05, random_state=3, patience=5,
                   lr_schedule="cosine", warmup=0.1, optimizer="adamw").fit()
    ref = weights(task.module)

    task2, *_ = linear_task(noise_gen=True)
    task2.validate = lambda: -float(task2.module.weight.abs().sum())
    opts = dict(epochs=4, learning_rate=0.05, random_state=3, patience=5, lr_schedule="cosine",
                warmup=0.1, optimizer="adamw", checkpoint_dir=tmp_path, checkpoint_every=every)
    with pytest.raises(Crash):
        Trainer(task2, callbacks=[crash_after(crash_step)], **opts).fit()
    task3, *_ = linear_task(noise_gen=True, seed=0)
    task3.validate = lambda: -float(task3.module.weight.abs().sum())
    resumed = Trainer(task3, **opts)
    hist = resumed.fit()
    assert same(weights(task3.module), ref)
    assert hist.losses == full.losses and hist.metrics == full.metrics
    assert hist.best_epoch == full.best_epoch and hist.steps == full.steps
    # a finished checkpoint: a rerun trains nothing and ends with the same weights
    task4, *_ = linear_task(noise_gen=True, seed=5)
    task4.validate = lambda: 0.0
    Trainer(task4, **opts).fit()
    assert same(weights(task4.module), ref)


def test_bad_checkpoints_are_refused(tmp_path, monkeypatch):
    task, *_ = linear_task()
    Trainer(task, epochs=1, checkpoint_dir=tmp_path).fit()
    other, *_ = linear_task(d=6)
    with pytest.raises(DataError, match=r"another training run.*parameters\.weight"):
        Trainer(other, epochs=1, checkpoint_dir=tmp_path).fit()
    again, *_ = linear_task()
    with pytest.raises(DataError, match=r"learning_rate: checkpoint 0\.001, this fit 0\.01"):
        Trainer(again, epochs=1, learning_rate=0.01, checkpoint_dir=tmp_path).fit()
    state = tmp_path / "last" / "state.json"
    doc = json.loads(state.read_text())
    doc["state"]["world_size"] = 2
    raw = json.dumps(doc).encode()
    state.write_bytes(raw)
    with pytest.raises(ModelFormatError, match=r"state\.json is corrupt"):
        Trainer(again, epochs=1, checkpoint_dir=tmp_path).fit()
    import hashlib

    man = tmp_path / "last" / "maasrec.json"
    m = json.loads(man.read_text())
    m["files"]["state.json"] = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    man.write_text(json.dumps(m))
    with pytest.raises(DataError, match="world size 2, this run has world size 1"):
        Trainer(again, epochs=1, checkpoint_dir=tmp_path).fit()
    tensors = tmp_path / "last" / "tensors.safetensors"
    tensors.write_bytes(tensors.read_bytes()[:-10])
    with pytest.raises(ModelFormatError, match=r"tensors\.safetensors is corrupt"):
        Trainer(again, epochs=1, checkpoint_dir=tmp_path).fit()


def test_models_without_a_trainer_refuse_checkpoint_dir(tmp_path):
    from maasrec.models import Popularity

    with pytest.raises(DataError, match="checkpoint_dir"):
        Popularity().fit(np.eye(3), checkpoint_dir=tmp_path)


# -- SIGKILL -------------------------------------------------------------------------------

_SCRIPT = textwrap.dedent("""
    import sys, time
    import numpy as np, pandas as pd, torch
    from safetensors.torch import save_file
    torch.set_num_threads(1)
    from maasrec.neural import HybridRecommender, SequentialRecommender
    from maasrec.training import Callback
    kind, ckpt, out, slow = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame({"user": rng.integers(0, 120, n), "item": rng.integers(0, 200, n),
                       "timestamp": np.arange(n)})
    if kind == "seq":
        m = SequentialRecommender(dim=16, n_layers=1, max_len=20, batch_size=16, epochs=4,
                                  random_state=0, verbose=False)
    else:
        m = HybridRecommender(dim=8, epochs=4, batch_size=8, random_state=0)
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
    m.fit(df, checkpoint_dir=ckpt if ckpt != "-" else None)
    mods = [m.network_] if kind == "seq" else [x for x in (m.item_tower_, m.user_tower_,
            m.scorer_, m.history_tower_) if x is not None]
    save_file({f"{i}.{k}": v.contiguous() for i, mod in enumerate(mods)
               for k, v in mod.state_dict().items()}, out)
    print("DONE", flush=True)
""")


def _run(args, kill_at_step=None):
    env = dict(os.environ, PYTHONHASHSEED="0", OMP_NUM_THREADS="1")
    p = subprocess.Popen([sys.executable, "-c", _SCRIPT, *args], stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL, text=True, env=env)
    if kill_at_step is None:
        assert p.wait(timeout=120) == 0
        return True
    for line in p.stdout:
        if line.startswith("STEP") and int(line.split()[1]) >= kill_at_step:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(timeout=30)
            return False
        if line.startswith("DONE"):
            break
    p.wait(timeout=120)
    return True


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["seq", "hybrid"])
def test_sigkill_mid_epoch_then_resume_is_bit_identical(tmp_path, kind):
    from safetensors.torch import load_file

    ref = tmp_path / "ref.safetensors"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the subprocesses (the uninterrupted fit runs here)
    try:
        exec(compile(_SCRIPT.replace("import sys, time", "import time"), "ref", "exec"),
             {"__name__": "ref", "sys": type("S", (), {"argv": ["", kind, "-", str(ref), "0"]})})
    finally:
        torch.set_num_threads(threads)
    ckpt, out = tmp_path / "ckpt", tmp_path / "out.safetensors"
    rng = np.random.default_rng(22)
    # three seeded kill points (optimiser steps); a step sleeps a little so a kill lands
    # anywhere: between steps, in a step, in a checkpoint write
    points = sorted(int(x) for x in rng.integers(3, 40, size=3))
    for at in points:
        assert not _run([kind, str(ckpt), str(out), "0.01"], kill_at_step=at)
        assert (ckpt / "last").is_dir()
    state = json.loads((ckpt / "last" / "state.json").read_text())["state"]
    assert state["step"] > 0  # the last run below resumes
    _run([kind, str(ckpt), str(out), "0.0"])
    a, b = load_file(str(ref)), load_file(str(out))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
