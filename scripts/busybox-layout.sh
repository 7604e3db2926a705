#!/usr/bin/env bash
# Build a small multi-architecture OCI image layout from Debian's
# busybox-static binaries (target/test-assets/busybox/<Debian arch>/busybox,
# which setup.sh downloads), one platform per binary present, amd64 and
# arm64 at least:
#   scripts/busybox-layout.sh OUT_DIR
# The result is deterministic (fixed times, owners and order; gzip -n), so
# the same binaries give the same digests; it is rebuilt only when they
# change. Use it as oci:OUT_DIR:latest. It is a toolbox-like image, as the
# vendor tests' busybox images: busybox setuid root with its applets, root
# without a password, /tmp and /root, the toolbox label.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$1"
assets=target/test-assets/busybox

# (Debian arch, OCI architecture, OCI variant), in index order.
PLATFORMS=("amd64 amd64 -" "arm64 arm64 v8" "armhf arm v7" "i386 386 -" "ppc64el ppc64le -" "s390x s390x -")
for need in amd64 arm64; do
    if [ ! -f "$assets/$need/busybox" ]; then
        echo "busybox-layout: no $assets/$need/busybox; run scripts/setup.sh as root once to fetch busybox-static" >&2
        exit 1
    fi
done

key="$( (cat "$0"; for p in "${PLATFORMS[@]}"; do set -- $p; [ -f "$assets/$1/busybox" ] && sha256sum "$assets/$1/busybox"; done) | sha256sum | cut -d' ' -f1)"
if [ -f "$out/index.json" ] && [ "$(cat "$out.key" 2>/dev/null)" = "$key" ]; then
    exit 0
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/layout/blobs/sha256"
blobs="$work/layout/blobs/sha256"

# blob FILE: move FILE into the layout under its digest; print the digest.
blob() {
    local d
    d="$(sha256sum "$1" | cut -d' ' -f1)"
    mv "$1" "$blobs/$d"
    echo "sha256:$d"
}
size() { stat -c %s "$1"; }

APPLETS="sh ash uname id cat ls pwd su env true false whoami echo stat sleep mkdir rm cp mv ln grep sed head tail wc touch chmod chown hostname ps vi which find tar less more date dirname basename readlink realpath printf test [ tr cut sort uniq xargs yes clear"
entries=""
for p in "${PLATFORMS[@]}"; do
    set -- $p
    deb="$1" arch="$2" variant="$3"
    [ -f "$assets/$deb/busybox" ] || continue
    root="$work/root-$deb"
    mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/root" "$root/home"
    cp "$assets/$deb/busybox" "$root/bin/busybox"
    chmod 4755 "$root/bin/busybox"
    for a in $APPLETS; do ln -s busybox "$root/bin/$a"; done
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
    printf 'root:x:0:\nwheel:x:10:root\n' >"$root/etc/group"
    printf 'root::19000:0:99999:7:::\n' >"$root/etc/shadow"
    chmod 644 "$root/etc/passwd" "$root/etc/group"
    chmod 600 "$root/etc/shadow"
    chmod 755 "$root/bin" "$root/etc" "$root/home"
    chmod 1777 "$root/tmp"
    chmod 700 "$root/root"
    tar --sort=name --format=gnu --mtime=@0 --owner=0 --group=0 --numeric-owner \
        -C "$root" -cf "$work/layer.tar" bin etc home root tmp
    diff_id="sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
    gzip -n -9 "$work/layer.tar"
    layer_size="$(size "$work/layer.tar.gz")"
    layer="$(blob "$work/layer.tar.gz")"

    vjson=""
    [ "$variant" = - ] || vjson=",\"variant\":\"$variant\""
    printf '{"architecture":"%s"%s,"os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh"],"Labels":{"com.github.containers.toolbox":"true"}},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
        "$arch" "$vjson" "$diff_id" >"$work/config"
    config_size="$(size "$work/config")"
    config="$(blob "$work/config")"

    printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"%s","size":%s}]}' \
        "$config" "$config_size" "$layer" "$layer_size" >"$work/manifest"
    manifest_size="$(size "$work/manifest")"
    manifest="$(blob "$work/manifest")"
    [ -z "$entries" ] || entries="$entries,"
    entries="$entries{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"$manifest\",\"size\":$manifest_size,\"platform\":{\"architecture\":\"$arch\",\"os\":\"linux\"$vjson}}"
done

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[%s]}' "$entries" >"$work/index"
index_size="$(size "$work/index")"
index="$(blob "$work/index")"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.index.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
    "$index" "$index_size" >"$work/layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

rm -rf "$out"
mkdir -p "$(dirname "$out")"
mv "$work/layout" "$out"
echo "$key" >"$out.key"
