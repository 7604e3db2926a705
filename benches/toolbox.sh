#!/usr/bin/env bash
# Toolbox speed, in one run on this machine (as root):
#  1. `mtbx run -c NAME true` on a running arm64 container against
#     `podman exec NAME true` on the same container (the floor: run is one
#     podman exec plus mtbx's own work before and inside it);
#  2. create-to-first-run: `mtbx create --arch arm64` then `mtbx run true`,
#     against doing the same by hand with podman (pull --arch, then a
#     privileged container with its own user namespace that mounts
#     binfmt_misc, registers QEMU and runs `true`), each from an empty
#     store.
# The image is busybox-static for arm64 (scripts/setup.sh downloads it)
# in a local distribution registry.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_tools docker-registry skopeo podman hyperfine
[ -x /bin/busybox ] || apt-get install -y -qq busybox-static >/dev/null
start_registry
bb=target/test-assets/busybox/arm64/busybox
[ -f "$bb" ] || { echo "no $bb: run scripts/setup.sh as root" >&2; exit 1; }
qemu=/usr/bin/qemu-aarch64-static
# An OCI layout with busybox for arm64 (and its applets), pushed with skopeo.
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
import hashlib, json, os, sys
w = sys.argv[1]
def put(b):
    d = hashlib.sha256(b).hexdigest()
    open(f"{w}/layout/blobs/sha256/{d}", "wb").write(b)
    return "sha256:" + d, len(b)
import gzip
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
idx = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
    {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
     "platform": {"architecture": "arm64", "os": "linux"}}]}).encode()
xd, xs = put(idx)
open(f"{w}/layout/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
open(f"{w}/layout/index.json", "w").write(json.dumps({"schemaVersion": 2, "manifests": [
    {"mediaType": "application/vnd.oci.image.index.v1+json", "digest": xd, "size": xs,
     "annotations": {"org.opencontainers.image.ref.name": "1"}}]}))
PY
skopeo copy -q --all --dest-tls-verify=false "oci:$work/layout:1" "docker://$img"
line=$("$bin" binfmt register --arch arm64 --dry-run --format json 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["line"])' | sed "s#:$qemu:#:/qemu:#")
wipe="podman rm -af >/dev/null 2>&1 || true; $bin rm --all --force >/dev/null 2>&1 || true; umount -l $work/graph/overlay 2>/dev/null || true; rm -rf $work/graph $work/run || true"
cd "$HOME"
# 1. run on a running container.
eval "$wipe"
"$bin" create -y --tls-verify=false --image "$img" --arch arm64 bench >/dev/null
"$bin" run -c bench true
hyperfine -N --warmup 3 --runs 30 --export-json "$work/run.json" \
    -n "mtbx run" "$bin run -c bench true" -n "podman exec" "podman exec bench true"
# 2. create to first run.
# By hand: a static native shell (the host's busybox) mounts binfmt_misc in
# the container's own user namespace, registers QEMU, runs arm64 `true`.
by_hand="podman pull -q --tls-verify=false --arch arm64 $img >/dev/null && podman run --rm --privileged --uidmap 0:0:65536 --gidmap 0:0:65536 -v $qemu:/qemu:ro -v /bin/busybox:/busybox:ro --entrypoint /busybox $img sh -c 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && echo \"$line\" > /proc/sys/fs/binfmt_misc/register && /bin/true'"
hyperfine --runs 5 --prepare "$wipe" --export-json "$work/create.json" \
    -n "mtbx create+run" "$bin create -y --tls-verify=false --image $img --arch arm64 bench >/dev/null && $bin run -c bench true" \
    -n "by hand" "$by_hand"
python3 - "$work/run.json" "$work/create.json" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
c = {x["command"]: x["mean"] for x in json.load(open(sys.argv[2]))["results"]}
print(f"run on a running container: mtbx {r['mtbx run']*1000:.0f} ms, podman exec {r['podman exec']*1000:.0f} ms, ratio {r['mtbx run']/r['podman exec']:.2f}")
print(f"create to first run: mtbx {c['mtbx create+run']:.2f} s, by hand {c['by hand']:.2f} s, ratio {c['mtbx create+run']/c['by hand']:.2f}")
PY
