#!/usr/bin/env bash
# Tests the Helm chart charts/syncseq against the local control plane (make cluster):
#
#   1. the CRDs are templates (templates/crds.yaml, checked against the types by a unit test),
#      not Helm's install-only crds/ directory; the chart README is what helm-docs makes of
#      README.md.gotmpl and values.yaml;
#   2. helm lint with the default values and every charts/syncseq/ci/*-values.yaml;
#   3. helm template for each value set; values that must be refused are refused;
#   4. every rendered manifest passes a server-side dry-run (kubectl apply --dry-run=server), after
#      the CRDs are installed (kubectl apply --server-side);
#   5. the rendered RBAC has no '*' in verbs, resources or apiGroups (nor nonResourceURLs), Secrets
#      appear only with verb get and resourceNames, Lease rights beyond create are limited to the
#      Lease's name; the Deployment has the expected flags, probes, env and security context;
#   6. the RBAC is applied for real and `kubectl auth can-i --as=<the ServiceAccount>` checks what
#      the controller may and may not do, in cluster-wide and namespace-scoped mode, and what
#      users with Kubernetes' default view, edit and admin roles in a namespace may do with
#      SyncSequences and Syncs (the chart's aggregated roles);
#   7. with SYNCSEQ_BIN=<controller binary> set: that controller runs with the namespace-scoped
#      ServiceAccount's token only and completes a run of examples/crm-hourly.yaml;
#   8. CRDs that upgrade, with a real `helm install` and `helm upgrade`: a release whose CRDs have
#      no WebhookReceiver and no SyncSequence spec.after (release N-1), upgraded to this chart,
#      serves both; uninstalling keeps the CRDs. With SYNCSEQ_BIN, this controller also runs
#      against N-1's CRDs: it completes a run and stops on SIGTERM.
#
# Environment: KUBECONFIG (default <repo>/.cluster/kubeconfig), HELM (default: helm from
# hack/build-tools.sh, else PATH), SYNCSEQ_BIN (optional, step 7). Needs kubectl and jq.
# Creates and deletes the namespaces syncseq-chart-test and syncseq-chart-test-watched and the
# ClusterRole/ClusterRoleBinding syncseq-chart-test and the ClusterRoles syncseq-chart-test-view,
# -edit and -admin; step 8 deletes the syncseq CRDs (and so every syncseq object of the cluster)
# and leaves this chart's CRDs installed.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
chart=charts/syncseq
export KUBECONFIG=${KUBECONFIG:-$repo/.cluster/kubeconfig}
release=syncseq-chart-test
ns=syncseq-chart-test                  # release namespace
watched=syncseq-chart-test-watched     # must match charts/syncseq/ci/namespaced-values.yaml
sa=system:serviceaccount:$ns:$release
work=$(mktemp -d)
failures=0
controller_pid=

log() { echo "[test-chart] $*" >&2; }
fail() { echo "[test-chart] FAIL: $*" >&2; failures=$((failures + 1)); }
die() { echo "[test-chart] FAIL: $*" >&2; exit 1; }

cleanup() {
  if [ -n "$controller_pid" ] && kill -0 "$controller_pid" 2>/dev/null; then
    kill "$controller_pid" 2>/dev/null || true
    wait "$controller_pid" 2>/dev/null || true
  fi
  kubectl delete clusterrolebinding "$release" --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete clusterrole "$release" "$release-view" "$release-edit" "$release-admin" --ignore-not-found >/dev/null 2>&1 || true
  kubectl delete namespace "$ns" "$watched" --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

for tool in kubectl jq; do command -v "$tool" >/dev/null || die "$tool is required"; done
bin=$(hack/build-tools.sh helm helm-docs promtool) || bin=
if [ -z "${HELM:-}" ]; then
  if [ -x "$bin/helm" ]; then HELM=$bin/helm
  elif command -v helm >/dev/null; then HELM=helm
  else die "no helm: set HELM or run hack/build-tools.sh"; fi
fi
PROMTOOL=${PROMTOOL:-${bin:+$bin/promtool}}
kubectl get --raw /readyz >/dev/null 2>&1 || die "no API server at KUBECONFIG=$KUBECONFIG (run make cluster)"

# --- 1. CRDs as templates ----------------------------------------------------------------------
log "chart CRDs"
[ ! -e "$chart/crds" ] || fail "$chart/crds/ exists: Helm installs it once and never upgrades it; the CRDs are templates/crds.yaml (make crds)"
[ -s "$chart/templates/crds.yaml" ] || fail "$chart/templates/crds.yaml is missing (make crds)"

# The chart's README is generated from values.yaml's comments (make chart-docs).
HELM_DOCS=${HELM_DOCS:-${bin:+$bin/helm-docs}}
if [ -x "${HELM_DOCS:-}" ]; then
  log "chart README up to date with values.yaml (helm-docs)"
  "$HELM_DOCS" --chart-search-root "$chart" --dry-run --log-level warning >"$work/README.md"
  diff -u "$chart/README.md" "$work/README.md" >&2 ||
    fail "$chart/README.md is behind README.md.gotmpl or values.yaml: run make chart-docs"
else
  fail "no helm-docs: run hack/build-tools.sh"
fi

# --- 2. lint -----------------------------------------------------------------------------------
value_sets=(default)
for f in "$chart"/ci/*-values.yaml; do value_sets+=("$(basename "$f" -values.yaml)"); done
values_args() { [ "$1" = default ] || echo "--values=$chart/ci/$1-values.yaml"; }

for set in "${value_sets[@]}"; do
  log "helm lint ($set)"
  va=$(values_args "$set")
  "$HELM" lint --strict "$chart" ${va:+"$va"} >"$work/lint.log" 2>&1 \
    || { cat "$work/lint.log" >&2; fail "helm lint ($set)"; }
done

# --- 3. template -------------------------------------------------------------------------------
render() { # <value set> -> $work/<set>.yaml
  local va; va=$(values_args "$1")
  "$HELM" template "$release" "$chart" --namespace "$ns" ${va:+"$va"} >"$work/$1.yaml" 2>"$work/$1.err" \
    || { cat "$work/$1.err" >&2; fail "helm template ($1)"; return 1; }
}
for set in "${value_sets[@]}"; do log "helm template ($set)"; render "$set" || true; done

must_refuse() { # <what> <helm template args...>
  local what=$1; shift
  if "$HELM" template "$release" "$chart" --namespace "$ns" "$@" >/dev/null 2>"$work/refused.err"; then
    fail "helm template accepted $what"
  else
    log "refused as it should: $what ($(grep -o 'fail: .*\|Error: .*' "$work/refused.err" | head -1))"
  fi
}
must_refuse "2 replicas without leader election" --set leaderElection.enabled=false
must_refuse "an invalid Secret name in alertSecrets" --set 'alertSecrets={Not_A_Name}'
must_refuse "an unknown log format" --set log.format=xml
# values.schema.json: wrong types, unknown keys and enums fail the install instead of vanishing.
must_refuse "a misspelt top-level value (replicas)" --set replicas=3
must_refuse "replicaCount that is not a number" --set replicaCount=two
must_refuse "an unknown podAntiAffinity preset" --set podAntiAffinity=sometimes
must_refuse "an image digest that is not sha256" --set image.digest=md5:abc
must_refuse "a misspelt rbac value" --set rbac.aggregateToDefaultRole=false
must_refuse "a shard key that is not a DNS label" --set 'sharding.shards={Team_A}'

# --- 4. server-side dry-run --------------------------------------------------------------------
log "installing the CRDs (server-side apply)"
kubectl apply --server-side --force-conflicts -f crds/syncseq.dev_crds.yaml >/dev/null || die "applying the CRDs"
kubectl wait --for=condition=Established crd/syncs.syncseq.dev crd/syncsequences.syncseq.dev --timeout=60s >/dev/null
for n in "$ns" "$watched"; do
  # A namespace left Terminating by a previous run would refuse the dry-run's objects.
  if [ -n "$(kubectl get namespace "$n" -o jsonpath='{.metadata.deletionTimestamp}' 2>/dev/null)" ]; then
    log "waiting for the previous run's namespace $n to go"
    kubectl wait --for=delete "namespace/$n" --timeout=120s >/dev/null || die "namespace $n is stuck Terminating"
  fi
  kubectl get namespace "$n" >/dev/null 2>&1 || kubectl create namespace "$n" >/dev/null
done

for set in "${value_sets[@]}"; do
  [ -s "$work/$set.yaml" ] || continue
  if [ "$set" = servicemonitor ]; then
    # No monitoring.coreos.com CRDs here: the rest of this set is the default set (dry-run above);
    # check the ServiceMonitor's shape on the rendered text.
    va=$(values_args "$set")
    "$HELM" template "$release" "$chart" --namespace "$ns" ${va:+"$va"} \
      --show-only templates/servicemonitor.yaml >"$work/sm.yaml" 2>&1 || { cat "$work/sm.yaml" >&2; fail "rendering the ServiceMonitor"; continue; }
    for want in 'kind: ServiceMonitor' 'apiVersion: monitoring.coreos.com/v1' '- port: metrics' 'path: /metrics' \
      'app.kubernetes.io/instance: syncseq-chart-test' 'release: prometheus' "- $ns"; do
      grep -qF -- "$want" "$work/sm.yaml" || fail "servicemonitor: rendered ServiceMonitor lacks '$want'"
    done
    if grep -q '^kind: ServiceMonitor' "$work/default.yaml"; then fail "default: a ServiceMonitor is rendered although it is off by default"; fi
    if grep -q '^kind: PrometheusRule' "$work/default.yaml"; then fail "default: a PrometheusRule is rendered although it is off by default"; fi
    # The alerting rules: the PrometheusRule's spec is a Prometheus rule file; promtool checks
    # it and runs hack/testdata/prometheus-rules-test.yaml (a firing and a quiet case each).
    "$HELM" template "$release" "$chart" --namespace "$ns" ${va:+"$va"} \
      --show-only templates/prometheusrule.yaml >"$work/pr.yaml" 2>&1 || { cat "$work/pr.yaml" >&2; fail "rendering the PrometheusRule"; continue; }
    grep -qF 'release: prometheus' "$work/pr.yaml" || fail "servicemonitor: the PrometheusRule lacks its extra label"
    sed -n '/^spec:$/,$p' "$work/pr.yaml" | sed '1d; s/^  //' >"$work/rules.yaml"
    cp hack/testdata/prometheus-rules-test.yaml "$work/rules-test.yaml"
    if [ -x "${PROMTOOL:-}" ]; then
      log "promtool check rules and test rules"
      "$PROMTOOL" check rules "$work/rules.yaml" >"$work/promtool.log" 2>&1 || { cat "$work/promtool.log" >&2; fail "promtool check rules"; }
      (cd "$work" && "$PROMTOOL" test rules rules-test.yaml) >"$work/promtool.log" 2>&1 || { cat "$work/promtool.log" >&2; fail "promtool test rules"; }
    else
      fail "no promtool (hack/build-tools.sh builds it)"
    fi
    continue
  fi
  input=$work/$set.yaml
  log "server-side dry-run ($set)"
  if ! kubectl apply --dry-run=server -o json -f "$input" >"$work/$set.json" 2>"$work/$set.dryrun.err"; then
    cat "$work/$set.dryrun.err" >&2
    fail "server-side dry-run ($set)"
    continue
  fi
done

# --- 5. static checks on the objects as the API server returned them ---------------------------
items() { jq -c 'if .kind == "List" then .items[] else . end' "$work/$1.json"; }

check_rbac() { # <value set>
  local set=$1 bad
  bad=$(items "$set" | jq -r '
    select(.kind == "Role" or .kind == "ClusterRole") | . as $r | (.rules // [])[] |
    select(((.verbs // []) + (.resources // []) + (.apiGroups // []) + (.nonResourceURLs // [])) | index("*"))
    | "\($r.kind)/\($r.metadata.name): wildcard in \(tojson)"')
  [ -z "$bad" ] || fail "$set: $bad"
  bad=$(items "$set" | jq -r '
    select(.kind == "Role" or .kind == "ClusterRole") | . as $r | (.rules // [])[] |
    select((.resources // []) | any(. == "secrets" or startswith("secrets/"))) |
    select(.verbs != ["get"] or ((.resourceNames // []) | length) == 0 or .apiGroups != [""])
    | "\($r.kind)/\($r.metadata.name): Secret rule must be verb get with resourceNames: \(tojson)"')
  [ -z "$bad" ] || fail "$set: $bad"
  bad=$(items "$set" | jq -r '
    select(.kind == "Role" or .kind == "ClusterRole") | . as $r | (.rules // [])[] |
    select((.resources // []) | index("leases")) |
    select(((.resourceNames // []) | length) == 0 and .verbs != ["create"])
    | "\($r.kind)/\($r.metadata.name): Lease rule beyond create without resourceNames: \(tojson)"')
  [ -z "$bad" ] || fail "$set: $bad"
}

# jq assertion on the objects of a value set: expect <set> <description> <jq filter yielding true>
expect() {
  local set=$1 what=$2 filter=$3
  if ! jq -e -s "map(if .kind == \"List\" then .items[] else . end) | $filter" "$work/$set.json" >/dev/null; then
    fail "$set: $what"
  fi
}

deployment_checks() { # <value set>
  local set=$1 d='(map(select(.kind == "Deployment")) | .[0])' c='(map(select(.kind == "Deployment")) | .[0].spec.template.spec.containers[0])'
  expect "$set" "container securityContext hardened" "$c.securityContext | .runAsNonRoot == true and .runAsUser == 65532 and .readOnlyRootFilesystem == true and .allowPrivilegeEscalation == false and .capabilities.drop == [\"ALL\"] and .seccompProfile.type == \"RuntimeDefault\""
  expect "$set" "pod securityContext runAsNonRoot/65532/RuntimeDefault" "$d.spec.template.spec.securityContext | .runAsNonRoot == true and .runAsUser == 65532 and .seccompProfile.type == \"RuntimeDefault\""
  expect "$set" "liveness /healthz and readiness /readyz on the metrics port" "$c | .livenessProbe.httpGet.path == \"/healthz\" and .readinessProbe.httpGet.path == \"/readyz\" and .livenessProbe.httpGet.port == \"metrics\" and (.ports[] | select(.name == \"metrics\") | .containerPort) == 8080"
  expect "$set" "POD_NAME and POD_NAMESPACE from the downward API" "$c.env | (map(select(.name == \"POD_NAME\"))[0].valueFrom.fieldRef.fieldPath == \"metadata.name\") and (map(select(.name == \"POD_NAMESPACE\"))[0].valueFrom.fieldRef.fieldPath == \"metadata.namespace\")"
  expect "$set" "args start with controller and set --metrics-address" "$c.args | .[0] == \"controller\" and index(\"--metrics-address=0.0.0.0:8080\") != null"
  expect "$set" "resources set" "$c.resources.requests.memory != null and $c.resources.limits.memory != null"
  expect "$set" "metrics Service on port metrics" "map(select(.kind == \"Service\" and (.metadata.name | endswith(\"-metrics\"))))[0].spec.ports[0].targetPort == \"metrics\""
}

for set in "${value_sets[@]}"; do
  [ -s "$work/$set.json" ] || continue
  log "static checks ($set)"
  check_rbac "$set"
  deployment_checks "$set"
done

if [ -s "$work/receiver.json" ]; then
  r='(map(select(.kind == "Deployment"))[0].spec.template.spec.containers[0])'
  expect receiver "--receiver-address on port 9292, with its rate and burst" "$r.args | index(\"--receiver-address=0.0.0.0:9292\") != null and index(\"--receiver-rate=5\") != null and index(\"--receiver-burst=20\") != null"
  expect receiver "a webhook container port" "$r.ports | any(.name == \"webhook\" and .containerPort == 9292)"
  expect receiver "a webhook Service to every replica" 'map(select(.kind == "Service" and .metadata.name == "syncseq-chart-test-webhook"))[0].spec | .ports[0].targetPort == "webhook" and .selector["app.kubernetes.io/instance"] == "syncseq-chart-test"'
  expect receiver "an Ingress for /hook/ only, with TLS" 'map(select(.kind == "Ingress"))[0].spec | .rules[0].http.paths == [{"path": "/hook/", "pathType": "Prefix", "backend": {"service": {"name": "syncseq-chart-test-webhook", "port": {"name": "webhook"}}}}] and .tls[0].secretName == "hooks-tls" and .ingressClassName == "nginx"'
  expect receiver "get on the receivers' and the alert Secrets, by name" '[.[] | select(.kind == "ClusterRole") | .rules[] | select(.resources | index("secrets")) | .resourceNames] == [["slack-webhook", "dbt-cloud-webhook", "fivetran-webhook"]]'
fi
if [ -s "$work/default.json" ]; then
  expect default "no webhook endpoint unless asked for" 'map(select(.kind == "Ingress" or (.kind == "Service" and (.metadata.name | endswith("-webhook"))))) | length == 0'
  expect default "2 replicas" 'map(select(.kind == "Deployment"))[0].spec.replicas == 2'
  expect default "a PodDisruptionBudget with minAvailable 1" 'map(select(.kind == "PodDisruptionBudget"))[0].spec.minAvailable == 1'
  expect default "ClusterRole + ClusterRoleBinding, no namespaced controller Role" 'any(.kind == "ClusterRole") and any(.kind == "ClusterRoleBinding") and (map(select(.kind == "Role")) | map(.metadata.name) == ["syncseq-chart-test-leader-election"])'
  expect default "no Secret rule without alertSecrets" '[.[] | select(.kind == "ClusterRole" or .kind == "Role") | .rules[] | select(.resources | index("secrets"))] | length == 0'
  expect default "view, edit and admin ClusterRoles aggregated into the default roles" '[.[] | select(.kind == "ClusterRole" and .metadata.labels["rbac.authorization.k8s.io/aggregate-to-admin"] == "true") | .metadata.name] | sort == ["syncseq-chart-test-admin", "syncseq-chart-test-edit", "syncseq-chart-test-view"]'
  expect default "leader election flags" 'map(select(.kind == "Deployment"))[0].spec.template.spec.containers[0].args | index("--leader-election") != null and index("--lease-name=syncseq-controller") != null and index("--lease-namespace=syncseq-chart-test") != null'
  expect default "no --namespace flag" 'map(select(.kind == "Deployment"))[0].spec.template.spec.containers[0].args | map(select(startswith("--namespace"))) | length == 0'
  expect default "Lease Role in the release namespace" 'map(select(.kind == "Role" and .metadata.name == "syncseq-chart-test-leader-election"))[0].metadata.namespace == "syncseq-chart-test"'
fi
if [ -s "$work/namespaced.json" ]; then
  expect namespaced "no cluster-scoped RBAC" 'all(.kind != "ClusterRole" and .kind != "ClusterRoleBinding")'
  expect namespaced "controller Role and RoleBinding in the watched namespace" "any(.kind == \"Role\" and .metadata.namespace == \"$watched\") and any(.kind == \"RoleBinding\" and .metadata.namespace == \"$watched\" and .subjects[0].namespace == \"$ns\")"
  expect namespaced "--namespace flag" "map(select(.kind == \"Deployment\"))[0].spec.template.spec.containers[0].args | index(\"--namespace=$watched\") != null"
  expect namespaced "Secret get limited to alertSecrets" '[.[] | select(.kind == "Role") | .rules[] | select(.resources | index("secrets"))] == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["slack-webhook", "oncall-webhook"], "verbs": ["get"]}]'
fi
if [ -s "$work/egress.json" ]; then
  expect egress "--webhook-allow per allowed entry" 'map(select(.kind == "Deployment"))[0].spec.template.spec.containers[0].args | index("--webhook-allow=169.254.1.1/32") != null and index("--webhook-allow=receiver.internal") != null'
  expect egress "--webhook-ca-bundle from the mounted ConfigMap" 'map(select(.kind == "Deployment"))[0].spec.template.spec | (.containers[0].args | index("--webhook-ca-bundle=/etc/syncseq/webhook-ca/ca.crt") != null) and (.containers[0].volumeMounts | any(.name == "webhook-ca" and .mountPath == "/etc/syncseq/webhook-ca" and .readOnly)) and (.volumes | any(.name == "webhook-ca" and .configMap.name == "corporate-ca"))'
  expect egress "HTTPS_PROXY and NO_PROXY in the environment" 'map(select(.kind == "Deployment"))[0].spec.template.spec.containers[0].env | (map(select(.name == "HTTPS_PROXY"))[0].value == "http://proxy.internal:3128") and (map(select(.name == "NO_PROXY"))[0].value == ".cluster.local,10.0.0.0/8") and (map(select(.name == "HTTP_PROXY")) | length == 0)'
  expect egress "egress NetworkPolicy without link-local" 'map(select(.kind == "NetworkPolicy"))[0].spec | .policyTypes == ["Egress"] and (.egress[0].to | map(.ipBlock.except[0]) == ["169.254.0.0/16", "fe80::/10"])'
fi
if [ -s "$work/default.json" ]; then
  expect default "no NetworkPolicy by default" 'all(.kind != "NetworkPolicy")'
fi
if [ -s "$work/alert-secrets.json" ]; then
  expect alert-secrets "ClusterRole gets exactly the alertSecrets" '[.[] | select(.kind == "ClusterRole") | .rules[] | select(.resources | index("secrets"))] == [{"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["slack-webhook"], "verbs": ["get"]}]'
fi
if [ -s "$work/extras.json" ]; then
  expect extras "the Grafana dashboard ConfigMap: sidecar label, folder annotation, the dashboard as JSON" 'map(select(.kind == "ConfigMap" and (.metadata.name | endswith("-dashboard"))))[0] | .metadata.labels.grafana_dashboard == "1" and .metadata.annotations.grafana_folder == "Data platform" and (.data["syncseq.json"] | fromjson | .uid == "syncseq-overview" and (.panels | length) > 10)'
  if grep -q 'syncseq-dashboard' "$work/default.yaml"; then fail "default: the dashboard ConfigMap is rendered although it is off by default"; fi
  expect extras "extra volumes, mounts, env, args, pull secrets, priority class and spread" 'map(select(.kind == "Deployment"))[0].spec.template.spec as $p | $p.volumes[0].configMap.name == "corp-ca" and $p.containers[0].volumeMounts[0].mountPath == "/etc/ssl/corp" and ($p.containers[0].env | map(.name) | index("SSL_CERT_FILE")) != null and ($p.containers[0].args | index("--concurrent-reconciles=32")) != null and $p.imagePullSecrets == [{"name": "regcred"}] and $p.priorityClassName == "system-cluster-critical" and $p.topologySpreadConstraints[0].topologyKey == "topology.kubernetes.io/zone"'
fi
if [ -s "$work/single-replica.json" ]; then
  expect single-replica "no PDB and no Lease Role with one replica and no leader election" 'all(.kind != "PodDisruptionBudget") and all(.kind != "Role")'
  expect single-replica "--no-leader-election" 'map(select(.kind == "Deployment"))[0].spec.template.spec.containers[0].args | index("--no-leader-election") != null'
fi
if [ -s "$work/sharded.json" ]; then
  expect sharded "a Deployment and a PDB per shard and for the remainder, each with its --shard-selector" '(map(select(.kind == "Deployment")) | map({(.metadata.name): (.spec.template.spec.containers[0].args | map(select(startswith("--shard-selector"))))}) | add) == {"syncseq-chart-test": ["--shard-selector=!sharding.syncseq.dev/shard"], "syncseq-chart-test-shard-a": ["--shard-selector=sharding.syncseq.dev/shard=a"], "syncseq-chart-test-shard-b": ["--shard-selector=sharding.syncseq.dev/shard=b"]} and (map(select(.kind == "PodDisruptionBudget")) | length == 3)'
  # The names the controller derives (src/leader lease_name, pinned by its unit test for a).
  expect sharded "the Lease Role names each shard's Lease" '[.[] | select(.kind == "Role") | .rules[] | select(.resourceNames) | .resourceNames] == [["syncseq-controller-3786559e74", "syncseq-controller-f62d5a33d4", "syncseq-controller-da463fc0dc"]]'
fi

# --- 6. real RBAC, checked with kubectl auth can-i ---------------------------------------------
rbac_only() { # <value set>: the ServiceAccount and RBAC objects of the rendered set
  items "$1" | jq -c 'select(.kind | IN("ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"))
    | del(.metadata.creationTimestamp, .metadata.uid, .metadata.resourceVersion, .metadata.managedFields)'
}
can() { # <yes|no> <kubectl auth can-i args...>
  local want=$1; shift
  local got
  got=$(kubectl auth can-i --as="$sa" "$@" 2>/dev/null || true)
  [ "$got" = "$want" ] || fail "can-i $* as the ServiceAccount: got '${got:-error}', want '$want'"
}
common_denials() { # <namespace of sequences>
  local n=$1
  can no list secrets -n "$n"
  can no watch secrets -n "$n"
  can no get secrets -n "$n"
  can no get secrets/some-other-secret -n "$n"
  can no update syncsequences.syncseq.dev -n "$n"
  can no delete syncsequences.syncseq.dev -n "$n"
  can no create pods -n "$n"
  can no update jobs.batch -n "$n"
  can no delete leases.coordination.k8s.io/syncseq-controller -n "$ns"
  can no update leases.coordination.k8s.io/another-lease -n "$ns"
  can no create leases.coordination.k8s.io -n "$n"
  can no list customresourcedefinitions.apiextensions.k8s.io
}
controller_grants() { # <namespace of sequences>
  local n=$1
  for r in syncsequences.syncseq.dev syncs.syncseq.dev; do
    for v in get list watch; do can yes "$v" "$r" -n "$n"; done
    can yes patch "$r" --subresource=status -n "$n"
  done
  for v in get list watch; do can yes "$v" webhookreceivers.syncseq.dev -n "$n"; done
  for v in get update patch; do can yes "$v" webhookreceivers.syncseq.dev --subresource=status -n "$n"; done
  can no update webhookreceivers.syncseq.dev -n "$n"
  for v in get list watch create delete; do can yes "$v" jobs.batch -n "$n"; done
  for v in get list watch; do can yes "$v" pods -n "$n"; done
  for v in create patch; do can yes "$v" events.events.k8s.io -n "$n"; done
  can yes create leases.coordination.k8s.io -n "$ns"
  for v in get update patch; do can yes "$v" leases.coordination.k8s.io/syncseq-controller -n "$ns"; done
}

if [ -s "$work/default.json" ]; then
  log "real RBAC, cluster-wide (default values)"
  rbac_only default | kubectl apply -f - >/dev/null || fail "applying the default RBAC"
  controller_grants "$watched"
  controller_grants default
  common_denials "$watched"
  can no get secrets/slack-webhook -n "$watched"

  log "aggregated roles: users with view, edit and admin in a namespace"
  for who in view edit admin; do
    kubectl -n "$watched" create serviceaccount "user-$who" >/dev/null 2>&1 || true
    kubectl -n "$watched" create rolebinding "user-$who" --clusterrole="$who" \
      --serviceaccount="$watched:user-$who" >/dev/null 2>&1 || true
  done
  user_can() { # <who> <yes|no> <kubectl auth can-i args...>
    local who=$1 want=$2; shift 2
    local got
    got=$(kubectl auth can-i --as="system:serviceaccount:$watched:user-$who" -n "$watched" "$@" 2>/dev/null || true)
    [ "$got" = "$want" ] || fail "can-i $* as a user with $who: got '${got:-error}', want '$want'"
  }
  # kube-controller-manager aggregates the rules into the default roles in the background (and
  # a previous run's may still be there): wait until each default role holds exactly ours.
  rules_of() { kubectl get clusterrole "$@" -o json | jq -c '[(.items // [.])[] | .rules[]] | unique'; }
  aggregated() { kubectl get clusterrole "$1" -o json | jq -c '[.rules[] | select(.apiGroups == ["syncseq.dev"])] | unique'; }
  aggregation_done() {
    [ "$(aggregated view)" = "$(rules_of "$release-view")" ] &&
      [ "$(aggregated edit)" = "$(rules_of "$release-view" "$release-edit")" ] &&
      [ "$(aggregated admin)" = "$(rules_of "$release-view" "$release-edit" "$release-admin")" ]
  }
  deadline=$((SECONDS + 30))
  until aggregation_done || [ $SECONDS -ge $deadline ]; do sleep 0.5; done
  aggregation_done || fail "the default view, edit and admin roles did not take in syncseq's rules within 30 s"
  for r in syncsequences.syncseq.dev syncs.syncseq.dev webhookreceivers.syncseq.dev; do
    for who in view edit admin; do
      for v in get list watch; do user_can "$who" yes "$v" "$r"; done
      user_can "$who" no patch "$r" --subresource=status
    done
    for v in create update patch delete; do
      user_can view no "$v" "$r"
      user_can edit yes "$v" "$r"
      user_can admin yes "$v" "$r"
    done
    user_can edit no deletecollection "$r"
    user_can admin yes deletecollection "$r"
  done
  user_can view no get syncsequences.syncseq.dev -n default
  for who in view edit admin; do
    kubectl -n "$watched" delete rolebinding "user-$who" --ignore-not-found >/dev/null
    kubectl -n "$watched" delete serviceaccount "user-$who" --ignore-not-found >/dev/null
  done
  kubectl delete clusterrolebinding "$release" --ignore-not-found >/dev/null
  kubectl delete clusterrole "$release" "$release-view" "$release-edit" "$release-admin" --ignore-not-found >/dev/null
fi
if [ -s "$work/namespaced.json" ]; then
  log "real RBAC, namespace-scoped (ci/namespaced-values.yaml)"
  rbac_only namespaced | kubectl apply -f - >/dev/null || fail "applying the namespaced RBAC"
  controller_grants "$watched"
  common_denials "$watched"
  can yes get secrets/slack-webhook -n "$watched"
  can yes get secrets/oncall-webhook -n "$watched"
  can no get secrets/slack-webhook -n default
  can no list syncsequences.syncseq.dev -n default
  can no list syncsequences.syncseq.dev --all-namespaces
  can no create jobs.batch -n default
fi

# Applies examples/crm-hourly.yaml in <namespace>, requests a run and prints its result once it
# ended (empty after 90 s, or when the controller <pid> exits).
run_crm_once() { # <namespace> <controller pid>
  local n=$1 pid=$2 req deadline result=
  kubectl -n "$n" apply --server-side -f examples/crm-hourly.yaml >/dev/null
  req=$(date +%s)
  kubectl -n "$n" annotate syncsequence crm-hourly "syncseq.dev/requestedAt=$req" --overwrite >/dev/null
  deadline=$((SECONDS + 90))
  while [ $SECONDS -lt $deadline ]; do
    result=$(kubectl -n "$n" get syncsequence crm-hourly -o json \
      | jq -r "select(.status.lastHandledRequestAt == \"$req\" and .status.currentRun == null) | .status.lastRunResult // empty")
    [ -n "$result" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "$result"
}

# --- 7. optional: the controller itself, with only the ServiceAccount's rights -------------------
if [ -n "${SYNCSEQ_BIN:-}" ] && [ -s "$work/namespaced.json" ] && [ "$failures" -eq 0 ]; then
  log "running $SYNCSEQ_BIN as $sa in namespace $watched"
  sakube=$work/sa.kubeconfig
  hack/sa-kubeconfig.sh "$ns" "$release" "$sakube" 10m
  KUBECONFIG=$sakube "$SYNCSEQ_BIN" controller --namespace "$watched" --lease-namespace "$ns" --metrics-address 127.0.0.1:0 >"$work/controller.log" 2>&1 &
  controller_pid=$!
  result=$(run_crm_once "$watched" "$controller_pid")
  if [ "$result" != Succeeded ]; then
    tail -n 30 "$work/controller.log" >&2
    fail "controller with the chart's namespaced RBAC: run result '${result:-none}', want Succeeded"
  else
    log "controller with the chart's namespaced RBAC completed a run: $result"
  fi
  if grep -qi "forbidden" "$work/controller.log"; then
    grep -i forbidden "$work/controller.log" | head -5 >&2
    fail "the controller hit 403 Forbidden with the chart's RBAC"
  fi
fi

# --- 8. CRDs that upgrade ---------------------------------------------------------------------
up=syncseq-upgrade-test
if [ "$failures" -eq 0 ]; then
  log "CRD upgrade: release N-1 (no WebhookReceiver, no SyncSequence spec.after) to this chart"
  # Release N-1: this chart with the CRDs of a release that had neither.
  prev=$work/chart-prev
  cp -r "$chart" "$prev"
  "$HELM" template "$up" "$chart" --namespace "$up" --show-only templates/crds.yaml >"$work/crds-now.yaml"
  kubectl create --dry-run=client -o json -f "$work/crds-now.yaml" | jq -c '
    (if .kind == "List" then .items[] else . end)
    | select(.spec.names.kind != "WebhookReceiver")
    | if .spec.names.kind == "SyncSequence"
      then del(.spec.versions[].schema.openAPIV3Schema.properties.spec.properties.after) else . end' \
    | sed '1!s/^/---\n/' >"$prev/templates/crds.yaml"
  # A cluster that never had syncseq: no CRDs (deleting them deletes every syncseq object).
  kubectl delete crd syncs.syncseq.dev syncsequences.syncseq.dev webhookreceivers.syncseq.dev \
    --ignore-not-found --timeout=180s >/dev/null || die "deleting the CRDs"
  kubectl get namespace "$up" >/dev/null 2>&1 || kubectl create namespace "$up" >/dev/null
  "$HELM" uninstall "$up" --namespace "$up" >/dev/null 2>&1 || true
  "$HELM" install "$up" "$prev" --namespace "$up" --set replicaCount=1 >"$work/helm.log" 2>&1 \
    || { cat "$work/helm.log" >&2; die "helm install of release N-1"; }
  kubectl wait --for=condition=Established crd/syncs.syncseq.dev crd/syncsequences.syncseq.dev --timeout=60s >/dev/null
  after_seq='{"apiVersion": "syncseq.dev/v1alpha1", "kind": "SyncSequence", "metadata": {"name": "after-load"},
    "spec": {"after": {"upstreams": [{"kind": "SyncSequence", "name": "load"}]}, "steps": [{"name": "a", "syncRef": {"name": "a"}}]}}'
  if echo "$after_seq" | kubectl apply --dry-run=server --validate=strict -n "$up" -f - >/dev/null 2>"$work/after.err"; then
    fail "release N-1 serves spec.after already: the upgrade test proves nothing"
  fi
  kubectl get crd webhookreceivers.syncseq.dev >/dev/null 2>&1 && fail "release N-1 has the WebhookReceiver CRD"

  if [ -n "${SYNCSEQ_BIN:-}" ]; then
    # Rolling forward before the CRDs: this controller on N-1's CRDs works without receivers.
    "$SYNCSEQ_BIN" controller --namespace "$up" --no-leader-election --metrics-address 127.0.0.1:0 >"$work/n-1.log" 2>&1 &
    pid=$!
    result=$(run_crm_once "$up" "$pid")
    [ "$result" = Succeeded ] || { tail -n 30 "$work/n-1.log" >&2; fail "this controller on N-1's CRDs: run result '${result:-none}', want Succeeded"; }
    grep -q "the WebhookReceiver CRD is not installed" "$work/n-1.log" || fail "this controller on N-1's CRDs did not say the WebhookReceiver CRD is missing"
    # Its /metrics after a run: per-sequence series, and what promtool's linter says of them.
    address=$(sed -n 's/.*serving \/metrics.*address=\([^ ]*\).*/\1/p' "$work/n-1.log" | tail -1)
    curl -sf "http://$address/metrics" >"$work/metrics.txt" || fail "reading /metrics of this controller"
    for want in "syncseq_last_success_timestamp_seconds{kind=\"SyncSequence\",namespace=\"$up\",name=\"crm-hourly\"}" \
      "syncseq_last_run_outcome{kind=\"SyncSequence\",namespace=\"$up\",name=\"crm-hourly\",outcome=\"Succeeded\"} 1" \
      "syncseq_schedule_interval_seconds{kind=\"SyncSequence\",namespace=\"$up\",name=\"crm-hourly\"} 3600" \
      "syncseq_runs_total{kind=\"SyncSequence\",namespace=\"$up\",name=\"crm-hourly\",outcome=\"Succeeded\"} 1" \
      'syncseq_leader 1' 'syncseq_build_info{version='; do
      grep -qF -- "$want" "$work/metrics.txt" || fail "/metrics lacks '$want'"
    done
    if [ -x "${PROMTOOL:-}" ]; then
      "$PROMTOOL" check metrics <"$work/metrics.txt" >"$work/promtool.log" 2>&1 || { cat "$work/promtool.log" >&2; fail "promtool check metrics"; }
    fi
    kill -TERM "$pid"
    deadline=$((SECONDS + 15))
    while kill -0 "$pid" 2>/dev/null && [ $SECONDS -lt $deadline ]; do sleep 0.2; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid"
      fail "this controller on N-1's CRDs did not stop within 15 s of SIGTERM"
    fi
    log "this controller on N-1's CRDs completed a run ($result) and stopped on SIGTERM"
  fi

  "$HELM" upgrade "$up" "$chart" --namespace "$up" --set replicaCount=1 >"$work/helm.log" 2>&1 \
    || { cat "$work/helm.log" >&2; fail "helm upgrade to this chart"; }
  kubectl wait --for=condition=Established crd/webhookreceivers.syncseq.dev --timeout=60s >/dev/null \
    || fail "after helm upgrade: the WebhookReceiver CRD is not established"
  if ! echo "$after_seq" | kubectl apply --dry-run=server --validate=strict -n "$up" -f - >/dev/null 2>"$work/after.err"; then
    cat "$work/after.err" >&2
    fail "after helm upgrade: spec.after is not served"
  fi
  "$HELM" uninstall "$up" --namespace "$up" >/dev/null || fail "helm uninstall"
  for c in syncs syncsequences webhookreceivers; do
    kubectl get crd "$c.syncseq.dev" >/dev/null 2>&1 || fail "helm uninstall deleted crd/$c.syncseq.dev (crds.keep)"
  done
  [ "$failures" -eq 0 ] && log "helm upgrade brought the new CRD and field; uninstall kept the CRDs"
fi
# Leave this chart's CRDs as the tests install them, whatever happened above.
kubectl apply --server-side --force-conflicts -f crds/syncseq.dev_crds.yaml >/dev/null || fail "reinstalling the CRDs"
kubectl delete namespace "$up" --ignore-not-found --wait=false >/dev/null 2>&1 || true

if [ "$failures" -ne 0 ]; then
  echo "[test-chart] $failures check(s) FAILED" >&2
  exit 1
fi
log "all chart checks passed"
