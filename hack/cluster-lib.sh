# shellcheck shell=bash
# Helpers shared by hack/cluster-up.sh and hack/cluster-down.sh (sourced, not run).
#
# State lives in $state (default: <repo>/.cluster, git-ignored):
#   kubeconfig            admin kubeconfig (printed by cluster-up.sh)
#   pids/<name>.pid       PID of each component; each runs in its own session, so PID == PGID
#   logs/<name>.log       stdout+stderr of each component
#   env                   ports and bin dir of the running cluster
#   pki/ config/ etcd/ kwok/   certificates, component kubeconfigs, etcd data, kwok work dir

hack_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo_root=$(cd "$hack_dir/.." && pwd)
state=${SYNCSEQ_CLUSTER_DIR:-$repo_root/.cluster}
mkdir -p "$state"
state=$(cd "$state" && pwd)

# Components in start order; cluster-down stops them in reverse.
components=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)

log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

pid_of() { # name -> recorded pid (empty when none)
  local f="$state/pids/$1.pid"
  [ -f "$f" ] && tr -dc '0-9' <"$f" || true
}

# True when process <pid> exists and is not a zombie.
running() {
  local st
  st=$({ cut -d' ' -f3 <"/proc/$1/stat"; } 2>/dev/null) || return 1
  [ "$st" != Z ]
}

# True when the recorded process for <name> is alive and still is that program started from
# this state dir (guards against a recycled PID).
alive() {
  local pid cmd argv0
  pid=$(pid_of "$1")
  [ -n "$pid" ] && running "$pid" || return 1
  cmd=$({ tr '\0' ' ' <"/proc/$pid/cmdline"; } 2>/dev/null) || return 1
  argv0=${cmd%% *}
  [[ "${argv0##*/}" == "$1" && "$cmd" == *"$state/"* ]]
}

# PIDs of the live (not zombie) processes in process group <pgid>.
group_members() {
  local p
  for p in $(pgrep -g "$1" 2>/dev/null); do
    running "$p" && echo "$p"
  done
  return 0
}

# PIDs of processes running one of our programs (or only <name>) with a command line that names
# this state dir: a safety net for processes whose pid file was lost. The absolute state path is
# unique to this checkout.
stray_pids() {
  local f argv0 c cmd
  for f in /proc/[0-9]*/cmdline; do
    argv0=
    { IFS= read -r -d '' argv0 <"$f"; } 2>/dev/null || [ -n "$argv0" ] || continue
    for c in "${@:-${components[@]}}"; do
      [ "${argv0##*/}" = "$c" ] || continue
      cmd=$({ tr '\0' ' ' <"$f"; } 2>/dev/null) || break
      [[ "$cmd" == *"$state/"* ]] && { f=${f#/proc/}; echo "${f%/cmdline}"; }
      break
    done
  done
  return 0
}

# PIDs of the running processes of component <name>: its recorded process group (when the
# leader is ours or gone: a group outlives its leader, and Linux does not hand out a PID still in
# use as a PGID) plus strays.
component_pids() {
  local pid
  pid=$(pid_of "$1")
  if [ -n "$pid" ] && { alive "$1" || ! running "$pid"; }; then group_members "$pid"; fi
  stray_pids "$1"
}

# Stop the given components together: SIGTERM, wait up to 15 s, then SIGKILL. Fails if one
# survives.
stop_components() {
  local c pid p i left
  for c in "$@"; do
    pid=$(pid_of "$c")
    if [ -n "$pid" ] && running "$pid" && ! alive "$c"; then
      log "pid $pid recorded for $c is another program now; leaving it alone"
    fi
    left=$(component_pids "$c" | sort -un | tr '\n' ' ')
    [ -n "$left" ] || continue
    log "stopping $c (pid ${left% })"
    stopped+="$left"
    for p in $left; do kill -TERM "$p" 2>/dev/null || true; done
  done
  local term_deadline=$((SECONDS + 15)) kill_deadline=$((SECONDS + 20)) killed=
  while [ "$SECONDS" -lt "$kill_deadline" ]; do
    left=$(for c in "$@"; do component_pids "$c"; done | sort -un | tr '\n' ' ')
    [ -z "$left" ] && return 0
    if [ -z "$killed" ] && [ "$SECONDS" -ge "$term_deadline" ]; then
      log "still running 15 s after SIGTERM: ${left% } - sending SIGKILL"
      for p in $left; do kill -KILL "$p" 2>/dev/null || true; done
      killed=1
    fi
    sleep 0.1
  done
  log "error: still running: ${left% }"
  return 1
}

# Stop everything: the clients first (kwok, scheduler, controller-manager, apiserver), etcd last.
stop_all() {
  local stopped=" " failed=0 i p left
  stop_components kwok kube-scheduler kube-controller-manager kube-apiserver || failed=1
  stop_components etcd || failed=1
  [ "$failed" = 0 ] || return 1
  # Give init a moment to reap them, so that not even a zombie shows in ps.
  for ((i = 0; i < 30; i++)); do
    left=
    for p in $stopped; do [ -d "/proc/$p" ] && left=1; done
    [ -z "$left" ] && break
    sleep 0.1
  done
  rm -rf "$state/pids"
}

# Remove all cluster state except logs (kept for post-mortems; cluster-up truncates them).
clean_state() {
  rm -rf "$state/pids" "$state/pki" "$state/config" "$state/etcd" "$state/kwok" \
    "$state/env" "$state/kubeconfig"
}
