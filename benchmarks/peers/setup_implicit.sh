#!/usr/bin/env bash
# implicit (ALS, BPR) in its own venv. Tested: implicit 0.7.3, numpy 2.4.6, scipy 1.17.1,
# pandas 3.1.1, threadpoolctl 3.8.0 on Python 3.11.7.
PEER=implicit
source "$(dirname "$0")/_setup_common.sh"
"$PIP" install implicit numpy scipy pandas threadpoolctl
"$VENV/bin/python" -c "import implicit; print('implicit', implicit.__version__)"
finish
