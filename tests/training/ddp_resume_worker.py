"""``torchrun --nproc-per-node 2`` script of tests/training/test_distributed.py: on every
rank, an uninterrupted fit of a small least-squares task with per-rank randomness inside
the step, then the same fit stopped on every rank after ``K`` optimiser steps (mid-epoch,
checkpoints every 3 steps; callbacks run on rank 0 only, so the stop raises from the step) and resumed from ``CKPT``; rank 0 prints one JSON line saying
whether the weights and losses are the same bit for bit."""

import json
import sys

import torch

from maasrec.training import Trainer, TrainingTask, torch_generator
from maasrec.training import trainer as trainer_module
from maasrec.training.distributed import init_distributed, rank, teardown


def task(seed=0, n=96, d=5, bs=12):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, generator=gen)
    y = X @ torch.randn(d, generator=gen) + 0.1 * torch.randn(n, generator=gen)
    module = torch.nn.Sequential(torch.nn.Linear(d, 8), torch.nn.Dropout(0.3),
                                 torch.nn.Linear(8, 1))
    g = torch_generator(seed + 1)

    def batches(epoch):
        order = torch.randperm(n, generator=g)
        return [order[s:s + bs] for s in range(0, n, bs)]

    def loss(idx):  # dropout (global stream) and noise (task generator) on each rank
        pred = module(X[idx]).squeeze(1) + 0.01 * torch.randn(len(idx), generator=g)
        return torch.nn.functional.mse_loss(pred, y[idx])

    return TrainingTask(module, batches, loss, generators=[g])


class Stop(Exception):
    pass


def stop_after(k):
    step = trainer_module.Trainer._optimizer_step

    def stopping(self, *args, **kwargs):
        step(self, *args, **kwargs)
        if self.step == k:
            raise Stop
    return step, stopping


if __name__ == "__main__":
    ckpt, k = sys.argv[1], int(sys.argv[2])
    init_distributed("cpu")
    opts = dict(epochs=3, learning_rate=0.05, random_state=3, optimizer="adamw",
                lr_schedule="cosine", warmup=0.1)
    torch.manual_seed(0)
    full_task = task()
    full = Trainer(full_task, **opts).fit()
    torch.manual_seed(0)
    plain, trainer_module.Trainer._optimizer_step = stop_after(k)
    try:
        Trainer(task(), checkpoint_dir=ckpt, checkpoint_every="3 steps", **opts).fit()
        raise SystemExit("the fit did not stop")
    except Stop:
        pass
    trainer_module.Trainer._optimizer_step = plain
    torch.manual_seed(0)
    again = task()
    resumed = Trainer(again, checkpoint_dir=ckpt, checkpoint_every="3 steps", **opts).fit()
    same = all(torch.equal(a, b) for a, b in zip(full_task.module.state_dict().values(),
                                                   again.module.state_dict().values()))
    if rank() == 0:
        print(json.dumps({"same_weights": same, "losses": [full.losses, resumed.losses],
                          "steps": [full.steps, resumed.steps]}), flush=True)
    teardown()
