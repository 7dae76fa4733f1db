#!/usr/bin/env bash
# RecBole (BPR, NeuMF, LightGCN, SASRec) in its own venv. The pins are REQUIRED:
#   numpy<2        RecBole's Config re-creates np.float/np.int aliases; metrics use them
#   setuptools<81  ray 2.6.3 imports pkg_resources (removed in setuptools 81+)
#   pandas<3       Dataset._remap breaks on pandas 3 (Series.agg semantics) with pre-split files
#   scipy<1.13     LightGCN/NGCF use dok_matrix._update (removed in scipy 1.13)
# torch 2.13 works as long as no checkpoint is reloaded (the adapter trains with saved=False).
# Tested: recbole 1.2.1, torch 2.13.0+cpu, numpy 1.26.4, pandas 2.3.3, scipy 1.12.0,
# setuptools 80.10.2 on Python 3.11.7.
PEER=recbole
source "$(dirname "$0")/_setup_common.sh"
"$PIP" install torch==2.13.0
"$PIP" install 'numpy<2' recbole==1.2.1
"$PIP" install 'setuptools<81' 'pandas<3' 'scipy<1.13'
"$VENV/bin/python" -c "import recbole; print('recbole', recbole.__version__)"
finish
