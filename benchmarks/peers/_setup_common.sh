# Sourced by setup_<peer>.sh: resolves the venv folder and creates the venv.
#   MAASREC_PEERS_DIR  parent folder of the peer venvs (default /tmp/maasrec-peers)
#   PYTHON             interpreter for the venv (default python3; tested with 3.11.7)
set -euo pipefail
PEERS_DIR="${MAASREC_PEERS_DIR:-/tmp/maasrec-peers}"
PYTHON="${PYTHON:-python3}"
VENV="$PEERS_DIR/$PEER"
mkdir -p "$PEERS_DIR"
if [ -x "$VENV/bin/python" ]; then
  echo "reusing $VENV"
else
  "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/pip"
"$PIP" install --upgrade pip >/dev/null
finish() {
  "$VENV/bin/pip" freeze --all > "$VENV/freeze.txt"
  echo "$PEER venv ready: $VENV/bin/python (pip freeze in $VENV/freeze.txt)"
}
