//! init-container outside containers and on kernels without a binfmt_misc
//! of the container's own.
//!
//! The fallback test builds nested user namespaces: the outer one (root of
//! it, with its own mount namespace) mounts a binfmt_misc instance and
//! registers arm64, standing in for "the host", and puts tmpfs over /etc,
//! /tmp and /run with the files podman would provide, so nothing of the
//! real host is written (mtbx is copied to /run/mtbx-bin first: the checkout may be
//! under /tmp); the inner one runs init-container unprivileged, so its own
//! mount fails, as on an old kernel.

use common::{host_binfmt_snapshot, in_userns, mtbx, skip, text, userns_binfmt};
use mtbx::emu::arch::Arch;
use mtbx::emu::binfmt::{Flags, Registration};

#[test]
fn init_container_refuses_to_run_outside_an_mtbx_container() {
    let before = std::fs::read("/etc/passwd").unwrap();
    let out = mtbx(&[
        "init-container",
        "--arch",
        "arm64",
        "--user",
        "nobody",
        "--uid",
        "65534",
        "--gid",
        "65534",
        "--home",
        "/nonexistent",
        "--shell",
        "/bin/sh",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("this is not one"), "{}", text(&out.stderr));
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), before, "the host's passwd is untouched");
}

#[test]
fn without_an_instance_of_its_own_init_container_uses_an_ancestors_entry_and_says_so() {
    let test = "without_an_instance_of_its_own_init_container_uses_an_ancestors_entry_and_says_so";
    if let Err(why) = userns_binfmt() {
        return skip(test, &why);
    }
    let arm64 = Arch::parse("arm64").unwrap();
    let Some(qemu) = mtbx::emu::host::find_interpreter(arm64, None).usable().map(|q| q.path.clone()) else {
        return skip(test, "no static qemu-aarch64 (install qemu-user-static)");
    };
    let before = host_binfmt_snapshot();
    let passwd = std::fs::read("/etc/passwd").unwrap();
    let line = Registration::for_arch(arm64, &qemu, Flags::parse("F").unwrap()).line().unwrap();
    let q = qemu.display();
    let out = in_userns(&format!(
        "mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
         echo '{line}' > /proc/sys/fs/binfmt_misc/register
         mount -t tmpfs tmpfs /run
         cp \"$MTBX\" /run/mtbx-bin
         for d in /etc /tmp; do mount -t tmpfs tmpfs $d; done
         chmod 1777 /tmp
         printf 'root:x:0:0:root:/root:/bin/sh\\n' > /etc/passwd
         touch /run/.containerenv; mkdir /run/mtbx-stamp; chmod 777 /run/mtbx-stamp
         unshare --user /run/mtbx-bin init-container --arch arm64 --user ann --uid 1000 --gid 1000 \
             --home /home/ann --shell /bin/sh --qemu {q} &
         pid=$!
         for i in $(seq 200); do [ -f /run/mtbx-stamp/ready ] && break; sleep 0.05; done
         kill $pid; wait $pid || true
         echo \"stamp: $(cat /run/mtbx-stamp/ready 2>/dev/null | wc -w)\"
         echo \"passwd: $(grep '^ann:' /etc/passwd)\"
         echo \"markers: $(ls /run/.toolboxenv /run/.toolbxenv | wc -l) $(cat /run/mtbx/arch)\""
    ));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        all.contains("mtbx-init: warning: no binfmt_misc of the container's own")
            && all.contains("using the host's entry qemu-aarch64"),
        "the fallback is taken and said: {all}"
    );
    assert!(
        all.contains("mtbx-init: ready") && all.contains("stamp: 2"),
        "set up through the ancestor's entry: {all}"
    );
    assert!(all.contains("passwd: ann::1000:1000:ann:/home/ann:/bin/sh"), "{all}");
    assert!(all.contains("markers: 2 arm64"), "Toolbx's markers and the architecture: {all}");
    assert_eq!(host_binfmt_snapshot(), before);
    assert_eq!(std::fs::read("/etc/passwd").unwrap(), passwd, "the host's passwd is untouched");
}
