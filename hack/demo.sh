#!/usr/bin/env bash
# The demo: syncseq's main job on the local control plane. Starts the control plane (or reuses
# it), installs the CRDs, runs the controller, applies the CRM example (accounts, then
# workspaces, then contacts), triggers a run, shows the steps advancing, and ends with
# `kubectl describe` of the finished sequence.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
ns=${SYNCSEQ_DEMO_NAMESPACE:-syncseq-demo}
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "starting the local control plane"
KUBECONFIG=$(hack/cluster-up.sh)
export KUBECONFIG

say "building syncseq"
cargo build --locked --quiet
bin=$root/target/debug/syncseq

say "installing the CRDs"
kubectl apply --server-side --force-conflicts -f crds/syncseq.dev_crds.yaml
kubectl wait --for=condition=Established crd/syncs.syncseq.dev crd/syncsequences.syncseq.dev --timeout=60s

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
log=$root/.cluster/logs/demo-controller.log
say "running the controller (namespace $ns; log: $log)"
"$bin" controller --namespace "$ns" >"$log" 2>&1 &
controller=$!
watcher=
cleanup() {
  [ -n "$watcher" ] && kill "$watcher" 2>/dev/null
  kill "$controller" 2>/dev/null && wait "$controller" 2>/dev/null
  true
}
trap cleanup EXIT

say "applying examples/crm-hourly.yaml"
# Start from a fresh sequence so the Events below are this demo's alone.
kubectl delete syncsequence crm-hourly -n "$ns" --ignore-not-found --wait=true >/dev/null
kubectl apply -n "$ns" -f examples/crm-hourly.yaml
run=1

say "triggering run $run (annotation syncseq.dev/requestedAt) and watching it"
kubectl get syncsequence -n "$ns" --watch-only &
watcher=$!
kubectl annotate -n "$ns" syncsequence crm-hourly "syncseq.dev/requestedAt=$(date +%s)" --overwrite
kubectl wait -n "$ns" syncsequence/crm-hourly --for=jsonpath='{.status.runs[0].id}'="$run" --timeout=120s >/dev/null
kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null || true
watcher=

say "the Jobs, one per step, created in order"
kubectl get jobs -n "$ns" -l "syncseq.dev/run=$run" --sort-by=.metadata.creationTimestamp \
  -o custom-columns=JOB:.metadata.name,STEP:.metadata.labels.syncseq\\.dev/step,CREATED:.metadata.creationTimestamp,COMPLETED:.status.completionTime

say "kubectl describe syncsequence crm-hourly"
kubectl describe syncsequence crm-hourly -n "$ns"

result=$(kubectl get sseq crm-hourly -n "$ns" -o jsonpath='{.status.runs[0].phase}')
say "run $run: $result"
echo "The control plane keeps running: export KUBECONFIG=$KUBECONFIG; stop it with: make cluster-down"
[ "$result" = Succeeded ]
