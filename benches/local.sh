#!/usr/bin/env bash
# `mtbx pull oci:DIR` against `skopeo copy oci:DIR containers-storage:...`
# and `podman pull oci:DIR`, for arm64 and the host's platform, on the
# busybox OCI layout setup.sh builds (or LAYOUT=DIR:TAG, say a layout of
# make_bench_image), into fresh rootful overlay stores, in one hyperfine
# run each; then the same for mtbx and skopeo from that layout as an
# oci-archive. Prints the ratios. Run as root. No registry, no network.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_tools skopeo podman hyperfine
bin="$PWD/$(scripts/setup.sh)"
layout="${LAYOUT:-$PWD/target/oci/busybox:latest}"
dir="${layout%:*}"
work="$(mktemp -d)"
trap 'umount -l "$work/graph/overlay" 2>/dev/null || true; rm -rf "$work"' EXIT
(cd "$dir" && tar cf "$work/layout.tar" .)
tag="${layout##*:}"
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$work/graph" "$work/run" > "$work/storage.conf"
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > "$work/containers.conf"
export CONTAINERS_STORAGE_CONF="$work/storage.conf" CONTAINERS_CONF="$work/containers.conf" CONTAINERS_REGISTRIES_CONF=/dev/null
wipe="umount -l $work/graph/overlay 2>/dev/null; rm -rf $work/graph $work/run; sync"
dest="containers-storage:[overlay@$work/graph+$work/run]localhost/bench:$tag"
ratios() {
    python3 - "$1" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
m = r.pop("mtbx")
print(f"mtbx {m*1000:.0f} ms; " + "; ".join(f"{k} {v*1000:.0f} ms (ratio mtbx/{k} = {m/v:.2f})" for k, v in r.items()))
PY
}
for arch in arm64 "$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')"; do
    echo "== oci:$layout --arch $arch"
    hyperfine --runs "${RUNS:-8}" --warmup 1 --prepare "$wipe" --export-json "$work/r.json" \
        -n mtbx "$bin pull -q -y --arch $arch oci:$layout" \
        -n skopeo "skopeo --override-arch $arch copy -q oci:$layout $dest-$arch" \
        -n podman "podman pull -q --arch $arch oci:$layout" >/dev/null
    ratios "$work/r.json"
done
echo "== oci-archive: of the same layout, --arch arm64"
hyperfine --runs "${RUNS:-8}" --warmup 1 --prepare "$wipe" --export-json "$work/r.json" \
    -n mtbx "$bin pull -q -y --arch arm64 oci-archive:$work/layout.tar:$tag" \
    -n skopeo "skopeo --override-arch arm64 copy -q oci-archive:$work/layout.tar:$tag $dest-arm64" >/dev/null
ratios "$work/r.json"
