#!/usr/bin/env bash
# Restarts one component of the running local control plane with the command line it runs
# with, the way a node reboot or a static-Pod update restarts it, and waits until it is ready
# again. tests/apiserver_restart.rs restarts kube-apiserver in the middle of a run.
#
# Usage: hack/cluster-restart.sh <component>   (one of: etcd kube-apiserver
#        kube-controller-manager kube-scheduler kwok)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=cluster-lib.sh
source "$(cd "$(dirname "$0")" && pwd)/cluster-lib.sh"

name=${1:?usage: hack/cluster-restart.sh <component>}
[[ " ${components[*]} " == *" $name "* ]] || die "unknown component $name (one of: ${components[*]})"

exec 9>"$state/.lock"
flock 9

alive "$name" || die "$name is not running; start the control plane with make cluster"
pid=$(pid_of "$name")
argv=()
while IFS= read -r -d '' arg; do argv+=("$arg"); done <"/proc/$pid/cmdline"
envs=()
while IFS= read -r -d '' kv; do envs+=("$kv"); done <"/proc/$pid/environ"

stopped=" "
stop_components "$name" || die "could not stop $name"
log "restarting $name"
# Same environment (kwok's KWOK_WORKDIR), own session, the log appended to.
env -i "${envs[@]}" setsid "${argv[@]}" </dev/null >>"$state/logs/$name.log" 2>&1 9>&- &
echo $! >"$state/pids/$name.pid"

kubeconfig=$state/kubeconfig
deadline=$((SECONDS + ${SYNCSEQ_CLUSTER_TIMEOUT:-180}))
until [ "$(kubectl --kubeconfig="$kubeconfig" --request-timeout=5s get --raw /readyz 2>/dev/null)" = ok ]; do
  alive "$name" || die "$name exited after the restart; see $state/logs/$name.log"
  [ "$SECONDS" -lt "$deadline" ] || die "the API server was not ready again within the deadline"
  sleep 0.25
done
log "restarted $name (pid $(pid_of "$name")); the API server is ready"
