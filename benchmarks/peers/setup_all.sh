#!/usr/bin/env bash
# Create every peer venv; a failing peer does not stop the others (the benchmark reports
# a missing peer with its error instead of dropping it).
cd "$(dirname "$0")"
status=0
for p in implicit lenskit cornac recbole; do
  echo "=== $p"
  bash "setup_$p.sh" || { echo "setup_$p.sh FAILED"; status=1; }
done
exit $status
