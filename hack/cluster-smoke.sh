#!/usr/bin/env bash
# Smoke test of the running local control plane (start it with `make cluster`): readiness, batch
# API, Job success/failure through the sim.syncseq.dev annotations, garbage collection, CronJob
# scheduling and RBAC. Works in a throw-away namespace; takes up to ~70 s (the CronJob check).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
export KUBECONFIG=${KUBECONFIG:-$root/.cluster/kubeconfig}
ns=smoke-$$-$RANDOM
failures=0
pass() { echo "ok   $*"; }
bad() { echo "FAIL $*"; failures=$((failures + 1)); }
k() { kubectl --request-timeout=10s "$@"; }
cleanup() { k delete namespace "$ns" --wait=false >/dev/null 2>&1 || true; }
trap cleanup EXIT

[ "$(k get --raw /readyz)" = ok ] && pass "/readyz ok" || bad "/readyz"
k api-resources --api-group=batch --no-headers | grep -q '^cronjobs .*batch/v1' &&
  k api-resources --api-group=batch --no-headers | grep -q '^jobs .*batch/v1' &&
  pass "batch/v1 jobs and cronjobs served" || bad "batch/v1 jobs/cronjobs missing"
k create namespace "$ns" >/dev/null

job() { # name [annotations-json] [ownerReferences-json]
  local annotations=${2:-} owners=${3:-}
  [ -n "$annotations" ] || annotations='{}'
  [ -n "$owners" ] || owners='[]'
  cat <<EOF
{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"$1","namespace":"$ns","ownerReferences":$owners},
 "spec":{"backoffLimit":0,"template":{"metadata":{"annotations":$annotations},
 "spec":{"restartPolicy":"Never","containers":[{"name":"sync","image":"example.com/sync:1"}]}}}}
EOF
}

# Success without annotations.
job plain | k apply -f - >/dev/null
if k -n "$ns" wait --for=condition=Complete job/plain --timeout=60s >/dev/null; then
  phase=$(k -n "$ns" get pod -l job-name=plain -o jsonpath='{.items[0].status.phase}')
  [ "$phase" = Succeeded ] && pass "plain Job Complete, Pod Succeeded" || bad "plain Job Pod phase $phase"
else bad "plain Job did not complete"; fi

# Failure with exit code and message.
msg='{"rowsSynced":5,"rowsRejected":2,"message":"boom"}'
ann=$(printf '{"sim.syncseq.dev/exit-code":"3","sim.syncseq.dev/message":%s}' "$(printf '%s' "$msg" | sed 's/\\/\\\\/g; s/"/\\"/g; s/^/"/; s/$/"/')")
job failing "$ann" | k apply -f - >/dev/null
if k -n "$ns" wait --for=condition=Failed job/failing --timeout=60s >/dev/null; then
  code=$(k -n "$ns" get pod -l job-name=failing -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.exitCode}')
  got=$(k -n "$ns" get pod -l job-name=failing -o jsonpath='{.items[0].status.containerStatuses[0].state.terminated.message}')
  phase=$(k -n "$ns" get pod -l job-name=failing -o jsonpath='{.items[0].status.phase}')
  [ "$code" = 3 ] && [ "$got" = "$msg" ] && [ "$phase" = Failed ] &&
    pass "failing Job Failed, Pod Failed, exitCode 3, message exact" ||
    bad "failing Job: phase=$phase exitCode=$code message=$got"
else bad "failing Job did not fail"; fi

# Garbage collection through an ownerReference to a ConfigMap.
k -n "$ns" create configmap owner >/dev/null
uid=$(k -n "$ns" get configmap owner -o jsonpath='{.metadata.uid}')
job owned '{"sim.syncseq.dev/duration":"1h"}' "[{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"name\":\"owner\",\"uid\":\"$uid\"}]" | k apply -f - >/dev/null
for _ in $(seq 1 40); do [ -n "$(k -n "$ns" get pods -l job-name=owned --no-headers 2>/dev/null)" ] && break; sleep 0.25; done
k -n "$ns" delete configmap owner >/dev/null
gone=
for _ in $(seq 1 120); do
  if [ -z "$(k -n "$ns" get job/owned --ignore-not-found --no-headers)" ] &&
    [ -z "$(k -n "$ns" get pods -l job-name=owned --no-headers 2>/dev/null)" ]; then gone=1; break; fi
  sleep 0.25
done
[ -n "$gone" ] && pass "deleting the owner ConfigMap collected the Job and its Pods" || bad "garbage collection"

# RBAC: a ServiceAccount without roles may not list Jobs.
k -n "$ns" create serviceaccount nobody >/dev/null
token=$(k -n "$ns" create token nobody)
server=$(k config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')
status=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$root/.cluster/pki/ca.crt" \
  -H "Authorization: Bearer $token" "$server/apis/batch/v1/namespaces/$ns/jobs")
[ "$status" = 403 ] && pass "token of a ServiceAccount without roles gets 403 listing jobs" || bad "ServiceAccount token got HTTP $status"

# CronJob every minute creates a Job within 70 s.
k -n "$ns" create cronjob every-minute --image=example.com/sync:1 --schedule='* * * * *' >/dev/null
start=$(date +%s)
until [ -n "$(k -n "$ns" get jobs --no-headers 2>/dev/null | grep every-minute || true)" ]; do
  [ $(($(date +%s) - start)) -lt 70 ] || break
  sleep 1
done
[ -n "$(k -n "$ns" get jobs --no-headers | grep every-minute || true)" ] &&
  pass "CronJob created a Job after $(($(date +%s) - start)) s" || bad "CronJob created no Job within 70 s"

echo "$((7 - failures)) passed, $failures failed"
[ "$failures" = 0 ]
