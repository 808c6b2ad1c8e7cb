#!/usr/bin/env bash
# Fails when the Helm chart's CRDs differ from the generated ones: charts/syncseq/crds/ must hold
# exactly one file, a byte-identical copy of crds/syncseq.dev_crds.yaml (`cargo run -q -- crd`).
#
#   hack/check-chart-crds.sh          # check (CI)
#   hack/check-chart-crds.sh --fix    # copy crds/syncseq.dev_crds.yaml into the chart
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
src=crds/syncseq.dev_crds.yaml
dst=charts/syncseq/crds/syncseq.dev_crds.yaml
cd "$repo"

if [ "${1:-}" = --fix ]; then
  cp "$src" "$dst"
  echo "copied $src to $dst"
  exit 0
fi

status=0
if ! cmp -s "$src" "$dst"; then
  echo "ERROR: $dst differs from $src; run hack/check-chart-crds.sh --fix" >&2
  diff -u "$src" "$dst" 2>&1 | head -n 40 >&2 || true
  status=1
fi
extra=$(find charts/syncseq/crds -type f ! -path "$dst" | sort)
if [ -n "$extra" ]; then
  echo "ERROR: unexpected files in charts/syncseq/crds/ (only $(basename "$dst") belongs there):" >&2
  echo "$extra" >&2
  status=1
fi
[ $status -eq 0 ] && echo "chart CRDs match $src"
exit $status
