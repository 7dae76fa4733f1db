#!/usr/bin/env bash
# Cornac (BPR, NeuMF, BiVAECF, CTR/CDL/ConvMF) in its own venv. torch first (CPU wheel);
# tensorflow-cpu for CDL/ConvMF and NeuMF's TF backend. Tested: cornac 3.0.1,
# torch 2.13.0+cpu, tensorflow_cpu 2.21.0, keras 3.15.1, numpy 2.4.6, scipy 1.17.1,
# pandas 3.1.1 on Python 3.11.7.
PEER=cornac
source "$(dirname "$0")/_setup_common.sh"
"$PIP" install torch==2.13.0
"$PIP" install cornac==3.0.1 pandas
"$PIP" install tensorflow-cpu threadpoolctl
"$VENV/bin/python" -c "import cornac; print('cornac', cornac.__version__)"
finish
