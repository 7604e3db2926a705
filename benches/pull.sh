#!/usr/bin/env bash
# `mtbx pull --arch arm64` against `skopeo copy --override-arch arm64
# docker://... containers-storage:...` and `podman pull --arch arm64`, on
# the same image (6 layers, ~250 MB uncompressed) from the same local
# distribution registry, into fresh rootful overlay stores, in one
# hyperfine run; then each tool's peak RSS. Prints the ratios. Run as
# root (the stores are rootful). Needs docker-registry, skopeo, podman,
# hyperfine (installed here if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_tools docker-registry skopeo podman hyperfine
start_registry
cargo run --quiet --release --example make_bench_image -- "$work/layout"
skopeo copy -q --all --dest-tls-verify=false "oci:$work/layout:1" "docker://127.0.0.1:$port/bench:1"
img="127.0.0.1:$port/bench:1"
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$work/graph" "$work/run" > "$work/storage.conf"
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > "$work/containers.conf"
export CONTAINERS_STORAGE_CONF="$work/storage.conf" CONTAINERS_CONF="$work/containers.conf"
wipe="umount -l $work/graph/overlay 2>/dev/null; rm -rf $work/graph $work/run; sync"
dest="containers-storage:[overlay@$work/graph+$work/run]$img-arm64"
mtbx_cmd="$bin pull -q -y --tls-verify=false --arch arm64 $img"
skopeo_cmd="skopeo copy -q --src-tls-verify=false --override-arch arm64 docker://$img $dest"
podman_cmd="podman pull -q --tls-verify=false --arch arm64 $img"
base=()
[ -n "${MTBX_BASELINE:-}" ] && base=(-n mtbx-baseline "$MTBX_BASELINE pull -q -y --tls-verify=false --arch arm64 $img")
hyperfine --runs "${RUNS:-5}" --prepare "$wipe" --export-json "$work/r.json" "${base[@]}" \
    -n mtbx "$mtbx_cmd" -n skopeo "$skopeo_cmd" -n podman "$podman_cmd"
rss() {
    eval "$wipe"
    python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1], shell=True, check=True, stdout=subprocess.DEVNULL)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)' "$1"
}
m=$(rss "$mtbx_cmd"); s=$(rss "$skopeo_cmd"); p=$(rss "$podman_cmd")
python3 - "$work/r.json" "$m" "$s" "$p" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
m, s, p = (int(x) for x in sys.argv[2:5])
best = min(r["skopeo"], r["podman"])
print(f"mtbx {r['mtbx']:.2f} s; skopeo copy {r['skopeo']:.2f} s; podman pull {r['podman']:.2f} s")
print(f"ratio mtbx/skopeo = {r['mtbx']/r['skopeo']:.2f}; mtbx/podman = {r['mtbx']/r['podman']:.2f}; "
      f"speedup over the fastest = {best/r['mtbx']:.2f}x")
print(f"peak RSS: mtbx {m} MiB; skopeo {s} MiB; podman {p} MiB")
PY
baseline_ratio "$work/r.json"
