#!/usr/bin/env bash
# Packs the kubectl plugin archive, renders the krew manifest (.krew.yaml) for it, validates
# the manifest with krew's own validate-krew-manifest, and installs it with krew into a
# scratch KREW_ROOT the way `kubectl krew install syncseq` will, then runs the installed
# plugin through kubectl's plugin discovery.
#
#   hack/krew.sh [OUT]   (default OUT: target/krew)
#
# The archive holds the static syncseq (the one hack/image.sh builds) and the LICENSE.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/target/krew}
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

bin=$(bash "$here/build-tools.sh" validate-krew-manifest krew)
version=v$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)

log "building a static syncseq (release)"
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin syncseq)
binary=$root/target/x86_64-unknown-linux-gnu/release/syncseq

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out" "$work/pkg"
install -m 0755 "$binary" "$work/pkg/syncseq"
install -m 0644 "$root/LICENSE" "$work/pkg/LICENSE"
archive=$out/kubectl-syncseq_linux_amd64.tar.gz
mtime=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
  -C "$work/pkg" -c syncseq LICENSE | gzip -n >"$archive"
sha=$(sha256sum "$archive" | cut -d' ' -f1)

# Render the template as krew-release-bot does: the tag, then each addURIAndSha as the
# archive's uri and sha256 (indented like the line it replaces).
manifest=$out/syncseq.yaml
sed -e "s|{{ addURIAndSha \"\(.*\)\" .TagName }}|uri: \1\n    sha256: $sha|" \
  -e "s|{{ .TagName }}|$version|g" "$root/.krew.yaml" >"$manifest"
grep -q '{{' "$manifest" && die "unrendered template left in $manifest"

log "validating $manifest"
"$bin/validate-krew-manifest" -manifest "$manifest" -skip-install 2>"$work/validate.log" \
  || die "validate-krew-manifest: $(cat "$work/validate.log")"

log "installing it with krew from the local archive"
export KREW_ROOT=$work/krew
"$bin/krew" install --manifest="$manifest" --archive="$archive" >"$work/install.log" 2>&1 \
  || die "krew install: $(cat "$work/install.log")"
# krew records what it installed as a receipt (`krew list` would also need an index).
[ -s "$KREW_ROOT/receipts/syncseq.yaml" ] || die "krew wrote no receipt for syncseq"
export PATH=$KREW_ROOT/bin:$PATH
ran=$(kubectl syncseq --version)
[ "$ran" = "kubectl-syncseq ${version#v}" ] || die "kubectl syncseq --version printed '$ran'"
kubectl syncseq --help | grep -q 'logs' || die "kubectl syncseq --help lists no logs command"
log "krew manifest valid and installed: $ran (archive $(du -k "$archive" | cut -f1) KiB, sha256 $sha)"
