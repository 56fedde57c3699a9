#!/bin/sh
# Train the `robust` recipe (the model for users' own images) into a run folder.
#   sh benchmarks/train_robust.sh [RUN_DIR] [extra train flags, e.g. --threads 2]
set -eu
out="${1:-runs/robust}"
[ $# -gt 0 ] && shift
exec "${PYTHON:-python}" -m mnist_classifier train --recipe robust --out "$out" "$@"
