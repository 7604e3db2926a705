#!/usr/bin/env bash
# What a CPU model costs per exec (as root): two arm64 busybox toolboxes
# from the same image, one plain and one created with `--cpu max` (the
# model qemu-aarch64 uses anyway, so the difference is the shim alone:
# kernel -> mtbx -> execve qemu, instead of kernel -> qemu). In each,
# `mtbx run` runs a loop of N execs of /bin/true (busybox, emulated), and
# the same command with 0 iterations; the difference over N is the cost
# of one exec. N=1000 by default; ROUNDS=3 rounds, each printed.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_tools docker-registry skopeo podman
start_registry
bb=target/test-assets/busybox/arm64/busybox
[ -f "$bb" ] || { echo "no $bb: run scripts/setup.sh as root" >&2; exit 1; }
mkdir -p "$work/rootfs/bin" "$work/rootfs/etc" "$work/rootfs/tmp"
cp "$bb" "$work/rootfs/bin/busybox"
for a in sh true uname id cat; do ln -s busybox "$work/rootfs/bin/$a"; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > "$work/rootfs/etc/passwd"
printf 'root:x:0:\n' > "$work/rootfs/etc/group"
tar -C "$work/rootfs" -czf "$work/layer.tgz" .
printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$work/graph" "$work/run" > "$work/storage.conf"
printf '[containers]\ndefault_ulimits = []\n[engine]\nruntime = "runc"\n' > "$work/containers.conf"
export CONTAINERS_STORAGE_CONF="$work/storage.conf" CONTAINERS_CONF="$work/containers.conf"
img="127.0.0.1:$port/bb:1"
mkdir -p "$work/layout/blobs/sha256"
python3 - "$work" <<'PY'
import gzip, hashlib, json, sys
w = sys.argv[1]
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{w}/layout/blobs/sha256/{d}", "wb").write(b)
    return "sha256:" + d, len(b)
layer = open(f"{w}/layer.tgz", "rb").read()
diff = hashlib.sha256(gzip.decompress(layer)).hexdigest()
ld, ls = put(layer)
cfg = json.dumps({"architecture": "arm64", "os": "linux", "config": {"Env": ["PATH=/bin"]},
                  "rootfs": {"type": "layers", "diff_ids": ["sha256:" + diff]}}).encode()
cd, cs = put(cfg)
man = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}]}).encode()
md, ms = put(man)
open(f"{w}/layout/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
open(f"{w}/layout/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
     "platform": {"architecture": "arm64", "os": "linux"},
     "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
PY
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:1" "docker://$img"
trap '"$bin" rm --all --force >/dev/null 2>&1 || true; kill $registry_pid; umount -l "$work/graph/overlay" 2>/dev/null || true; rm -rf "$work"' EXIT
cd "$HOME"
"$bin" create -y --tls-verify=false --image "$img" --arch arm64 bench-default >/dev/null 2>&1
"$bin" create -y --tls-verify=false --image "$img" --arch arm64 --cpu max bench-cpu >/dev/null 2>&1
for c in bench-default bench-cpu; do "$bin" run -c "$c" true; done
n="${N:-1000}"
loop() { printf 'i=0; while [ $i -lt %s ]; do /bin/true; i=$((i+1)); done' "$1"; }
usec() { local s e; s=$(date +%s%N); "$bin" run -c "$1" sh -c "$(loop "$2")"; e=$(date +%s%N); echo $(((e - s) / 1000)); }
for round in $(seq "${ROUNDS:-3}"); do
    line="round $round:"
    for c in bench-default bench-cpu; do
        t0=$(usec "$c" 0)
        tn=$(usec "$c" "$n")
        line="$line $c $(((tn - t0) / n)) us/exec;"
    done
    echo "$line"
done
