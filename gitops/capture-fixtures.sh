#!/usr/bin/env bash
# Captures the SyncSequence and Sync status fixtures in gitops/testdata/ from real runs of the controller
# against the local control plane (make cluster), so the Argo CD, kstatus and Flux tests check what the
# controller really writes, not what we think it writes.
#
#   gitops/capture-fixtures.sh            # builds the controller with cargo, captures, cleans up
#
# Environment:
#   KUBECONFIG       defaults to <repo>/.cluster/kubeconfig
#   SYNCSEQ_BIN      a controller binary to use instead of `cargo build` + target/debug/syncseq
#   FIXTURE_NS       namespace to run in (default syncseq-fixtures; deleted and recreated)
#   KEEP=1           leave the namespace in place afterwards (for poking at it)
#
# Fixtures written (metadata.managedFields, uid, resourceVersion and the last-applied annotation
# stripped):
#   running.json              a run in progress (status.currentRun.phase Running, step 2/3)
#   succeeded.json            after a successful run (lastRunResult Succeeded)
#   suspended.json            spec.suspend: true, nothing running
#   stalled.json              spec.schedule "61 * * * *": Stalled True (InvalidSchedule)
#   failed.json               the accounts step exits 2: lastRunResult Failed
#   generation-lagging.json   succeeded.json with metadata.generation raised by one BY HAND
#                             (the annotation gitops.syncseq.dev/fixture-note says so)
#   sync-running.json         the Sync `workspaces` while run 1 runs it (step 2/3)
#   sync-succeeded.json       the Sync `accounts` after the successful run
#   sync-failed.json          the Sync `accounts` after the failed run
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/gitops/testdata
export KUBECONFIG=${KUBECONFIG:-$repo/.cluster/kubeconfig}
ns=${FIXTURE_NS:-syncseq-fixtures}
seq=crm-hourly
work=$(mktemp -d)
controller_pid=

log() { echo "[capture] $*" >&2; }
die() { log "FAILED: $*"; [ -f "$work/controller.log" ] && { log "controller log tail:"; tail -n 30 "$work/controller.log" >&2; }; exit 1; }

cleanup() {
  if [ -n "$controller_pid" ] && kill -0 "$controller_pid" 2>/dev/null; then
    kill "$controller_pid" 2>/dev/null || true
    wait "$controller_pid" 2>/dev/null || true
  fi
  if [ "${KEEP:-0}" != 1 ]; then
    kubectl delete namespace "$ns" --wait=false --ignore-not-found >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

for tool in kubectl jq; do command -v "$tool" >/dev/null || die "$tool is required"; done
kubectl get --raw /readyz >/dev/null || die "no API server at KUBECONFIG=$KUBECONFIG (run make cluster)"

if [ -n "${SYNCSEQ_BIN:-}" ]; then
  bin=$SYNCSEQ_BIN
else
  log "cargo build"
  (cd "$repo" && cargo build -q) || die "cargo build"
  # A private copy: other builds may replace target/debug/syncseq while we run.
  cp "$repo/target/debug/syncseq" "$work/syncseq"
  bin=$work/syncseq
fi

log "CRDs"
kubectl apply --server-side --force-conflicts -f "$repo/crds/syncseq.dev_crds.yaml" >/dev/null
kubectl wait --for=condition=Established crd/syncs.syncseq.dev crd/syncsequences.syncseq.dev --timeout=30s >/dev/null

if kubectl get namespace "$ns" >/dev/null 2>&1; then
  log "deleting the old namespace $ns"
  kubectl delete namespace "$ns" --wait=true --timeout=120s >/dev/null || die "deleting namespace $ns"
fi
kubectl create namespace "$ns" >/dev/null

log "starting the controller for namespace $ns"
"$bin" controller --namespace "$ns" --log-level info >"$work/controller.log" 2>&1 &
controller_pid=$!

get() { kubectl -n "$ns" get syncsequence "$seq" -o json; }
get_sync() { kubectl -n "$ns" get sync "$1" -o json; }

# wait_for <what> <seconds> <jq condition on the SyncSequence> [sync name: test that Sync instead]
wait_for() {
  local what=$1 timeout=$2 cond=$3 sync=${4:-} deadline=$((SECONDS + $2))
  local read=get
  [ -n "$sync" ] && read="get_sync $sync"
  while [ $SECONDS -lt $deadline ]; do
    kill -0 "$controller_pid" 2>/dev/null || die "the controller exited while waiting for: $what"
    if $read 2>/dev/null | jq -e "$cond" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "last status:"; $read | jq '.status' >&2 || true
  die "timed out after ${timeout}s waiting for: $what"
}

strip='del(.metadata.managedFields, .metadata.uid, .metadata.resourceVersion,
           .metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"])
       | if .metadata.annotations == {} then del(.metadata.annotations) else . end'
save() { # <file> [extra jq filter]
  get | jq --indent 2 "$strip | ${2:-.}" >"$out/$1"
  log "wrote gitops/testdata/$1"
}
save_sync() { # <sync> <file>
  get_sync "$1" | jq --indent 2 "$strip" >"$out/$2"
  log "wrote gitops/testdata/$2"
}
trigger() { # <value>: asks for one run
  local v=$1
  kubectl -n "$ns" annotate syncsequence "$seq" "syncseq.dev/requestedAt=$v" --overwrite >/dev/null
}
observed='.status.observedGeneration == .metadata.generation'

mkdir -p "$out"
kubectl -n "$ns" apply --server-side -f "$repo/examples/crm-hourly.yaml" >/dev/null
wait_for "first status (Ready True)" 60 "$observed and any(.status.conditions[]?; .type == \"Ready\" and .status == \"True\")"

# 1. A run in progress, captured in the middle of step 2/3, and its successful end.
req=$(date +%s)
trigger "$req"
wait_for "run in progress at step 2/3" 60 '.status.currentRun.phase == "Running" and .status.currentRun.progress == "2/3"'
save running.json
wait_for "Sync workspaces running" 10 '.status.lastRun.outcome == "Running"' workspaces
save_sync workspaces sync-running.json
wait_for "successful run" 90 ".status.lastHandledRequestAt == \"$req\" and .status.currentRun == null and .status.lastRunResult != null"
[ "$(get | jq -r .status.lastRunResult)" = Succeeded ] || die "expected lastRunResult Succeeded, got $(get | jq -r .status.lastRunResult)"
save succeeded.json
wait_for "Sync accounts succeeded" 10 '.status.lastRun.outcome == "Succeeded"' accounts
save_sync accounts sync-succeeded.json

# 2. Generation lagging: the only hand-made fixture. The controller reacts within milliseconds, so
#    a live capture of observedGeneration < generation is a race; raise generation by hand instead.
save generation-lagging.json '.metadata.generation += 1
  | .metadata.annotations["gitops.syncseq.dev/fixture-note"] = "captured as succeeded.json, then metadata.generation raised by one by hand to simulate a spec change the controller has not observed yet"'

# 3. Suspended, nothing running.
kubectl -n "$ns" patch syncsequence "$seq" --type merge -p '{"spec":{"suspend":true}}' >/dev/null
wait_for "suspend observed" 30 "$observed and .spec.suspend == true and .status.currentRun == null"
save suspended.json

# 4. Stalled: a schedule the CRD's CEL shape check lets through but the cron parser rejects.
kubectl -n "$ns" patch syncsequence "$seq" --type merge -p '{"spec":{"suspend":false,"schedule":"61 * * * *"}}' >/dev/null
wait_for "Stalled True" 30 "$observed and any(.status.conditions[]?; .type == \"Stalled\" and .status == \"True\")"
save stalled.json

# 5. A failed run: the first step's Pod exits 2 (kwok reads the sim annotation), onFailure Stop.
kubectl -n "$ns" patch syncsequence "$seq" --type merge -p '{"spec":{"schedule":"0 * * * *"}}' >/dev/null
wait_for "schedule fixed (Stalled False)" 30 "$observed and any(.status.conditions[]?; .type == \"Stalled\" and .status == \"False\")"
kubectl -n "$ns" patch sync accounts --type merge \
  -p '{"spec":{"jobTemplate":{"spec":{"template":{"metadata":{"annotations":{"sim.syncseq.dev/exit-code":"2"}}}}}}}' >/dev/null
req=$((req + 1))
trigger "$req"
wait_for "failed run" 90 ".status.lastHandledRequestAt == \"$req\" and .status.currentRun == null and .status.lastRunResult == \"Failed\""
save failed.json
wait_for "Sync accounts failed" 10 '.status.lastRun.outcome == "Failed"' accounts
save_sync accounts sync-failed.json

log "done: fixtures in gitops/testdata"
