//! `mtbx run --rootfs` and `enter --rootfs` where no distribution is
//! needed: every refusal is one line with mtbx's exit code, and a tree
//! made of the project's own static test program runs in the sandbox
//! (native, so no QEMU), with 127 and 126 as a shell gives them and the
//! tree left exactly as it was. The real Debian trees, foreign and
//! native, are in vendor-tests/rootfs.rs.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::{mtbx, skip, text, userns_binfmt};
use mtbx::emu::arch::Arch;
use mtbx::emu::testprog;

/// A tree holding `arch`'s test program at /usr/bin/prog, reached as
/// /bin/sh through a usr-merged /bin (when `shell`) or as /usr/bin/env.
fn tree(arch: &Arch, shell: bool) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let bin = d.path().join("usr/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::write(bin.join("prog"), testprog::program(arch)).unwrap();
    std::fs::set_permissions(bin.join("prog"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bin.join("noexec"), b"data").unwrap();
    std::os::unix::fs::symlink("usr/bin", d.path().join("bin")).unwrap();
    std::os::unix::fs::symlink("prog", bin.join(if shell { "sh" } else { "env" })).unwrap();
    d
}

/// Every path under `dir`, links not followed.
fn listing(dir: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            out.insert(p.strip_prefix(dir).unwrap().display().to_string());
            if p.symlink_metadata().unwrap().is_dir() {
                todo.push(p);
            }
        }
    }
    out
}

fn run(args: &[&str]) -> (Option<i32>, String, String) {
    let out = mtbx(args).output().unwrap();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// One line, `mtbx: error: ...`, containing `what`.
fn one_line_error(err: &str, what: &str) {
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("mtbx: error: ") && err.contains(what), "{what}: {err}");
}

#[test]
fn what_is_not_a_root_file_system_directory_is_refused_in_one_line() {
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("notes");
    std::fs::write(&file, "hello").unwrap();
    let mut mbr = vec![0u8; 1024];
    mbr[510..512].copy_from_slice(&[0x55, 0xaa]);
    let img = d.path().join("sdcard.img");
    std::fs::write(&img, &mbr).unwrap();
    let tar = d.path().join("root.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(0);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "etc/hostname", std::io::empty()).unwrap();
    std::fs::write(&tar, b.into_inner().unwrap()).unwrap();
    let empty = d.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = d.path().join("missing");
    for (dir, what) in [
        (&file, "is not a directory"),
        (&img, "is a disk image: mounting its partitions needs root"),
        (&tar, "is an archive: extract it into a directory first"),
        (&missing, "no such directory"),
        (&empty, "cannot tell the architecture"),
    ] {
        let (code, _, err) = run(&["run", "--rootfs", dir.to_str().unwrap(), "true"]);
        assert_eq!(code, Some(2), "{what}: {err}");
        one_line_error(&err, what);
    }
    assert_eq!(listing(&empty), BTreeSet::new(), "nothing was made in a refused tree");

    // Flags that do not go with --rootfs.
    let t = tree(Arch::host(), true);
    let dir = t.path().to_str().unwrap();
    for args in [
        &["run", "--root", "true"][..],
        &["run", "--rootfs", dir, "-c", "box", "true"],
        &["enter", "--rootfs", dir, "box"],
        &["run", "--rootfs", dir, "--image", "debian", "true"],
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
    }
    // --arch contradicting the programs.
    let foreign = if Arch::host().short_name() == "arm64" { "amd64" } else { "arm64" };
    let (code, _, err) = run(&["run", "--rootfs", dir, "--arch", foreign, "true"]);
    assert_eq!(code, Some(2), "{err}");
    one_line_error(&err, "programs (/bin/sh), not");
    // enter without a shell: only /usr/bin/env tells the architecture.
    let no_shell = tree(Arch::host(), false);
    let (code, _, err) = run(&["enter", "--rootfs", no_shell.path().to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    one_line_error(&err, "has no shell");
}

#[test]
fn a_native_tree_runs_in_the_sandbox_and_is_left_as_it_was() {
    let test = "a_native_tree_runs_in_the_sandbox_and_is_left_as_it_was";
    if let Err(why) = userns_binfmt() {
        return skip(test, &why);
    }
    let t = tree(Arch::host(), true);
    let dir = t.path().to_str().unwrap();
    let before = listing(t.path());
    // The program reached through PATH and /bin -> usr/bin, in the tree:
    // it prints what uname(2) says.
    let (code, out, err) = run(&["run", "--rootfs", dir, "sh"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(Arch::host().uname.contains(&testprog::parse_output(out.as_bytes()).as_str()), "{out}");
    let (code, _, err) = run(&["run", "--rootfs", dir, "--root", "/usr/bin/prog"]);
    assert_eq!(code, Some(0), "{err}");
    // Not found is 127, found but not runnable 126, as a shell says.
    let (code, _, err) = run(&["run", "--rootfs", dir, "no-such-command"]);
    assert_eq!(code, Some(127), "{err}");
    one_line_error(&err, "no-such-command: command not found in the root file system");
    let (code, _, err) = run(&["run", "--rootfs", dir, "noexec"]);
    assert_eq!(code, Some(126), "{err}");
    one_line_error(&err, "cannot run noexec");
    // /proc, /dev, /sys, /tmp and the home were made as mount points and
    // are gone again; nothing is left mounted.
    assert_eq!(listing(t.path()), before, "the tree is as it was");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir), "{mounts}");
}

#[test]
fn a_foreign_tree_without_its_qemu_says_what_to_install() {
    let test = "a_foreign_tree_without_its_qemu_says_what_to_install";
    if !common::is_root() {
        return skip(test, "needs root to hide the installed QEMU in a mount namespace");
    }
    let arm = Arch::parse(if Arch::host().short_name() == "arm64" { "amd64" } else { "arm64" }).unwrap();
    let t = tree(arm, true);
    // Every file where mtbx looks for this QEMU, hidden in a mount
    // namespace of the test's own.
    let names = arm.qemu_binaries().join(" ");
    let script = format!(
        "for n in {names}; do for d in /usr/bin /usr/local/bin /bin /usr/sbin; do \
           [ -f $d/$n ] && mount --bind /dev/null $d/$n; done; done; \
         [ -d /usr/libexec/qemu-binfmt ] && mount -t tmpfs none /usr/libexec/qemu-binfmt; \
         exec \"$MTBX\" run --rootfs \"$DIR\" sh"
    );
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .env("MTBX", common::mtbx_bin())
        .env("DIR", t.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    one_line_error(&err, "install qemu-user-static");
}
