#!/usr/bin/env bash
# Prepare a Debian/Ubuntu machine to build, run and test mtbx, then build
# the static release binary. Safe to run again: it installs only what is
# missing. Needs root or sudo for apt-get.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

# Runtime: qemu-user-static (the emulators). Tests: gcc and libc6-dev (they
# compile static and dynamic programs), util-linux (unshare, setpriv),
# docker-registry and skopeo (vendor-tests hold mtbx against them),
# ca-certificates. Build: musl-tools (C parts of dependencies, such as
# aws-lc and mimalloc, for the static target).
PACKAGES=(qemu-user-static gcc libc6-dev util-linux musl-tools docker-registry skopeo ca-certificates)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "setup: installing ${missing[*]}" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

TARGET="$(uname -m)-unknown-linux-musl"
rustup target list --installed | grep -qx "$TARGET" || rustup target add "$TARGET" >&2
CC_x86_64_unknown_linux_musl=musl-gcc cargo build --quiet --release --locked --target "$TARGET" >&2
echo "target/$TARGET/release/mtbx"
