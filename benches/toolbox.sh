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
#  3. against Toolbx itself (Debian's podman-toolbox, installed here if
#     missing; it needs the system D-Bus socket, started here if absent)
#     on the same native Debian 12 image (mmdebstrap, cached in target/):
#     `mtbx run`, `toolbox run` and `podman exec`, plain and through the
#     user's login shell (what both toolboxes run commands through, so
#     the user's profile is part of the cost), in one hyperfine run.
# The image of 1 and 2 is busybox-static for arm64 (scripts/setup.sh
# downloads it) in a local distribution registry. MTBX_BASELINE=FILE adds
# another mtbx build to the runs on a running container.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_tools docker-registry skopeo podman hyperfine
[ -x /bin/busybox ] || apt-get install -y -qq busybox-static >/dev/null
start_registry
root="$PWD"
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
wipe="$bin rm --all --force >/dev/null 2>&1 || true; podman rm -af >/dev/null 2>&1 || true; umount -l $work/graph/overlay 2>/dev/null || true; rm -rf $work/graph $work/run || true"
cd "$HOME"
# 1. run on a running container.
eval "$wipe"
"$bin" create -y --tls-verify=false --image "$img" --arch arm64 bench >/dev/null
"$bin" run -c bench true
base=()
[ -n "${MTBX_BASELINE:-}" ] && base=(-n "mtbx-baseline" "$MTBX_BASELINE run -c bench true")
hyperfine -N --warmup 3 --runs 30 --export-json "$work/run.json" "${base[@]}" \
    -n "mtbx run" "$bin run -c bench true" -n "podman exec" "podman exec bench true"
# 1b. run on a stopped container: mtbx starts it and waits for
# init-container's readiness (inotify on the stamp, `podman wait` for its
# end) against `podman start` + `podman exec` by hand (no wait at all:
# the floor). CPU time (user + system) shows what the waiting costs.
stop_bench="podman stop -t 0 bench"
base=()
[ -n "${MTBX_BASELINE:-}" ] && base=(-n "mtbx-baseline" "$MTBX_BASELINE run -c bench true")
hyperfine -N --runs 10 --prepare "$stop_bench" --export-json "$work/stopped.json" "${base[@]}" \
    -n "mtbx run" "$bin run -c bench true" \
    -n "podman start+exec" "sh -c 'podman start bench >/dev/null && podman exec bench true'"
# 1c. A start that waits a second (init-container delayed by Toolbx's
# TOOLBX_DELAY_ENTRY_POINT hook): what the waiting itself costs in CPU.
TOOLBX_DELAY_ENTRY_POINT=1 "$bin" create -y --tls-verify=false --image "$img" --arch arm64 slow >/dev/null
base=()
[ -n "${MTBX_BASELINE:-}" ] && base=(-n "mtbx-baseline" "$MTBX_BASELINE run -c slow true")
hyperfine -N --runs 5 --prepare "podman stop -t 0 slow" --export-json "$work/slow.json" "${base[@]}" \
    -n "mtbx run" "$bin run -c slow true"
# 2. create to first run.
# By hand: a static native shell (the host's busybox) mounts binfmt_misc in
# the container's own user namespace, registers QEMU, runs arm64 `true`.
by_hand="podman pull -q --tls-verify=false --arch arm64 $img >/dev/null && podman run --rm --network none --privileged --uidmap 0:0:65536 --gidmap 0:0:65536 -v $qemu:/qemu:ro -v /bin/busybox:/busybox:ro --entrypoint /busybox $img sh -c 'mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc && echo \"$line\" > /proc/sys/fs/binfmt_misc/register && /bin/true'"
hyperfine --runs 5 --prepare "$wipe" --export-json "$work/create.json" \
    -n "mtbx create+run" "$bin create -y --tls-verify=false --image $img --arch arm64 bench >/dev/null && $bin run -c bench true" \
    -n "by hand" "$by_hand"
# 3. Against Toolbx, natively (Toolbx has no --arch), on a Debian image.
eval "$wipe"
need_tools mmdebstrap
dpkg-query -W -f='${Status}' podman-toolbox 2>/dev/null | grep -q "install ok installed" \
    || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman-toolbox >/dev/null
[ -S /run/dbus/system_bus_socket ] || { mkdir -p /run/dbus; dbus-daemon --system --fork; }
deb="$root/target/test-assets/bench-debian-12.tar"
[ -f "$deb" ] || mmdebstrap --quiet --variant=minbase --include=libcap2-bin,sudo,passwd bookworm "$deb"
podman import -q --change 'LABEL com.github.containers.toolbox=true' "$deb" localhost/bench-debian:12 >/dev/null
toolbx=/usr/bin/toolbox
"$toolbx" -y create -i localhost/bench-debian:12 tbx-bench >/dev/null 2>&1
"$bin" create -y --image localhost/bench-debian:12 mtbx-bench >/dev/null 2>&1
"$toolbx" run -c tbx-bench true && "$bin" run -c mtbx-bench true
user="$(id -un)"
hyperfine -N --warmup 3 --runs 20 --export-json "$work/toolbx.json" \
    -n "mtbx run" "$bin run -c mtbx-bench true" \
    -n "toolbox run" "$toolbx run -c tbx-bench true" \
    -n "podman exec" "podman exec mtbx-bench true" \
    -n "podman exec login" "podman exec --user $user mtbx-bench bash --login -c true"
"$toolbx" rm -f tbx-bench >/dev/null 2>&1 || true
"$bin" rm --force mtbx-bench >/dev/null 2>&1 || true
python3 - "$work/run.json" "$work/create.json" "$work/toolbx.json" "$work/stopped.json" "$work/slow.json" <<'PY'
import json, sys
r, c, t = ({x["command"]: x["mean"] for x in json.load(open(f))["results"]} for f in sys.argv[1:4])
st = {x["command"]: x for x in json.load(open(sys.argv[4]))["results"]}
m, p = st["mtbx run"], st["podman start+exec"]
cpu = lambda x: (x["user"] + x["system"]) * 1000
print(f"run on a stopped container: mtbx {m['mean']*1000:.0f} ms ({cpu(m):.0f} ms CPU), podman start+exec "
      f"{p['mean']*1000:.0f} ms ({cpu(p):.0f} ms CPU), ratio {m['mean']/p['mean']:.2f} (CPU {cpu(m)/cpu(p):.2f})")
sl = {x["command"]: x for x in json.load(open(sys.argv[5]))["results"]}
print(f"run on a stopped container whose start waits 1 s: mtbx {sl['mtbx run']['mean']*1000:.0f} ms, "
      f"{cpu(sl['mtbx run']):.0f} ms CPU" + (f"; baseline build {sl['mtbx-baseline']['mean']*1000:.0f} ms, "
      f"{cpu(sl['mtbx-baseline']):.0f} ms CPU" if "mtbx-baseline" in sl else ""))
if "mtbx-baseline" in st:
    b = st["mtbx-baseline"]
    print(f"  baseline build {b['mean']*1000:.0f} ms ({cpu(b):.0f} ms CPU): ratio to it {m['mean']/b['mean']:.2f}")
print(f"run on a running container: mtbx {r['mtbx run']*1000:.0f} ms, podman exec {r['podman exec']*1000:.0f} ms, ratio {r['mtbx run']/r['podman exec']:.2f}")
if "mtbx-baseline" in r:
    print(f"  baseline build {r['mtbx-baseline']*1000:.0f} ms: ratio to it {r['mtbx run']/r['mtbx-baseline']:.2f}")
print(f"create to first run: mtbx {c['mtbx create+run']:.2f} s, by hand {c['by hand']:.2f} s, ratio {c['mtbx create+run']/c['by hand']:.2f}")
print(f"against Toolbx (Debian 12, native): mtbx run {t['mtbx run']*1000:.0f} ms, toolbox run {t['toolbox run']*1000:.0f} ms, "
      f"podman exec {t['podman exec']*1000:.0f} ms, podman exec through the login shell {t['podman exec login']*1000:.0f} ms")
print(f"  mtbx/toolbox = {t['mtbx run']/t['toolbox run']:.2f}; mtbx/podman exec = {t['mtbx run']/t['podman exec']:.2f}; "
      f"mtbx/(podman exec, login shell) = {t['mtbx run']/t['podman exec login']:.2f}")
PY
