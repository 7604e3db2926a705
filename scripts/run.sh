#!/usr/bin/env bash
# Set up (see setup.sh), then run the static mtbx with the given arguments:
#   scripts/run.sh arch check arm64 ppc64le s390x riscv64
# With no arguments: make an arm64 toolbox from the multi-architecture OCI
# layout setup.sh builds from Debian's busybox-static (no registry, no
# network) and run `uname -m` in it, which prints aarch64.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
bin="$here/$("$here/scripts/setup.sh")"
if [ "$#" -gt 0 ]; then
    exec "$bin" "$@"
fi
layout="$here/target/oci/busybox"
name=busybox-arm64
if [ ! -f "$layout/index.json" ]; then
    echo "run.sh: no OCI layout at $layout; run scripts/setup.sh as root once (it fetches busybox-static for arm64)" >&2
    exit 1
fi
if ! podman container exists "$name"; then
    "$bin" create --image "oci:$layout:latest" --arch arm64 "$name" -y >&2
fi
# From the home directory, which the toolbox shares (Toolbx says so when
# the current directory is not in the container).
cd "$HOME"
exec "$bin" run -c "$name" uname -m
