#!/usr/bin/env bash
# On a lent GPU machine (no network): install the carried wheels, then run gpu/procedure.py.
#   bash gpu/run.sh smoke train --minutes 6        # first call (carry .gpu)
#   bash gpu/run.sh bench --bench-seconds 170      # second call, on the still-warm machine
# Outputs go to $OUT (the device tool's folder that comes back), else ./gpu_out.
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=${BUNDLE:-.gpu}
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
if compgen -G "$BUNDLE/wheels/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/unsmear-site "$BUNDLE"/wheels/*.whl
  export PYTHONPATH=/tmp/unsmear-site:$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
python3 gpu/procedure.py "$@" --bundle "$BUNDLE" --out "$OUT" 2>&1 | tee -a "$OUT/procedure.log"
