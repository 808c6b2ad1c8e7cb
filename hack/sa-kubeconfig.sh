#!/usr/bin/env bash
# Writes a kubeconfig that authenticates as a ServiceAccount (a token from the TokenRequest
# API) to the cluster of the current KUBECONFIG: how the tests run the controller with exactly
# the rights the Helm chart grants it, where the local control plane cannot run its image.
#
#   hack/sa-kubeconfig.sh NAMESPACE SERVICEACCOUNT OUT [DURATION]   (default DURATION: 2h)
#
# Checks that the kubeconfig really is that ServiceAccount (kubectl auth whoami).
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 NAMESPACE SERVICEACCOUNT OUT [DURATION]" >&2; exit 2; }
ns=$1 sa=$2 out=$3 duration=${4:-2h}
token=$(kubectl create token "$sa" -n "$ns" --duration="$duration")
server=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
ca=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')
umask 077
cat >"$out" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "$server", certificate-authority-data: "$ca"}}]
users: [{name: $sa, user: {token: "$token"}}]
contexts: [{name: sa, context: {cluster: local, user: $sa, namespace: $ns}}]
current-context: sa
KUBECONFIG
who=$(KUBECONFIG=$out kubectl auth whoami -o jsonpath='{.status.userInfo.username}')
[ "$who" = "system:serviceaccount:$ns:$sa" ] || { echo "$out authenticates as $who, not $ns/$sa" >&2; exit 1; }
