#!/usr/bin/env bash
# Follows docs/install.md as a newcomer would, on the local control plane (make cluster): runs
# the page's own shell blocks, as written, in order. A block takes part when the line before it
# is `<!-- newcomer-test: NAME -->`; the names below must all be there, so the page cannot drop
# a step without this test failing.
#
#   install   helm install of the chart, cluster-wide, with its defaults
#   check     "Check the install": rollout, CRDs, the Lease holder
#   run       "Then run something": the CRM example, run with the plugin, described
#
# What the page assumes and the local control plane lacks is done here instead: the fake
# kubelet runs no containers, so after `install` the controller runs as a process with the
# Deployment's own arguments and the installed ServiceAccount's token (as make test-rbac does);
# `kubectl syncseq` is this checkout's build (target/debug/syncseq, which `make test` built),
# and helm the one hack/build-tools.sh built.
#
# The page's helm install creates the CRDs, so the CRDs some earlier test or release left are
# deleted first, with every syncseq object of the cluster: run it alone, after other tests.
# Leaves the CRDs installed; removes the release and the namespaces it made.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export KUBECONFIG=${KUBECONFIG:-$repo/.cluster/kubeconfig}
log() { echo "[$(date +%H:%M:%S)] newcomer: $*" >&2; }
die() { log "error: $*"; exit 1; }

page=docs/install.md
release=syncseq release_ns=syncseq-system example_ns=revops
syncseq=$repo/target/debug/syncseq
[ -x "$syncseq" ] || die "$syncseq is missing: cargo build --locked first"
tools=$(hack/build-tools.sh helm)

work=$(mktemp -d)
controller_pid=
cleanup() {
  [ -n "$controller_pid" ] && kill "$controller_pid" 2>/dev/null && wait "$controller_pid" 2>/dev/null
  helm uninstall "$release" -n "$release_ns" --wait >/dev/null 2>&1 || true
  kubectl delete namespace "$example_ns" "$release_ns" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

# The tools the page names, and nothing else of this checkout, on PATH.
mkdir -p "$work/bin"
ln -s "$tools/helm" "$work/bin/helm"
ln -s "$syncseq" "$work/bin/kubectl-syncseq"
export PATH=$work/bin:$PATH

# The marked blocks, by name.
python3 - "$page" "$work/blocks" <<'PY'
import os, re, sys
page, out = sys.argv[1], sys.argv[2]
os.makedirs(out)
lines = open(page).read().split("\n")
for i, line in enumerate(lines):
    m = re.fullmatch(r"<!-- newcomer-test: ([a-z]+) -->", line.strip())
    if not m:
        continue
    if not lines[i + 1].startswith("```sh"):
        sys.exit(f"{page}:{i + 1}: the marker is not followed by a ```sh block")
    end = next(j for j in range(i + 2, len(lines)) if lines[j].startswith("```"))
    with open(os.path.join(out, m.group(1)), "w") as f:
        f.write("\n".join(lines[i + 2:end]) + "\n")
PY
for name in install check run; do
  [ -s "$work/blocks/$name" ] || die "$page has no block marked <!-- newcomer-test: $name -->"
done
block() { # name: runs the page's block as a newcomer's shell would, stopping at the first failure
  log "running the '$1' block of $page:"
  sed 's/^/    /' "$work/blocks/$1" >&2
  (cd "$repo" && bash -euo pipefail "$work/blocks/$1") || die "the '$1' block of $page failed"
}

log "a clean slate: no syncseq CRDs, no release"
helm uninstall "$release" -n "$release_ns" --wait >/dev/null 2>&1 || true
kubectl delete crd syncs.syncseq.dev syncsequences.syncseq.dev webhookreceivers.syncseq.dev \
  --ignore-not-found --wait=true >/dev/null
for n in "$example_ns" "$release_ns"; do
  kubectl wait --for=delete "namespace/$n" --timeout=120s >/dev/null 2>&1 || true
done

block install

# What the Deployment's Pods would run: its arguments, as the installed ServiceAccount.
deploy=$(kubectl -n "$release_ns" get deploy "$release" -o json)
mapfile -t args < <(jq -r '.spec.template.spec.containers[0].args[]' <<<"$deploy" | grep -v '^--metrics-address=')
sa=$(jq -r '.spec.template.spec.serviceAccountName' <<<"$deploy")
hack/sa-kubeconfig.sh "$release_ns" "$sa" "$work/sa.kubeconfig" 30m
log "controller: syncseq ${args[*]} (as system:serviceaccount:$release_ns:$sa)"
KUBECONFIG=$work/sa.kubeconfig POD_NAME=newcomer-controller POD_NAMESPACE=$release_ns \
  "$syncseq" "${args[@]}" --metrics-address=127.0.0.1:0 >"$work/controller.log" 2>&1 &
controller_pid=$!
lease=$(jq -r '.spec.template.spec.containers[0].args[] | select(startswith("--lease-name=")) | ltrimstr("--lease-name=")' <<<"$deploy")
for _ in $(seq 120); do
  holder=$(kubectl -n "$release_ns" get lease "$lease" -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  [ "$holder" = newcomer-controller ] && break
  kill -0 "$controller_pid" 2>/dev/null || { tail -n 20 "$work/controller.log" >&2; die "the controller exited"; }
  sleep 0.5
done
[ "$holder" = newcomer-controller ] || die "the controller did not take Lease $lease within 60 s (holder: '${holder:-none}')"

block check
block run

if grep -qi forbidden "$work/controller.log"; then
  grep -i forbidden "$work/controller.log" | head -5 >&2
  die "the controller hit 403 Forbidden with the installed RBAC"
fi
log "followed $page: installed, checked, and the CRM example ran to Succeeded"
