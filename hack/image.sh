#!/usr/bin/env bash
# Builds the controller's container image without a container engine, then checks it.
#
#   hack/image.sh [OUT]   (default OUT: target/image)
#
# The image is one layer on an empty base: a statically linked syncseq, the CA bundle of this
# machine's Debian ca-certificates package (alert webhooks over HTTPS verify against it), and
# /etc/passwd and /etc/group naming the nonroot user 65532. crane (go-containerregistry, built
# by hack/build-tools.sh) assembles it in a registry it serves on loopback for this script
# only, sets the config (user, entrypoint, OCI labels) and saves it as OUT/syncseq-image.tar
# (`docker load`/`podman load` read it; `crane push OUT/syncseq-image.tar REF` publishes it).
#
# The checks read the image back: its config, and the syncseq extracted from its layer runs
# `--version` with nothing but the image's own files (chroot when root, else directly). Only
# linux/amd64 is built: the machine has no other Rust target or cross linker.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
out=${1:-$root/target/image}
log() { echo "[$(date +%H:%M:%S)] $*" >&2; }
die() { log "error: $*"; exit 1; }

bin=$(bash "$here/build-tools.sh" crane)
crane=$bin/crane
version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/Cargo.toml" | head -1)
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)

# ---- a static binary --------------------------------------------------------------------
# glibc linked statically (crt-static): no libc in the image. Name resolution still works
# without NSS modules: glibc 2.34+ has its files and dns backends built in.
log "building a static syncseq (release)"
(cd "$root" && RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked --quiet --target x86_64-unknown-linux-gnu --bin syncseq)
binary=$root/target/x86_64-unknown-linux-gnu/release/syncseq
if readelf -l "$binary" | grep -q 'Requesting program interpreter'; then
  die "$binary is dynamically linked"
fi

# ---- the layer ------------------------------------------------------------------------
ca=/etc/ssl/certs/ca-certificates.crt
[ -s "$ca" ] || die "$ca is missing: install Debian's ca-certificates package"
mkdir -p "$out"
work=$(mktemp -d)
registry_pid=
cleanup() {
  [ -z "$registry_pid" ] || kill "$registry_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
fs=$work/rootfs
mkdir -p "$fs/etc/ssl/certs" "$fs/tmp"
install -m 0755 "$binary" "$fs/syncseq"
install -m 0644 "$ca" "$fs/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$fs/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' >"$fs/etc/group"
chmod 1777 "$fs/tmp"
# Reproducible: sorted, owned by root, one fixed time (the commit's).
mtime=$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$mtime" \
  -C "$fs" -cf "$work/layer.tar" .

# ---- assemble in a loopback registry ------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$crane" registry serve --address "127.0.0.1:$port" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/v2/" >/dev/null || die "crane's registry did not start: $(cat "$work/registry.log")"
ref=127.0.0.1:$port/syncseq:$version
log "assembling $ref"
"$crane" append --insecure --oci-empty-base -f "$work/layer.tar" -t "$ref" >/dev/null
"$crane" mutate --insecure "$ref" \
  --set-platform linux/amd64 --entrypoint /syncseq --cmd controller --user 65532:65532 --workdir / \
  --label org.opencontainers.image.title=syncseq \
  --label "org.opencontainers.image.description=Kubernetes operator that runs data syncs in order" \
  --label "org.opencontainers.image.version=$version" \
  --label "org.opencontainers.image.revision=$revision" \
  --label org.opencontainers.image.source=https://github.com/syncseq/syncseq \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  >/dev/null
"$crane" pull --insecure "$ref" "$out/syncseq-image.tar"

# ---- checks -------------------------------------------------------------------------------
config=$("$crane" config --insecure "$ref")
check() { # jq-expression expected
  local got
  got=$(jq -c "$1" <<<"$config")
  [ "$got" = "$2" ] || die "image config $1 is $got, expected $2"
}
check .os '"linux"'
check .architecture '"amd64"'
check .config.User '"65532:65532"'
check .config.Entrypoint '["/syncseq"]'
check .config.Cmd '["controller"]'
check '.config.Labels["org.opencontainers.image.version"]' "\"$version\""
check '.config.Labels["org.opencontainers.image.licenses"]' '"Apache-2.0"'
check '.config.Labels["org.opencontainers.image.revision"]' "\"$revision\""

extracted=$work/extracted
mkdir -p "$extracted"
"$crane" export --insecure "$ref" - | tar -x -C "$extracted"
[ -s "$extracted/etc/ssl/certs/ca-certificates.crt" ] || die "the image has no CA bundle"
grep -q '^nonroot:x:65532:' "$extracted/etc/passwd" || die "the image's /etc/passwd lacks user 65532"
if [ "$(id -u)" = 0 ]; then
  ran=$(chroot "$extracted" /syncseq --version)
else
  ran=$(env -i "$extracted/syncseq" --version)
fi
[ "$ran" = "syncseq $version" ] || die "the image's syncseq --version printed '$ran', expected 'syncseq $version'"

manifest=$("$crane" manifest --insecure "$ref")
compressed=$(jq '[.layers[].size, .config.size] | add' <<<"$manifest")
log "image checks passed: $ran, user 65532, entrypoint /syncseq controller, OCI labels"
log "image size: $((compressed / 1024 / 1024)) MiB compressed ($compressed bytes), $(du -sm "$extracted" | cut -f1) MiB unpacked; saved as $out/syncseq-image.tar"
