//! `mtbx run --rootfs` and `enter --rootfs` where no distribution is
//! needed: every refusal is one line with mtbx's exit code, and a tree
//! made of the project's own static test program runs in the sandbox
//! (native, so no QEMU), with 127 and 126 as a shell gives them and the
//! tree left exactly as it was. The real Debian trees, foreign and
//! native, are in vendor-tests/rootfs.rs.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

/// A busybox tree of the host's architecture (Debian's busybox-static,
/// which scripts/setup.sh fetches into target/test-assets), belonging to
/// the unprivileged test user (or to root, with `as_root`), run by that
/// user: /bin/busybox and its applets, /etc/passwd and /etc/group
/// without the user, and no /home, /proc, /dev, /sys nor /tmp unless
/// `dirs` names them. The user's scratch directory in its home, for
/// files the tree's programs aim at.
struct UserTree {
    dir: tempfile::TempDir,
    user: common::podman::TestUser,
    home_scratch: tempfile::TempDir,
}

impl UserTree {
    fn new(test: &str, as_root: bool, dirs: &[&str]) -> Option<UserTree> {
        if !common::is_root() {
            skip(test, "needs root to act as the unprivileged test user");
            return None;
        }
        let Some(user) = common::podman::test_user() else {
            skip(test, "no user mtbxtest (scripts/setup.sh creates it)");
            return None;
        };
        if let Err(why) = userns_binfmt() {
            skip(test, &why);
            return None;
        }
        let deb = match Arch::host().short_name().as_str() {
            "amd64" => "amd64",
            "arm64" => "arm64",
            other => {
                skip(test, &format!("no busybox test asset for {other}"));
                return None;
            }
        };
        let busybox = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("target/test-assets/busybox")
            .join(deb)
            .join("busybox");
        if !busybox.is_file() {
            skip(test, &format!("no {} (scripts/setup.sh fetches it)", busybox.display()));
            return None;
        }
        let dir = tempfile::Builder::new().prefix("mtbx-rootfs-bb-").tempdir().unwrap();
        let t = dir.path();
        for d in ["bin", "etc"].iter().chain(dirs) {
            std::fs::create_dir_all(t.join(d)).unwrap();
        }
        std::fs::copy(&busybox, t.join("bin/busybox")).unwrap();
        std::fs::set_permissions(t.join("bin/busybox"), std::fs::Permissions::from_mode(0o755)).unwrap();
        for applet in ["sh", "mv", "ln", "sleep", "id", "cat", "true", "ls", "echo", "rm", "mkdir"] {
            std::os::unix::fs::symlink("busybox", t.join("bin").join(applet)).unwrap();
        }
        std::fs::write(t.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(t.join("etc/group"), "root:x:0:\n").unwrap();
        std::fs::set_permissions(t, std::fs::Permissions::from_mode(0o755)).unwrap();
        if !as_root {
            let out = Command::new("chown")
                .arg("-hR")
                .arg(format!("{}:{}", user.uid, user.gid))
                .arg(t)
                .output()
                .unwrap();
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
        let home_scratch = tempfile::Builder::new().prefix(".mtbx-rootfs-").tempdir_in(&user.home).unwrap();
        std::os::unix::fs::chown(home_scratch.path(), Some(user.uid), Some(user.gid)).unwrap();
        let tmp = home_scratch.path().join("tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::os::unix::fs::chown(&tmp, Some(user.uid), Some(user.gid)).unwrap();
        Some(UserTree { dir, user, home_scratch })
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    /// The temporary directory this test's runs are given (TMPDIR): the
    /// tests beside run as the same user at the same time, so a shared
    /// /tmp would show their scratch as this one's.
    fn tmp(&self) -> PathBuf {
        self.home_scratch.path().join("tmp")
    }

    /// `mtbx ARGS` as the test user, in its scratch directory.
    fn mtbx(&self, args: &[&str]) -> Command {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.user.name, "--"])
            .arg(common::mtbx_bin())
            .args(args)
            .current_dir(self.home_scratch.path())
            .env("HOME", &self.user.home)
            .env("USER", &self.user.name)
            .env("NO_COLOR", "1")
            .env_remove("XDG_RUNTIME_DIR")
            // mtbx's journals go under the scratch directory, which each
            // test holds unchanged (the tests beside share the home).
            .env("XDG_STATE_HOME", self.home_scratch.path().join("state"))
            .env("TMPDIR", self.tmp());
        c
    }

    fn run(&self, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
        let out = self.mtbx(args).output().unwrap();
        (out.status.code(), out.stdout, text(&out.stderr))
    }

    /// What is in the user's home (one level deep, but other tests'
    /// scratch directories, and this test's scratch directory whole), to
    /// hold it unchanged.
    fn home(&self) -> BTreeSet<String> {
        let mut all: BTreeSet<String> = std::fs::read_dir(&self.user.home)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(".mtbx-rootfs-"))
            .collect();
        all.extend(listing(self.home_scratch.path()).into_iter().map(|p| format!("scratch/{p}")));
        all
    }
}

impl Drop for UserTree {
    fn drop(&mut self) {
        // Never remove a tree with something mounted in it.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounts.contains(self.path()) {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            panic!("{} is still mounted: left in place", dir.keep().display());
        }
    }
}

/// The mount table holds nothing of `dir`.
fn unmounted(dir: &str) {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(dir), "{mounts}");
}

/// A tree's program moves /home and /etc away and plants links to
/// directories outside the tree where mtbx's mount points were (the
/// user's own ~/o/USER and ~/outside/resolv.conf): mtbx's cleanup must
/// not follow them, and removes nothing outside the tree.
#[test]
fn cleanup_never_follows_a_link_the_tree_planted() {
    let Some(t) = UserTree::new("cleanup_never_follows_a_link_the_tree_planted", false, &[]) else { return };
    let scratch = t.home_scratch.path();
    let o = scratch.join("o");
    let outside = scratch.join("outside");
    std::fs::create_dir_all(o.join(&t.user.name)).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("resolv.conf"), "").unwrap();
    std::fs::write(outside.join("passwd"), "").unwrap();
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", t.user.uid, t.user.gid))
        .arg(scratch)
        .output()
        .unwrap();
    assert!(out.status.success());
    let home_before = t.home();
    let script = format!(
        "mv /home /h && ln -s {o} /home && mv /etc /e && /bin/ln -s {outside} /etc",
        o = o.display(),
        outside = outside.display()
    );
    let (code, _, err) = t.run(&["run", "--rootfs", t.path(), "sh", "-c", &script]);
    assert_eq!(code, Some(0), "{err}");
    assert!(o.join(&t.user.name).is_dir(), "~/o/USER was removed");
    assert!(outside.join("resolv.conf").is_file(), "~/outside/resolv.conf was removed");
    assert_eq!(t.home(), home_before, "the home is as it was");
    unmounted(t.path());
}

/// After a refusal half-way (/dev a link out of the tree: after /proc was
/// made), and after mtbx is killed with SIGKILL in the middle of a run,
/// the tree is put back: at once after the refusal, by the next run after
/// the kill. The copies of passwd and group never reach the host's /tmp.
#[test]
fn a_refused_or_killed_run_leaves_the_tree_as_it_was() {
    let Some(t) = UserTree::new("a_refused_or_killed_run_leaves_the_tree_as_it_was", false, &[]) else {
        return;
    };
    let before = listing(t.dir.path());
    let home_before = t.home();
    std::os::unix::fs::symlink("/dev", t.dir.path().join("dev")).unwrap();
    let (code, _, err) = t.run(&["run", "--rootfs", t.path(), "true"]);
    assert_eq!(code, Some(1), "{err}");
    one_line_error(&err, "/dev");
    std::fs::remove_file(t.dir.path().join("dev")).unwrap();
    assert_eq!(listing(t.dir.path()), before, "the refused run left the tree as it was");
    assert_eq!(t.home(), home_before, "and the home");

    let tmp_before = user_tmp(&t.tmp());
    let mut child = t
        .mtbx(&["run", "--rootfs", t.path(), "sh", "-c", "echo ready; exec sleep 600"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
        .unwrap();
    assert_eq!(line.trim(), "ready");
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let mtbx_pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mtbx_pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    child.wait().unwrap();
    // The sandbox dies with mtbx (its pid 1 has a parent-death signal).
    while running_in(t.path()) {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_ne!(listing(t.dir.path()), before, "the killed run left its mount points");
    assert_eq!(
        new_in(&tmp_before, user_tmp(&t.tmp())),
        Vec::<String>::new(),
        "nothing of the run in its TMPDIR"
    );
    let (code, _, err) = t.run(&["run", "--rootfs", t.path(), "true"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(listing(t.dir.path()), before, "the next run put the tree back");
    assert_eq!(t.home(), home_before, "the home is as it was");
    unmounted(t.path());
}

/// Entries of a test's temporary directory that are what mtbx's scratch
/// would be (a directory holding a copy of passwd or group, an overlay
/// layer's upper and work directories).
fn user_tmp(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            (n.starts_with("mtbx-rootfs-") && e.path().join("entries").exists())
                || (n.starts_with("mtbx-layer-") && e.path().join("upper").exists())
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// What appeared in `after` that was not in `before`.
fn new_in(before: &BTreeSet<String>, after: BTreeSet<String>) -> Vec<String> {
    after.difference(before).cloned().collect()
}

/// Whether a process's command line names `dir`.
fn running_in(dir: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
        std::fs::read(e.path().join("cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(dir))
    })
}

/// A tree the user may not write (root's, as `sudo cp -a` makes it), with
/// /proc, /dev and /sys but no /home: the home's mount point is made in a
/// layer over the tree's root, which must not hide /proc and /dev (as the
/// user: ids; as root: /proc and /dev have their files).
#[test]
fn a_tree_you_cannot_write_without_home_runs() {
    let Some(t) =
        UserTree::new("a_tree_you_cannot_write_without_home_runs", true, &["proc", "dev", "sys", "tmp"])
    else {
        return;
    };
    let before = listing(t.dir.path());
    let tmp_before = user_tmp(&t.tmp());
    let (code, out, err) = t.run(&["run", "--rootfs", t.path(), "id", "-u"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(text(&out).trim(), t.user.uid.to_string());
    let (code, out, err) = t.run(&["run", "--rootfs", t.path(), "--root", "ls", "/proc/self/", "/dev/null"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(text(&out).contains("/dev/null") && text(&out).contains("status"), "{}", text(&out));
    assert_eq!(listing(t.dir.path()), before);
    assert_eq!(new_in(&tmp_before, user_tmp(&t.tmp())), Vec::<String>::new(), "the layer's scratch is gone");
    unmounted(t.path());
}

/// The tree's passwd, with a Latin-1 GECOS byte, is copied with your line
/// byte for byte; one past the limit is refused whole, in one line; a FIFO
/// as passwd or group is refused at once, and one as /bin/sh passed over
/// (never read: another program tells the architecture).
#[test]
fn passwd_is_copied_byte_for_byte_and_fifos_are_refused() {
    let Some(t) = UserTree::new("passwd_is_copied_byte_for_byte_and_fifos_are_refused", false, &[]) else {
        return;
    };
    let passwd = t.dir.path().join("etc/passwd");
    let mut original =
        b"root:x:0:0:root:/root:/bin/sh\nrene:x:4242:4242:Ren\xe9:/home/rene:/bin/sh\n".to_vec();
    std::fs::write(&passwd, &original).unwrap();
    let (code, out, err) = t.run(&["run", "--rootfs", t.path(), "cat", "/etc/passwd"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&original), "{:?}", text(&out));
    assert!(text(&out[original.len()..]).starts_with(&format!("{}:x:{}:", t.user.name, t.user.uid)));
    assert_eq!(std::fs::read(&passwd).unwrap(), original, "the tree's own is untouched");

    let before = listing(t.dir.path());
    while original.len() <= 4 << 20 {
        original.extend_from_slice(b"filler:x:7:7::/:/bin/sh\n");
    }
    std::fs::write(&passwd, &original).unwrap();
    let (code, _, err) = t.run(&["run", "--rootfs", t.path(), "true"]);
    assert_eq!(code, Some(2), "{err}");
    one_line_error(&err, "/etc/passwd is larger than 4 MiB");
    assert_eq!(listing(t.dir.path()), before);

    std::fs::write(&passwd, b"root:x:0:0:root:/root:/bin/sh\n").unwrap();
    for file in ["etc/passwd", "etc/group", "bin/sh"] {
        let path = t.dir.path().join(file);
        let saved = t.dir.path().join("saved");
        std::fs::rename(&path, &saved).unwrap();
        let out = Command::new("mkfifo").arg(&path).output().unwrap();
        assert!(out.status.success());
        std::os::unix::fs::lchown(&path, Some(t.user.uid), Some(t.user.gid)).unwrap();
        let (code, _, err) = t.run(&["run", "--rootfs", t.path(), "true"]);
        if file == "bin/sh" {
            // Another program (/bin/ls) tells the architecture.
            assert_eq!(code, Some(0), "{file}: {err}");
        } else {
            assert_eq!(code, Some(2), "{file}: {err}");
            one_line_error(&err, &format!("/{file} cannot be read: it is a FIFO"));
        }
        std::fs::remove_file(&path).unwrap();
        std::fs::rename(&saved, &path).unwrap();
        assert_eq!(listing(t.dir.path()), before, "{file}");
    }
    unmounted(t.path());
}

/// Two runs on one tree at once: the first to end leaves the mount
/// points it made, which the second is using (removing one would
/// unmount it there), and the last one to end takes them away.
#[test]
fn the_last_of_two_runs_on_a_tree_puts_it_back() {
    use std::io::{BufRead, BufReader, Write};
    let Some(t) = UserTree::new("the_last_of_two_runs_on_a_tree_puts_it_back", false, &[]) else { return };
    let before = listing(t.dir.path());
    let home_before = t.home();
    let script = "echo ready; read x; cat /proc/self/stat >/dev/null && ls /dev/null && echo fine";
    let start = || {
        let mut child = t
            .mtbx(&["run", "--rootfs", t.path(), "sh", "-c", script])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready");
        (child, out)
    };
    let finish = |(mut child, mut out): (std::process::Child, BufReader<std::process::ChildStdout>)| {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
        assert!(child.wait().unwrap().success(), "{rest}");
        rest
    };
    let first = start();
    let second = start();
    assert!(finish(first).contains("fine"));
    assert_ne!(listing(t.dir.path()), before, "the second still runs in it");
    assert!(finish(second).contains("fine"), "the second's /proc and /dev are still there");
    assert_eq!(listing(t.dir.path()), before, "the last one put the tree back");
    assert_eq!(t.home(), home_before);
    unmounted(t.path());
}
