#!/usr/bin/env bash
# Stops every process hack/cluster-up.sh started (SIGTERM to each component's process group,
# SIGKILL after 15 s), verifies none is left, and removes the cluster state in .cluster/ (PKI,
# etcd data, kubeconfigs, pid files) so the next `make cluster` starts fresh. Logs in
# .cluster/logs/ are kept for post-mortems. Safe to run when nothing is running.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=cluster-lib.sh
source "$(cd "$(dirname "$0")" && pwd)/cluster-lib.sh"

exec 9>"$state/.lock"
flock 9

if ! stop_all; then
  log "error: some processes could not be stopped; state left in $state"
  exit 1
fi
clean_state
log "cluster stopped; no etcd/kube-*/kwok process of $state is left"
