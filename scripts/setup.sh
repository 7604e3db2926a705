#!/usr/bin/env bash
# Prepare a Debian/Ubuntu machine to build, run and test mtbx, then build
# the static release binary. Safe to run again: it installs only what is
# missing. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# Runtime: podman (the container engine; mtbx writes its image store)
# with netavark (the network stack this was tested with),
# runc (podman's runtime here: crun fails on hybrid cgroups), uidmap
# (newuidmap/newgidmap, for rootless pulls) and qemu-user-static (the
# emulators). Tests: gcc and libc6-dev (they compile static and dynamic
# programs), util-linux (unshare, setpriv, runuser), docker-registry and
# skopeo (vendor-tests hold mtbx against them), busybox-static (a static
# shell inside test images), ca-certificates, mmdebstrap (builds the
# Debian root file systems the Toolbx parity tests run, native and arm64).
# Build: musl-tools (C parts
# of dependencies, such as aws-lc, zstd and mimalloc, for the static
# target).
PACKAGES=(podman runc netavark uidmap catatonit slirp4netns qemu-user-static gcc libc6-dev util-linux musl-tools docker-registry skopeo
    busybox-static ca-certificates mmdebstrap)
# Debian's own Toolbx: vendor-tests/toolbx_made.rs has it create the
# containers mtbx, as `toolbox`, must then use as they are.
PACKAGES+=(podman-toolbox)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq || echo "setup: apt-get update had errors; trying the install anyway" >&2
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# Rootless tests run as this user, with subordinate id ranges as podman
# needs them. Only as root (CI); elsewhere those tests print SKIPPED.
if [ "$(id -u)" = 0 ] && ! id mtbxtest >/dev/null 2>&1; then
    echo "setup: creating user mtbxtest for the rootless tests" >&2
    useradd --create-home --shell /bin/bash mtbxtest
fi
if [ "$(id -u)" = 0 ] && id mtbxtest >/dev/null 2>&1; then
    grep -q '^mtbxtest:' /etc/subuid || usermod --add-subuids 200000-265535 mtbxtest
    grep -q '^mtbxtest:' /etc/subgid || usermod --add-subgids 200000-265535 mtbxtest
fi

# Test images of foreign architectures are made of Debian's busybox-static
# for each (vendor-tests/toolbox.rs); only as root, as dpkg needs it.
assets=target/test-assets/busybox
if [ "$(id -u)" = 0 ] && [ "$(dpkg --print-architecture)" = amd64 ]; then
    want=()
    for a in arm64 armhf i386 ppc64el s390x; do
        [ -f "$assets/$a/busybox" ] || want+=("$a")
    done
    if [ "${#want[@]}" -gt 0 ]; then
        echo "setup: downloading busybox-static for ${want[*]}" >&2
        for a in "${want[@]}"; do dpkg --add-architecture "$a"; done
        apt-get update -qq || echo "setup: apt-get update had errors; trying the download anyway" >&2
        tmp="$(mktemp -d)"
        for a in "${want[@]}"; do
            for try in 1 2 3; do
                (cd "$tmp" && apt-get download -qq "busybox-static:$a" >&2) && break
                echo "setup: download of busybox-static:$a failed (try $try of 3)" >&2
                sleep 5
            done
            mkdir -p "$tmp/x-$a" "$assets/$a"
            dpkg-deb -x "$tmp"/busybox-static_*_"$a".deb "$tmp/x-$a"
            cp "$tmp/x-$a/bin/busybox" "$assets/$a/busybox"
        done
        rm -rf "$tmp"
    fi
    mkdir -p "$assets/amd64"
    [ -f "$assets/amd64/busybox" ] || cp /bin/busybox "$assets/amd64/busybox"
fi

# The small multi-architecture OCI layout `scripts/run.sh` (no arguments)
# makes an arm64 toolbox from, with no registry: built from those busybox
# binaries, deterministic, rebuilt only when they change.
if [ -f "$assets/amd64/busybox" ] && [ -f "$assets/arm64/busybox" ]; then
    scripts/busybox-layout.sh target/oci/busybox >&2
else
    echo "setup: no busybox-static for amd64 and arm64 in $assets (run this script as root once); skipping the OCI layout" >&2
fi

TARGET="$(uname -m)-unknown-linux-musl"
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET" >&2
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --quiet --release --locked --target "$TARGET" >&2
# Manual pages (mtbx(1), toolbox(1) and one per command), generated from
# the command-line definitions; `mtbx help CMD` and `toolbox help` open them.
if [ "$(id -u)" = 0 ]; then
    "target/$TARGET/release/mtbx" man-pages /usr/local/share/man/man1 2>/dev/null
fi
echo "target/$TARGET/release/mtbx"
