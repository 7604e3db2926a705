#!/usr/bin/env bash
# `mtbx inspect --arch arm64` against `skopeo inspect --override-arch arm64`
# on the same image in the same local distribution registry, in one
# hyperfine run; prints the ratios. skopeo is timed both as people run it
# (it lists the repository's tags) and with --no-tags (the same requests
# mtbx makes). Needs docker-registry, skopeo and hyperfine (installed here
# if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_tools docker-registry skopeo hyperfine
start_registry
skopeo copy -q --all --dest-tls-verify=false oci:fixtures/oci/multi:1 "docker://127.0.0.1:$port/multi:1"
img="127.0.0.1:$port/multi:1"
base=()
[ -n "${MTBX_BASELINE:-}" ] && base=(-n mtbx-baseline "$MTBX_BASELINE inspect --tls-verify=false --arch arm64 --format json $img")
hyperfine --warmup 3 --runs 30 --export-json "$work/r.json" "${base[@]}" \
    -n mtbx "$bin inspect --tls-verify=false --arch arm64 --format json $img" \
    -n skopeo "skopeo inspect --tls-verify=false --override-arch arm64 docker://$img" \
    -n skopeo-no-tags "skopeo inspect --tls-verify=false --no-tags --override-arch arm64 docker://$img"
python3 - "$work/r.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
print(f"mtbx {r['mtbx']*1000:.1f} ms; skopeo {r['skopeo']*1000:.1f} ms; skopeo --no-tags {r['skopeo-no-tags']*1000:.1f} ms")
print(f"ratio mtbx/skopeo = {r['mtbx']/r['skopeo']:.2f}; mtbx/skopeo --no-tags = {r['mtbx']/r['skopeo-no-tags']:.2f}")
PY
baseline_ratio "$work/r.json"
