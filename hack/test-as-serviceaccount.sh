#!/usr/bin/env bash
# Runs the run-order, failure-policy and alert, standalone-Sync and schedule integration tests with the
# controller authenticated as the Helm chart's ServiceAccount (cluster-wide mode), not as admin:
# proof that the chart's least-privilege RBAC is enough for everything the controller does.
#
# The chart's RBAC is rendered with `helm template` and applied; a token for its ServiceAccount
# goes into .cluster/serviceaccount.kubeconfig (hack/sa-kubeconfig.sh), which tests/support hands to every controller
# process through SYNCSEQ_CONTROLLER_KUBECONFIG. The tests themselves (creating namespaces,
# Syncs, sequences) still act as admin, as a user would. Leader election is off: every test runs
# its own single controller and the chart grants Lease access to its own Lease name only (the
# Lease rules are checked by hack/test-chart.sh).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export KUBECONFIG=${KUBECONFIG:-$repo/.cluster/kubeconfig}
bin=$(hack/build-tools.sh helm)
helm=$bin/helm
release=syncseq-rbac
ns=syncseq-rbac

kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
# Only the ServiceAccount and RBAC objects; the Deployment would need a real image.
"$helm" template "$release" charts/syncseq --namespace "$ns" --set replicaCount=1 \
  --set rbac.aggregateToDefaultRoles=false \
  --set "alertSecrets={slack-hook,json-hook,steps-hook,hook,absent,v4-hook,metadata-hook,v6-hook,named-hook,teams-hook,chat-hook,pd-hook,signed-hook,proxied-hook}" \
  | python3 -c '
import sys, yaml
keep = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
docs = [d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") in keep]
print(yaml.safe_dump_all(docs))' \
  | kubectl apply -n "$ns" -f - >/dev/null
sa=$(kubectl get serviceaccount -n "$ns" -l app.kubernetes.io/instance=$release -o jsonpath='{.items[0].metadata.name}')
out=$repo/.cluster/serviceaccount.kubeconfig
hack/sa-kubeconfig.sh "$ns" "$sa" "$out" 2h
if KUBECONFIG=$out kubectl auth can-i list secrets --all-namespaces >/dev/null 2>&1; then
  echo "the ServiceAccount may list Secrets: RBAC too broad" >&2
  exit 1
fi
echo "controller identity: system:serviceaccount:$ns:$sa"
SYNCSEQ_CONTROLLER_KUBECONFIG=$out SYNCSEQ_CONTROLLER_NO_LEADER_ELECTION=1 \
  cargo test --locked --features failpoints --test e2e -- sequence_run:: standalone_sync:: schedules:: failure_policies::
