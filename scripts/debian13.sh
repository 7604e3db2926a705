#!/usr/bin/env bash
# The second system the tests run on: Debian 13 (trixie) with podman 5.4,
# runc, passt, rootless overlay, QEMU 10 and Debian's Toolbx, as a
# directory tree on this machine (no VM), entered as its root file system.
#
#   scripts/debian13.sh build            make the tree once (prints its path)
#   scripts/debian13.sh enter CMD...     CMD as root on that system
#   scripts/debian13.sh test [ARGS...]   the podman vendor tests on it
#   scripts/debian13.sh check            why it cannot run here (exit 1), if so
#
# The reference machine runs Debian 12 (podman 4.3, rootless vfs, QEMU
# 7.2); most Toolbx users run podman 5. This gives the tests that touch
# podman a second system without a second machine.
#
# build: mmdebstrap writes the trixie tree to $MTBX_DEBIAN13_DIR/tree
#   (default /var/tmp/mtbx-debian13; 2-3 minutes and 1.2 GB here)
#   with everything the vendor tests call, the rootless test user mtbxtest
#   with subordinate id ranges, and runc as podman's runtime. It is rebuilt
#   only when this recipe changes (a key in the tree records it).
# enter: new mount and PID namespaces; the tree becomes / by pivot_root (a
#   chrooted process may not create user namespaces, so rootless podman
#   would not work under chroot); the host's /dev and /sys, a /proc of the
#   new PID namespace, a fresh tmpfs on /run and an empty /tmp, as after a
#   reboot. When CMD ends, every process it started ends with it,
#   containers included: run a whole scenario in one call.
#   MTBX_DEBIAN13_BIND="DIR..." binds host directories at the same paths.
# test: builds the vendor test binary on the host (Debian 12's glibc runs
#   on trixie), binds this checkout in at the same path (the tests find
#   their assets through paths compiled in, target/test-assets...), and runs
#   the modules that touch podman in one enter call, rootful and rootless.
#   With arguments that are not options, those are the test filters
#   instead of the modules; options go to the test binary.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DIR="${MTBX_DEBIAN13_DIR:-/var/tmp/mtbx-debian13}"
TREE="$DIR/tree"
export PATH="$HOME/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# What the vendor tests call, and what makes it the system users have:
# podman with its Debian 13 companions (runc: crun refuses this kernel's
# hybrid cgroups; passt; netavark; fuse-overlayfs is not needed, rootless
# overlay is native), uidmap for rootless, qemu-user-static, skopeo and
# docker-registry (the vendors' tools the tests compare with), mmdebstrap
# and arch-test (Debian images for the parity and CPU tests when not cached
# yet; trixie's mmdebstrap wants arch-test for arm64),
# busybox-static, gcc and libc6-dev, util-linux (runuser, unshare,
# setpriv, script via bsdutils), openssl (test certificates), sudo,
# Debian's Toolbx (podman-toolbox) with dbus, for comparing by hand.
PACKAGES=podman,runc,conmon,catatonit,netavark,aardvark-dns,passt,uidmap,skopeo,qemu-user-static,podman-toolbox,docker-registry,mmdebstrap,arch-test,busybox-static,gcc,libc6-dev,util-linux,bsdutils,mount,passwd,login,procps,iproute2,openssl,ca-certificates,sudo,dbus,tmux,tar,gzip,zstd,xz-utils
SUITE=trixie
TEST_USER=mtbxtest
SUBIDS=200000-265535
# The vendor test modules that run podman (rootful and rootless).
# (Their Debian images come from target/test-assets/debian, which the
# Debian 12 run fills first; otherwise they are built in the tree.)
MODULES=(toolbox:: toolbx_parity:: pull:: local_images:: export:: cpu_model:: user_hosts:: provision:: box_options:: host_exec:: toolbx_made:: assemble:: nvidia_cdi::)

die() { echo "debian13: $*" >&2; exit 1; }

# Why this machine cannot build or enter the tree, on stdout; nothing
# when it can.
why_not() {
    if [ "$(id -u)" != 0 ]; then
        echo "needs root (mmdebstrap --mode=root, pivot_root in new namespaces)"
    elif [ "$(dpkg --print-architecture 2>/dev/null)" != amd64 ]; then
        echo "the tests' images and QEMU set are made for amd64 hosts"
    elif ! command -v mmdebstrap >/dev/null; then
        echo "mmdebstrap not installed (scripts/setup.sh installs it)"
    elif ! command -v unshare >/dev/null || ! command -v pivot_root >/dev/null; then
        echo "unshare and pivot_root (util-linux) not installed"
    fi
}

# The recipe's key: the tree is rebuilt when any of it changes.
recipe_key() {
    { echo "$SUITE $PACKAGES $TEST_USER $SUBIDS"; declare -f build_tree finish_tree; } | sha256sum | cut -d' ' -f1
}

# The main suite's mirror, as the host's apt has it. Only that line: a
# security mirror's index can be out of sync for a while ("File has
# unexpected size ... Mirror sync in progress?") and would fail the build.
mirror() {
    local m=""
    m="$(grep -hm1 '^URIs:' /etc/apt/sources.list.d/debian.sources 2>/dev/null | awk '{print $2}')" || true
    [ -n "$m" ] || m="$(grep -hm1 '^deb .*debian' /etc/apt/sources.list 2>/dev/null | awk '{print $2}')" || true
    echo "${m:-http://deb.debian.org/debian}"
}

build_tree() {
    local out="$1"
    mmdebstrap --mode=root --variant=apt --format=directory \
        --aptopt='Acquire::Retries "5"' \
        --include="$PACKAGES" \
        "$SUITE" "$out" "deb $(mirror) $SUITE main" </dev/null
}

# Inside the new tree: the rootless test user with its id ranges, and
# runc as podman's runtime (the tests give podman a containers.conf of
# their own too; this one is for `enter` by hand).
finish_tree() {
    local t="$1"
    chroot "$t" sh -ec "
        id $TEST_USER >/dev/null 2>&1 || useradd --create-home --shell /bin/bash $TEST_USER
        grep -q '^$TEST_USER:' /etc/subuid || usermod --add-subuids $SUBIDS $TEST_USER
        grep -q '^$TEST_USER:' /etc/subgid || usermod --add-subgids $SUBIDS $TEST_USER"
    mkdir -p "$t/etc/containers"
    printf '# This machine mounts cgroup v1 and v2 side by side: crun refuses that.\n[engine]\nruntime = "runc"\n' \
        >"$t/etc/containers/containers.conf"
}

build() {
    local reason key try
    reason="$(why_not)"
    [ -z "$reason" ] || die "$reason"
    key="$(recipe_key)"
    if [ -x "$TREE/usr/bin/podman" ] && [ "$(cat "$TREE/etc/mtbx-debian13.key" 2>/dev/null)" = "$key" ]; then
        echo "$TREE"
        return
    fi
    mkdir -p "$DIR"
    echo "debian13: building the $SUITE tree in $TREE (log: $DIR/build.log)" >&2
    for try in 1 2 3; do
        rm -rf --one-file-system "$TREE.part"
        if build_tree "$TREE.part" >"$DIR/build.log" 2>&1; then
            finish_tree "$TREE.part" >>"$DIR/build.log" 2>&1
            echo "$key" >"$TREE.part/etc/mtbx-debian13.key"
            rm -rf --one-file-system "$TREE"
            mv "$TREE.part" "$TREE"
            echo "$TREE"
            return
        fi
        echo "debian13: mmdebstrap failed (try $try of 3); last lines of $DIR/build.log:" >&2
        tail -n 5 "$DIR/build.log" >&2
        sleep 10
    done
    rm -rf --one-file-system "$TREE.part"
    die "could not build the $SUITE tree (see $DIR/build.log)"
}

enter() {
    [ "$#" -gt 0 ] || set -- bash -l
    local reason tmp status=0
    reason="$(why_not)"
    [ -z "$reason" ] || die "$reason"
    [ -x "$TREE/usr/bin/podman" ] || die "no tree in $TREE; run: scripts/debian13.sh build"
    # /tmp of this call, on disk (images and stores go there), removed
    # after it; the namespaces, their mounts and processes are gone by then.
    tmp="$(mktemp -d "$DIR/tmp.XXXXXX")"
    chmod 1777 "$tmp"
    unshare --mount --pid --fork --propagation private -- "$0" __inside "$tmp" "$@" || status=$?
    rm -rf --one-file-system "$tmp"
    return "$status"
}

# In the new mount and PID namespaces (this shell is PID 1 there until exec):
# assemble the system and make it /.
inside() {
    local tmp="$1" b host_binfmt=0
    shift
    grep -q ' /proc/sys/fs/binfmt_misc ' /proc/self/mountinfo && host_binfmt=1
    mount --bind "$TREE" "$TREE" # pivot_root wants a mount point
    mount --rbind /dev "$TREE/dev"
    mount --rbind /sys "$TREE/sys"
    mount -t proc proc "$TREE/proc"
    [ "$host_binfmt" = 0 ] || mount -t binfmt_misc binfmt_misc "$TREE/proc/sys/fs/binfmt_misc"
    mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs "$TREE/run"
    mkdir -m 1777 "$TREE/run/lock"
    # The links a booted system's systemd-tmpfiles makes directly in /run,
    # from the packages' tmpfiles.d: podman-toolbox's /run/host -> ../,
    # the path through which Debian 13's Toolbx finds its ELF interpreter
    # (without it, /usr/bin/toolbox is "not found").
    cat "$TREE"/usr/lib/tmpfiles.d/*.conf 2>/dev/null |
        awk '$1 == "L" && $2 ~ "^/run/[^/]+$" && NF >= 7 {print $2, $7}' |
        while read -r link target; do ln -sfn "$target" "$TREE$link"; done
    mount --bind "$tmp" "$TREE/tmp"
    for b in ${MTBX_DEBIAN13_BIND:-}; do
        mkdir -p "$TREE$b"
        mount --rbind "$b" "$TREE$b"
    done
    cp /etc/resolv.conf "$TREE/etc/resolv.conf" 2>/dev/null || true
    cd "$TREE"
    # The old root goes on top of the new one and is then detached.
    pivot_root . .
    umount -l .
    cd /
    # podman wants / shared, as on a booted system.
    mount --make-rshared /
    # A booted system's D-Bus system bus: Debian 13's Toolbx refuses to
    # create a container without its socket. It ends with this call, as
    # every process started here.
    if [ -x /usr/bin/dbus-daemon ]; then
        mkdir -p /run/dbus
        dbus-daemon --system --fork >/dev/null 2>&1 || true
    fi
    exec env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root \
        TERM="${TERM:-dumb}" LANG=C.UTF-8 PODMAN_IGNORE_CGROUPSV1_WARNING=1 "$@"
}

# The vendor test binary, built on the host; its path on stdout.
vendor_binary() {
    (cd "$ROOT" && cargo test --locked --no-run --test vendor --message-format=json) |
        grep '"name":"vendor"' | grep -o '"executable":"[^"]*"' | tail -n 1 | cut -d'"' -f4
}

run_tests() {
    local bin vendor filters=() options=() a
    for a in "$@"; do
        case "$a" in -*) options+=("$a") ;; *) filters+=("$a") ;; esac
    done
    [ "${#filters[@]}" -gt 0 ] || filters=("${MODULES[@]}")
    build >/dev/null
    bin="${MTBX_STATIC_BIN:-$ROOT/target/x86_64-unknown-linux-musl/release/mtbx}"
    [ -x "$bin" ] || bin="$ROOT/$("$ROOT/scripts/setup.sh")"
    vendor="$(vendor_binary)"
    [ -x "$vendor" ] || die "cargo did not name the vendor test binary"
    MTBX_DEBIAN13_BIND="$ROOT" enter env \
        MTBX_STATIC_BIN="$bin" \
        MTBX_TEST_REQUIRE_ALL="${MTBX_TEST_REQUIRE_ALL:-0}" \
        RUST_BACKTRACE="${RUST_BACKTRACE:-1}" \
        ${RUST_TEST_THREADS:+RUST_TEST_THREADS="$RUST_TEST_THREADS"} \
        sh -c 'cd "$1" && shift && echo "debian13: $(. /etc/os-release && echo "$PRETTY_NAME"), $(podman --version), $(runc --version | head -n 1), $(qemu-aarch64-static --version | head -n 1)" &&
            exec "$@"' sh "$ROOT" "$vendor" "${options[@]}" "${filters[@]}"
}

action="${1:-}"
[ "$#" -eq 0 ] || shift
case "$action" in
    build) build ;;
    enter) enter "$@" ;;
    test) run_tests "$@" ;;
    check)
        reason="$(why_not)"
        [ -z "$reason" ] || { echo "$reason"; exit 1; }
        ;;
    __inside) inside "$@" ;;
    *) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2; exit 2 ;;
esac
