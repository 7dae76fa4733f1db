#!/usr/bin/env bash
# LensKit (ItemKNN, ImplicitMF, Pop) in its own venv. torch first: the CPU wheel
# (pip would otherwise pull the CUDA build). Tested: lenskit 2025.8.1, torch 2.13.0+cpu,
# numpy 2.4.6, scipy 1.17.1, pandas 2.3.3 on Python 3.11.7.
# LensKit 2026.x needs Python >= 3.12.5 (and a CPU torch for it); the adapter uses the
# 2025 API, which is also what 2026 keeps (pipelines, lenskit.batch.recommend).
PEER=lenskit
source "$(dirname "$0")/_setup_common.sh"
"$PIP" install torch==2.13.0
"$PIP" install 'lenskit==2025.8.1'
"$VENV/bin/python" -c "import lenskit; print('lenskit', lenskit.__version__)"
finish
