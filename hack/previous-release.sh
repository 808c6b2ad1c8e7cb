#!/usr/bin/env bash
# Builds the syncseq of the previous release, for the rollback test (tests/rollback.rs), and
# prints the binary's path. Cached outside the clone, by commit, as the control plane is.
#
#   hack/previous-release.sh            (the commit: $SYNCSEQ_PREVIOUS_COMMIT, default below)
#
# No release is tagged yet: the previous release is the last commit that landed on main before
# the current line of work. Move it forward when a release is cut (to the release's tag).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

commit=${SYNCSEQ_PREVIOUS_COMMIT:-ecb58ca7b7be5d02e073f5fb1020329ce5c62547}
cache=${SYNCSEQ_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/syncseq}/previous/$commit
if [ -x "$cache/syncseq" ]; then
  echo "$cache/syncseq"
  exit 0
fi

if ! git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null; then
  # A shallow clone lacks the history: fetch it from where the clone came from.
  if [ "$(git -C "$root" rev-parse --is-shallow-repository)" = true ]; then
    log "fetching the history for $commit"
    git -C "$root" fetch --quiet --unshallow || true
  fi
  git -C "$root" cat-file -e "$commit^{commit}" 2>/dev/null ||
    die "commit $commit (the previous release) is not in this clone"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git -C "$root" archive "$commit" | tar -x -C "$work"
# Its own target dir: building it in the checkout's would replace target/debug/syncseq, which
# the tests run, with the previous release. Removed once the binary is out: only that is kept.
log "building syncseq at ${commit:0:12} (the previous release), once per machine"
(cd "$work" && CARGO_TARGET_DIR="$work/target" cargo build --locked --quiet --bin syncseq)
"$work/target/debug/syncseq" --version >/dev/null || die "the previous release's syncseq does not run"
mkdir -p "$cache"
cp "$work/target/debug/syncseq" "$cache/syncseq.partial"
mv "$cache/syncseq.partial" "$cache/syncseq"
echo "$cache/syncseq"
