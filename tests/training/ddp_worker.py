"""``torchrun`` script of tests/training/test_distributed.py: ``python -m maasrec.train``
with a test hook (environment variables, read here only, never by maasrec):

``MAASREC_TEST_KILL_AFTER=N`` and ``MAASREC_TEST_KILL_MARKER=PATH``: rank 1 SIGKILLs
itself after N optimiser steps when PATH does not exist yet (it creates PATH first, so
the restarted attempt trains through).
"""

import os
import signal
import sys
from pathlib import Path

if __name__ == "__main__":
    marker = os.environ.get("MAASREC_TEST_KILL_MARKER")
    after = int(os.environ.get("MAASREC_TEST_KILL_AFTER", "0"))
    if marker and after and os.environ.get("RANK") == "1" and not Path(marker).exists():
        from maasrec.training import trainer

        step = trainer.Trainer._optimizer_step

        def killing_step(self, *args, **kwargs):
            step(self, *args, **kwargs)
            if self.step >= after:
                Path(marker).write_text(f"killed after step {self.step}\n")
                os.kill(os.getpid(), signal.SIGKILL)

        trainer.Trainer._optimizer_step = killing_step

    from maasrec.train import main

    sys.exit(main())
