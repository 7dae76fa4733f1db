"""Two worker processes share one SQLite study: both contribute, no trial is lost."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter

import pytest

optuna = pytest.importorskip("optuna")

WORKER = textwrap.dedent("""
    import json, os, sys, warnings
    warnings.simplefilter("ignore")
    from maasrec.data.datasets import make_synthetic
    from maasrec.data.split import random_split
    from maasrec.tune import tune

    X = make_synthetic(300, 120, density=0.05, n_factors=4, seed=0, with_text=False,
                       with_timestamps=False).interactions
    train, valid, _ = random_split(X, (0.8, 0.1, 0.1), random_state=0)
    res = tune(train, valid, models=["PureSVD", "ItemKNN", "EASE"], n_trials=int(sys.argv[2]),
               storage=sys.argv[1], study_name="shared", random_state=0)
    print(json.dumps({"pid": os.getpid(), "n_trials": res.n_trials,
                      "best": res.best_value, "trials": len(res.leaderboard)}))
""")


@pytest.mark.slow
def test_two_workers_share_one_sqlite_study(tmp_path):
    url = f"sqlite:///{tmp_path / 'study.db'}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, "5"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    study = optuna.load_study(study_name="shared", storage=url)
    trials = study.get_trials(deepcopy=False)
    states = Counter(t.state.name for t in trials)
    assert states.get("RUNNING", 0) == 0 and states.get("FAIL", 0) == 0
    finished = [t for t in trials if t.state.is_finished()]
    # every trial a worker ran is in the study, and nothing else
    assert len(finished) == sum(o["n_trials"] for o in outs) == 10
    by_worker = Counter(int(t.user_attrs["worker"].rsplit(":", 1)[1]) for t in finished)
    assert by_worker == {o["pid"]: o["n_trials"] for o in outs}
    assert len({t.number for t in finished}) == 10
    # the sampler of each saw the other's trials: the study's best is the best of all
    assert max(o["best"] for o in outs) == pytest.approx(study.best_value)
