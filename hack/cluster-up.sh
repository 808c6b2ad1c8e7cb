#!/usr/bin/env bash
# Starts syncseq's local Kubernetes control plane as plain processes (no containers):
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok with two fake nodes.
# Binaries come from hack/build-tools.sh (built from the pinned Go modules when missing).
#
# Idempotent: when the cluster recorded in .cluster/ is running and healthy it is reused.
# Stale state (a crashed or half-started cluster) is stopped and removed first.
# Prints the admin kubeconfig path (.cluster/kubeconfig) on stdout; progress goes to stderr.
#
# Environment:
#   SYNCSEQ_CLUSTER_DIR      state dir (default <repo>/.cluster)
#   SYNCSEQ_CLUSTER_TIMEOUT  seconds to wait for readiness (default 180)
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=cluster-lib.sh
source "$(cd "$(dirname "$0")" && pwd)/cluster-lib.sh"

timeout=${SYNCSEQ_CLUSTER_TIMEOUT:-180}
service_cidr=10.96.0.0/16
kubernetes_service_ip=10.96.0.1
sa_issuer=https://kubernetes.default.svc.cluster.local
kubeconfig=$state/kubeconfig

for tool in openssl curl; do
  if ! command -v "$tool" >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing $tool with apt-get"
    { apt-get install -y "$tool" || { apt-get update && apt-get install -y "$tool"; }; } >&2
  fi
done
for tool in openssl kubectl curl setsid pgrep flock; do
  command -v "$tool" >/dev/null || die "$tool is required (packages: openssl, curl, util-linux, procps; kubectl)"
done

# One cluster-up/-down at a time per state dir. The lock fd is closed for the components.
exec 9>"$state/.lock"
flock 9

k() { kubectl --kubeconfig="$kubeconfig" --request-timeout=5s "$@"; }

all_alive() {
  local c
  for c in "${components[@]}"; do alive "$c" || return 1; done
}

ready() { # quiet check of the whole readiness condition
  [ "$(k get --raw /readyz 2>/dev/null)" = ok ] || return 1
  k -n default get serviceaccount default >/dev/null 2>&1 || return 1
  local st
  st=$(k get node kwok-node-0 kwok-node-1 \
    -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{" "}{end}' 2>/dev/null) || return 1
  [ "$st" = "True True " ]
}

start_time=$(date +%s)
bin=$("$hack_dir/build-tools.sh") || die "hack/build-tools.sh failed"
# What the cluster is started with besides the binaries: a running cluster set up by another
# version of this script or of the kwok stages is restarted.
setup=$(cat "$hack_dir/cluster-up.sh" "$hack_dir"/kwok/*.yaml | sha256sum | cut -c1-16)
for p in "${components[@]}"; do [ -x "$bin/$p" ] || die "$bin/$p missing"; done

# ---- reuse a running cluster --------------------------------------------------------------
# Only when it runs the binaries of the current pins (hack/versions.env) and is healthy.
if [ -f "$kubeconfig" ] && all_alive; then
  if ! grep -qxF "BIN=$bin" "$state/env" 2>/dev/null; then
    log "the running cluster uses other binaries than the current pins; restarting it"
  elif ! grep -qxF "SETUP=$setup" "$state/env" 2>/dev/null; then
    log "the running cluster was set up by another version of hack/; restarting it"
  else
    # A node may be briefly NotReady (e.g. a late lease renewal): give it the usual deadline.
    reuse_deadline=$(($(date +%s) + timeout))
    until ready || [ "$(date +%s)" -ge "$reuse_deadline" ] || ! all_alive; do sleep 0.5; done
    if ready; then
      log "reusing the running cluster (state in $state)"
      echo "$kubeconfig"
      exit 0
    fi
    log "the running cluster did not become ready; restarting it"
  fi
fi
if [ -d "$state/pids" ] || [ -n "$(stray_pids)" ]; then
  log "cleaning up stale cluster state"
  stop_all || die "could not stop the old cluster's processes"
fi
clean_state
log "binaries: $bin"

mkdir -p "$state"/{pids,logs,pki,config,etcd,kwok}
chmod 700 "$state/pki" "$state/etcd"

# ---- free loopback ports ------------------------------------------------------------------
# Picked at random below the ephemeral range (so outgoing connections don't take them) among
# ports nobody listens on (/proc/net/tcp{,6}, state 0A = LISTEN).
chosen=" "
free_port() {
  local used=" " port i f local_addr st
  for f in /proc/net/tcp /proc/net/tcp6; do
    [ -r "$f" ] || continue
    while read -r _ local_addr _ st _; do
      [ "$st" = 0A ] && used+="$((16#${local_addr##*:})) "
    done < <(tail -n +2 "$f")
  done
  for ((i = 0; i < 1000; i++)); do
    port=$((20000 + RANDOM % 12000))
    [[ " $used " == *" $port "* || "$chosen" == *" $port "* ]] && continue
    chosen+="$port "
    echo "$port"
    return 0
  done
  die "no free port found"
}
etcd_port=$(free_port); chosen+="$etcd_port "
etcd_peer_port=$(free_port); chosen+="$etcd_peer_port "
apiserver_port=$(free_port); chosen+="$apiserver_port "
kcm_port=$(free_port); chosen+="$kcm_port "
scheduler_port=$(free_port); chosen+="$scheduler_port "
kwok_port=$(free_port); chosen+="$kwok_port "
server=https://127.0.0.1:$apiserver_port
cat >"$state/env" <<EOF
BIN=$bin
SETUP=$setup
AUDIT_LOG=$state/logs/audit.log
ETCD_PORT=$etcd_port
ETCD_PEER_PORT=$etcd_peer_port
APISERVER_PORT=$apiserver_port
APISERVER_URL=$server
KUBE_CONTROLLER_MANAGER_PORT=$kcm_port
KUBE_SCHEDULER_PORT=$scheduler_port
KWOK_PORT=$kwok_port
EOF

# ---- PKI ----------------------------------------------------------------------------------
pki=$state/pki
log "generating PKI in $pki"
ossl() { openssl "$@" 2>>"$state/logs/pki.log" >/dev/null || die "openssl $1 failed (see $state/logs/pki.log)"; }
: >"$state/logs/pki.log"
new_ca() { # name cn
  ossl ecparam -name prime256v1 -genkey -noout -out "$pki/$1.key"
  ossl req -x509 -new -key "$pki/$1.key" -sha256 -days 3650 -subj "/CN=$2" -out "$pki/$1.crt" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"
}
new_cert() { # name ca subject extendedKeyUsage [subjectAltName]
  local ext="$pki/$1.ext"
  {
    echo "basicConstraints=critical,CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=$4"
    [ -n "${5:-}" ] && echo "subjectAltName=$5"
  } >"$ext"
  ossl ecparam -name prime256v1 -genkey -noout -out "$pki/$1.key"
  ossl req -new -key "$pki/$1.key" -subj "$3" -out "$pki/$1.csr"
  ossl x509 -req -in "$pki/$1.csr" -CA "$pki/$2.crt" -CAkey "$pki/$2.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$pki/$1.crt"
  rm -f "$pki/$1.csr" "$ext"
}
new_ca ca syncseq-local-ca
new_ca etcd-ca syncseq-local-etcd-ca
new_ca front-proxy-ca syncseq-local-front-proxy-ca
new_cert apiserver ca "/CN=kube-apiserver" serverAuth \
  "DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:$kubernetes_service_ip"
new_cert admin ca "/O=system:masters/CN=syncseq-admin" clientAuth
new_cert kube-controller-manager ca "/CN=system:kube-controller-manager" clientAuth
new_cert kube-scheduler ca "/CN=system:kube-scheduler" clientAuth
new_cert kwok ca "/O=system:masters/CN=kwok" clientAuth
new_cert etcd-server etcd-ca "/CN=etcd" serverAuth,clientAuth "DNS:localhost,IP:127.0.0.1"
new_cert apiserver-etcd-client etcd-ca "/CN=kube-apiserver-etcd-client" clientAuth
new_cert front-proxy-client front-proxy-ca "/CN=front-proxy-client" clientAuth
ossl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$pki/sa.key"
ossl pkey -in "$pki/sa.key" -pubout -out "$pki/sa.pub"
chmod 600 "$pki"/*.key

write_kubeconfig() { # file user cert-name
  cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: syncseq
  cluster:
    server: $server
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$3.crt")
    client-key-data: $(base64 -w0 <"$pki/$3.key")
contexts:
- name: syncseq
  context:
    cluster: syncseq
    user: $2
current-context: syncseq
EOF
  chmod 600 "$1"
}
write_kubeconfig "$state/config/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
write_kubeconfig "$state/config/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler
write_kubeconfig "$state/config/kwok.kubeconfig" kwok kwok

# ---- processes ----------------------------------------------------------------------------
start() { # name args... : own session (PID == PGID), output to logs/<name>.log
  local name=$1
  shift
  : >"$state/logs/$name.log"
  setsid "$bin/$name" "$@" </dev/null >>"$state/logs/$name.log" 2>&1 9>&- &
  local pid=$! i
  echo "$pid" >"$state/pids/$name.pid"
  # Until the forked shell has exec'd the program, /proc shows the shell (then setsid) under
  # that PID, and `alive` would take it for another program: on a loaded machine wait_for then
  # reported a component that had just started as exited. Wait for the exec (or the exit).
  for ((i = 0; i < 200; i++)); do
    alive "$name" || ! running "$pid" && break
    sleep 0.05
  done
  log "started $name (pid $pid), log $state/logs/$name.log"
}

fail() { # message: show the tail of every component log, stop everything
  log "error: $*"
  local c
  for c in "${components[@]}"; do
    [ -s "$state/logs/$c.log" ] || continue
    echo "----- $state/logs/$c.log (last 15 lines)" >&2
    tail -n 15 "$state/logs/$c.log" >&2
  done
  stop_all && clean_state
  exit 1
}

deadline=$(($(date +%s) + timeout))
# wait_for description command...: poll every 0.25 s until the command succeeds, a component
# dies, or the deadline passes.
wait_for() {
  local what=$1 c
  shift
  until "$@" >/dev/null 2>&1; do
    for c in "${components[@]}"; do
      if [ -f "$state/pids/$c.pid" ] && ! alive "$c"; then fail "$c exited while waiting for $what"; fi
    done
    [ "$(date +%s)" -lt "$deadline" ] || fail "timed out after ${timeout}s waiting for $what"
    sleep 0.25
  done
  log "ready: $what"
}

start etcd \
  --name=syncseq \
  --data-dir="$state/etcd" \
  --listen-client-urls="https://127.0.0.1:$etcd_port" \
  --advertise-client-urls="https://127.0.0.1:$etcd_port" \
  --listen-peer-urls="https://127.0.0.1:$etcd_peer_port" \
  --initial-advertise-peer-urls="https://127.0.0.1:$etcd_peer_port" \
  --initial-cluster="syncseq=https://127.0.0.1:$etcd_peer_port" \
  --initial-cluster-state=new \
  --cert-file="$pki/etcd-server.crt" --key-file="$pki/etcd-server.key" \
  --trusted-ca-file="$pki/etcd-ca.crt" --client-cert-auth=true \
  --peer-cert-file="$pki/etcd-server.crt" --peer-key-file="$pki/etcd-server.key" \
  --peer-trusted-ca-file="$pki/etcd-ca.crt" --peer-client-cert-auth=true \
  --unsafe-no-fsync=true \
  --log-level=warn

etcd_health() {
  curl -fsS --max-time 2 --cacert "$pki/etcd-ca.crt" --cert "$pki/apiserver-etcd-client.crt" \
    --key "$pki/apiserver-etcd-client.key" "https://127.0.0.1:$etcd_port/health" | grep -q '"health":"true"'
}
wait_for "etcd /health" etcd_health

# Audit log of the writes made with the admin credentials (tests and the controllers they
# start): the fencing test reads it to show that a leader that lost its lease wrote nothing.
cat >"$state/config/audit-policy.yaml" <<'EOF'
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
  - level: Metadata
    users: [syncseq-admin]
    verbs: [create, update, patch, delete, deletecollection]
  - level: None
EOF

start kube-apiserver \
  --bind-address=127.0.0.1 \
  --audit-policy-file="$state/config/audit-policy.yaml" \
  --audit-log-path="$state/logs/audit.log" \
  --audit-log-maxsize=200 --audit-log-maxbackup=1 \
  --advertise-address=127.0.0.1 \
  --endpoint-reconciler-type=none \
  --secure-port="$apiserver_port" \
  --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
  --client-ca-file="$pki/ca.crt" \
  --requestheader-client-ca-file="$pki/front-proxy-ca.crt" \
  --requestheader-allowed-names=front-proxy-client \
  --requestheader-username-headers=X-Remote-User \
  --requestheader-group-headers=X-Remote-Group \
  --requestheader-extra-headers-prefix=X-Remote-Extra- \
  --proxy-client-cert-file="$pki/front-proxy-client.crt" \
  --proxy-client-key-file="$pki/front-proxy-client.key" \
  --etcd-servers="https://127.0.0.1:$etcd_port" \
  --etcd-cafile="$pki/etcd-ca.crt" \
  --etcd-certfile="$pki/apiserver-etcd-client.crt" --etcd-keyfile="$pki/apiserver-etcd-client.key" \
  --authorization-mode=Node,RBAC \
  --service-account-issuer="$sa_issuer" \
  --service-account-key-file="$pki/sa.pub" \
  --service-account-signing-key-file="$pki/sa.key" \
  --service-cluster-ip-range="$service_cidr" \
  --kubelet-preferred-address-types=InternalIP \
  --allow-privileged=true \
  --profiling=false

write_kubeconfig "$kubeconfig" syncseq-admin admin
apiserver_ready() { [ "$(k get --raw /readyz 2>/dev/null)" = ok ]; }
wait_for "kube-apiserver /readyz" apiserver_ready

start kube-controller-manager \
  --kubeconfig="$state/config/kube-controller-manager.kubeconfig" \
  --authentication-kubeconfig="$state/config/kube-controller-manager.kubeconfig" \
  --authorization-kubeconfig="$state/config/kube-controller-manager.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$kcm_port" \
  --leader-elect=false \
  --controllers='*' \
  --use-service-account-credentials=true \
  --root-ca-file="$pki/ca.crt" \
  --service-account-private-key-file="$pki/sa.key" \
  --cluster-signing-cert-file="$pki/ca.crt" --cluster-signing-key-file="$pki/ca.key" \
  --service-cluster-ip-range="$service_cidr" \
  --kube-api-qps=100 --kube-api-burst=200 \
  --profiling=false

start kube-scheduler \
  --kubeconfig="$state/config/kube-scheduler.kubeconfig" \
  --authentication-kubeconfig="$state/config/kube-scheduler.kubeconfig" \
  --authorization-kubeconfig="$state/config/kube-scheduler.kubeconfig" \
  --bind-address=127.0.0.1 --secure-port="$scheduler_port" \
  --leader-elect=false \
  --kube-api-qps=100 --kube-api-burst=200 \
  --profiling=false

# kwok serves container logs from the files that `Logs` objects (kwok.x-k8s.io) name, so a
# test can give each fake Pod a log of its own; kwok watches them once their CRD is served.
k apply --server-side -f "$hack_dir/kwok/logs-crd.yaml" >/dev/null
logs_crd() { k wait --for=condition=Established --timeout=10s crd/logs.kwok.x-k8s.io >/dev/null; }
wait_for "the kwok Logs CRD established" logs_crd

# kwok reads ~/.kwok/kwok.yaml unless KWOK_WORKDIR points elsewhere: keep it to our own files.
# It is also the nodes' "kubelet": the API server reaches it for pods/log at the node's
# InternalIP (127.0.0.1) and the port the node-initialize stage writes (--node-port).
export KWOK_WORKDIR="$state/kwok"
start kwok \
  --kubeconfig="$state/config/kwok.kubeconfig" \
  --config="$hack_dir/kwok/kwok.yaml" \
  --config="$hack_dir/kwok/stages.yaml" \
  --server-address="127.0.0.1:$kwok_port" --node-port="$kwok_port" \
  --enable-crds=Logs \
  --manage-all-nodes=false \
  --manage-nodes-with-label-selector=type=kwok

healthz() { curl -fsSk --max-time 2 "https://127.0.0.1:$1/healthz" | grep -qx ok; }
wait_for "kube-controller-manager /healthz" healthz "$kcm_port"
wait_for "kube-scheduler /healthz" healthz "$scheduler_port"

apply_nodes() { k apply -f "$hack_dir/kwok/nodes.yaml"; }
wait_for "fake nodes created" apply_nodes

default_sa() { k -n default get serviceaccount default; }
wait_for "ServiceAccount default/default" default_sa
wait_for "nodes kwok-node-0 and kwok-node-1 Ready" ready

log "cluster ready in $(($(date +%s) - start_time))s: apiserver $server"
log "use: export KUBECONFIG=$kubeconfig"
echo "$kubeconfig"
