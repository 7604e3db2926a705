//! `mtbx run --rootfs` and `enter --rootfs` on real Debian trees (bookworm
//! built by mmdebstrap, tests/common/src/debian.rs), arm64 under the
//! installed qemu-user-static and amd64 natively, run by the unprivileged
//! test user with no podman and no root: the tree is a copy the user
//! extracted, so it owns it as one owns a copied SD card root. From inside:
//! the architecture (found without --arch), the ids (yours, or 0 with
//! --root), the tree's Debian, your home and working directory, the host's
//! resolv.conf, a /proc with the sandbox's processes only, a usable /tmp,
//! the namespace's own binfmt_misc; stdin, exit codes, Ctrl-C on a
//! terminal, SIGTERM passed on, the working directory kept or the home
//! instead, and a login shell from `enter`. Afterwards nothing is mounted,
//! the tree is as it was, and the host's binfmt_misc, passwd, group and
//! shadow too.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::podman::{test_user, TestUser};
use common::{skip, text};

/// A Debian tree the test user owns, and mtbx where the user can run it.
struct Tree {
    dir: tempfile::TempDir,
    user: TestUser,
    mtbx: PathBuf,
    _bin: tempfile::TempDir,
    /// A directory in the user's home, the working directory of the runs.
    work: tempfile::TempDir,
}

impl Tree {
    fn new(test: &str, deb_arch: &str) -> Option<Tree> {
        let Some(stat) = std::env::var_os("MTBX_STATIC_BIN").map(PathBuf::from).filter(|p| p.is_file())
        else {
            skip(test, "needs the static mtbx build in MTBX_STATIC_BIN (scripts/test.sh sets it)");
            return None;
        };
        if !common::is_root() {
            skip(test, "needs root to act as the unprivileged test user");
            return None;
        }
        let Some(user) = test_user() else {
            skip(test, "no user mtbxtest (scripts/setup.sh creates it)");
            return None;
        };
        if let Err(why) = common::userns_binfmt() {
            skip(test, &why);
            return None;
        }
        let arch = mtbx::emu::arch::Arch::parse(deb_arch).unwrap();
        if !arch.is_native_on(mtbx::emu::arch::Arch::host()) && !common::have_qemu(arch) {
            skip(test, &format!("no static QEMU for {deb_arch} (apt-get install qemu-user-static)"));
            return None;
        }
        let tar = common::debian::rootfs(test, deb_arch)?;
        // The cached tar belongs to root; the user extracts a copy of its
        // own (device nodes aside: the sandbox binds the host's /dev).
        let dir = tempfile::Builder::new().prefix("mtbx-rootfs-").tempdir().unwrap();
        std::os::unix::fs::chown(dir.path(), Some(user.uid), Some(user.gid)).unwrap();
        let out = as_user(&user, "tar")
            .args(["-xf"])
            .arg(&tar)
            .arg("-C")
            .arg(dir.path())
            .args(["--exclude=./dev/*", "--no-same-owner"])
            .output()
            .unwrap();
        assert!(out.status.success(), "extracting {}: {}", tar.display(), text(&out.stderr));
        let bin = tempfile::Builder::new().prefix("mtbx-bin-").tempdir().unwrap();
        std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let mtbx = bin.path().join("mtbx");
        std::fs::copy(&stat, &mtbx).unwrap();
        let work = tempfile::Builder::new().prefix(".mtbx-rootfs-").tempdir_in(&user.home).unwrap();
        std::os::unix::fs::chown(work.path(), Some(user.uid), Some(user.gid)).unwrap();
        std::fs::write(work.path().join("marker"), "seen-from-inside\n").unwrap();
        Some(Tree { dir, user, mtbx, _bin: bin, work })
    }

    /// `mtbx ARGS` as the test user, in the working directory.
    fn mtbx(&self, args: &[&str]) -> Command {
        let mut c = as_user(&self.user, self.mtbx.to_str().unwrap());
        c.args(args).current_dir(self.work.path()).env("NO_COLOR", "1");
        c
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Mounts live in the sandbox's namespace only; never remove a tree
        // with something mounted in it.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        if mounts.contains(self.path()) {
            let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
            let kept = dir.keep();
            panic!("{} is still mounted: left in place", kept.display());
        }
    }
}

/// `program` as the test user, under a login's umask (0002, as Debian 13
/// gives): what mtbx makes in the tree and the home must not depend on it.
/// The shell execs the program, so runuser's child is still mtbx.
fn as_user(user: &TestUser, program: &str) -> Command {
    let mut c = Command::new("runuser");
    let umask = format!("umask {:04o} && exec \"$@\"", common::podman::LOGIN_UMASK);
    c.args(["-u", &user.name, "--", "sh", "-c", &umask, "sh", program])
        .env("HOME", &user.home)
        .env("USER", &user.name)
        // Shells inside keep no history in the user's home.
        .env("HISTFILE", "/dev/null")
        .env_remove("XDG_RUNTIME_DIR");
    c
}

/// `key=value` lines of a report.
fn field(out: &str, key: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in: {out}"))
        .to_string()
}

/// What the sandbox looks like from inside, one `key=value` per line;
/// reads one line of stdin and ends with 7.
const REPORT: &str = r#"
echo uname=$(uname -m)
echo uid=$(id -u) gid=$(id -g)
echo name=$(id -un):$(id -gn)
echo deb=$(cat /etc/debian_version)
echo pwd=$(pwd)
echo marker=$(cat marker)
echo home=$(touch "$HOME/.mtbx-rootfs-probe" && stat -c %u "$HOME/.mtbx-rootfs-probe" && rm "$HOME/.mtbx-rootfs-probe")
echo resolv=$(cat /etc/resolv.conf | tr '\n' '|')
echo pids=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')
echo init=$(cat /proc/1/comm)
echo tmp=$(echo x > /tmp/probe && cat /tmp/probe && ls -A /tmp | tr '\n' ' ')
echo binfmt=$(cat /proc/sys/fs/binfmt_misc/qemu-* 2>/dev/null | grep -E '^(enabled|interpreter)' | tr '\n' '|')
read line
echo stdin=$line
exit 7
"#;

fn check(deb_arch: &str) {
    let test = format!("rootfs_{deb_arch}_runs_as_the_unprivileged_user");
    let test = test.as_str();
    if Command::new("script").arg("--version").output().is_err() {
        return skip(test, "script(1) not installed (bsdutils): it gives enter a terminal");
    }
    let binfmt_before = common::host_binfmt_snapshot();
    let files_before = host_files();
    let Some(t) = Tree::new(test, deb_arch) else { return };
    let arch = mtbx::emu::arch::Arch::parse(deb_arch).unwrap();
    let native = arch.is_native_on(mtbx::emu::arch::Arch::host());
    let uname = arch.uname[0];
    // The tree's own resolv.conf, different from the host's: inside, the
    // host's is seen, and the tree's is untouched afterwards.
    let tree_resolv = t.dir.path().join("etc/resolv.conf");
    std::fs::write(&tree_resolv, "nameserver 192.0.2.1 # the tree's own\n").unwrap();
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap();
    let tree_debian = std::fs::read_to_string(t.dir.path().join("etc/debian_version")).unwrap();
    let listing_before = listing(t.dir.path());

    let mut runs = vec![(vec!["run", "--rootfs", t.path(), "sh", "-c", REPORT], false)];
    runs.push((
        vec!["run", "--rootfs", t.path(), "--arch", deb_arch, "--root", "--", "sh", "-c", REPORT],
        true,
    ));
    for (args, root) in runs {
        let mut child = t
            .mtbx(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"hello-stdin\n").unwrap();
        let out = child.wait_with_output().unwrap();
        let o = text(&out.stdout);
        let what = format!("{deb_arch} {args:?}: {o}{}", text(&out.stderr));
        assert_eq!(out.status.code(), Some(7), "{what}");
        assert_eq!(field(&o, "uname"), uname, "{what}");
        let ids =
            if root { "uid=0 gid=0".to_string() } else { format!("uid={} gid={}", t.user.uid, t.user.gid) };
        assert_eq!(format!("uid={}", field(&o, "uid")), ids, "{what}");
        // Who you are has a name inside (the tree's passwd and group, not
        // having you, are seen with you added; the files stay as they were).
        let names = if root { "root:root".to_string() } else { format!("{0}:{0}", t.user.name) };
        assert_eq!(field(&o, "name"), names, "{what}");
        assert_eq!(field(&o, "deb"), tree_debian.trim(), "{what}");
        assert_eq!(Path::new(&field(&o, "pwd")), t.work.path(), "{what}");
        assert_eq!(field(&o, "marker"), "seen-from-inside", "{what}");
        // A file made in the home from inside is the user's on the host
        // (root inside is the user too).
        let inside_uid = if root { 0 } else { t.user.uid };
        assert_eq!(field(&o, "home"), inside_uid.to_string(), "{what}");
        assert_eq!(field(&o, "resolv"), host_resolv.replace('\n', "|"), "{what}");
        // Only the sandbox's processes: its pid 1 (mtbx, waiting), the
        // shell, and the report's own pipeline.
        let pids: Vec<u32> = field(&o, "pids").split_whitespace().map(|p| p.parse().unwrap()).collect();
        assert!(pids.contains(&1) && pids.len() <= 8, "{what}");
        assert_eq!(field(&o, "init"), "mtbx", "{what}");
        assert_eq!(field(&o, "tmp"), "x probe", "{what}: a fresh, writable /tmp");
        let binfmt = field(&o, "binfmt");
        if native {
            assert_eq!(binfmt, "", "{what}: no QEMU for a native tree");
        } else {
            let q = mtbx::emu::host::find_interpreter(arch, None).usable().unwrap().path.clone();
            assert_eq!(binfmt, format!("enabled|interpreter {}|", q.display()), "{what}");
        }
        assert_eq!(field(&o, "stdin"), "hello-stdin", "{what}");
    }

    // enter on a terminal: a login shell, commands in, output and its exit
    // status out. The shell is bash while the user is not in the tree's
    // passwd (and for root, whose line names bash); the tree's passwd
    // decides once the user is in it (here dash, as /bin/sh).
    let passwd = t.dir.path().join("etc/passwd");
    let passwd_before = std::fs::read(&passwd).unwrap();
    for (root, listed, shell) in [(false, false, "-bash"), (true, false, "-bash"), (false, true, "-sh")] {
        if listed {
            let mut with_user = passwd_before.clone();
            with_user.extend_from_slice(
                format!(
                    "{}:x:{}:{}::{}:/bin/sh\n",
                    t.user.name,
                    t.user.uid,
                    t.user.gid,
                    t.user.home.display()
                )
                .as_bytes(),
            );
            std::fs::write(&passwd, with_user).unwrap();
        }
        let mut cmd = format!("{} enter --rootfs {}", t.mtbx.display(), t.path());
        if root {
            cmd.push_str(" --root");
        }
        let mut child = as_user(&t.user, "script")
            .args(["-qec", &cmd, "/dev/null"])
            .current_dir(t.work.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(b"echo inside-$(uname -m)-$((40+2)) $0 $(id -u) $PWD; exit 5\n")
            .unwrap();
        let out: Output = child.wait_with_output().unwrap();
        std::fs::write(&passwd, &passwd_before).unwrap();
        let o = text(&out.stdout);
        let uid = if root { 0 } else { t.user.uid };
        let expect = format!("inside-{uname}-42 {shell} {uid} {}", t.work.path().display());
        assert!(
            o.contains(&expect),
            "{deb_arch} enter (root {root}, in passwd {listed}): wanted {expect}: {o}"
        );
        assert_eq!(out.status.code(), Some(5), "{deb_arch} enter: {o}");
    }

    // Ctrl-C on a terminal stops the command, and mtbx says so as a
    // shell does: 128 + SIGINT.
    let cmd = format!("{} run --rootfs {} sh -c 'echo ready; exec sleep 1000'", t.mtbx.display(), t.path());
    let mut child = as_user(&t.user, "script")
        .args(["-qec", &cmd, "/dev/null"])
        .current_dir(t.work.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ready") {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the command never started");
    }
    stdin.write_all(b"\x03").unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{deb_arch}: Ctrl-C: {rest}");

    // The working directory: kept when the tree has it, else the home
    // (the host's /tmp is not inside: the sandbox has a /tmp of its own).
    for (cwd, inside) in [(Path::new("/usr/share"), Path::new("/usr/share")), (t._bin.path(), &t.user.home)] {
        let out = t.mtbx(&["run", "--rootfs", t.path(), "pwd"]).current_dir(cwd).output().unwrap();
        assert_eq!(text(&out.stdout).trim(), inside.to_str().unwrap(), "{deb_arch}: {}", text(&out.stderr));
    }

    // SIGTERM to mtbx reaches the command (its trap runs), and mtbx ends
    // with the command's code.
    let script = "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 1; done";
    let mut child =
        t.mtbx(&["run", "--rootfs", t.path(), "sh", "-c", script]).stdout(Stdio::piped()).spawn().unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    // runuser's child is mtbx.
    let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", child.id())).unwrap();
    let mtbx_pid: i32 = children.split_whitespace().next().unwrap().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(mtbx_pid), nix::sys::signal::Signal::SIGTERM).unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert_eq!(rest.trim(), "got-term", "{deb_arch}: SIGTERM reaches the command");
    assert_eq!(child.wait().unwrap().code(), Some(3), "{deb_arch}: SIGTERM");

    // A tree the user may not write (a card's root copied as root): the
    // home is mounted over a copy-on-write layer of the tree's /home, and
    // both the tree and the layer's scratch space are gone afterwards.
    let owned = tempfile::Builder::new().prefix("mtbx-rootfs-root-").tempdir().unwrap();
    let tar = common::debian::rootfs(test, deb_arch).unwrap();
    let out = Command::new("tar")
        .arg("-xf")
        .arg(&tar)
        .arg("-C")
        .arg(owned.path())
        .arg("--exclude=./dev/*")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    std::fs::set_permissions(owned.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let scratch = tempfile::Builder::new().prefix("mtbx-rootfs-tmp-").tempdir().unwrap();
    std::os::unix::fs::chown(scratch.path(), Some(t.user.uid), Some(t.user.gid)).unwrap();
    let owned_before = listing(owned.path());
    let out = t
        .mtbx(&[
            "run",
            "--rootfs",
            owned.path().to_str().unwrap(),
            "sh",
            "-c",
            "uname -m; pwd; cat marker; id -u",
        ])
        .env("TMPDIR", scratch.path())
        .output()
        .unwrap();
    let o = text(&out.stdout);
    let expect = format!("{uname}\n{}\nseen-from-inside\n{}\n", t.work.path().display(), t.user.uid);
    assert_eq!(
        (out.status.code(), o.as_str()),
        (Some(0), expect.as_str()),
        "{deb_arch}: {}",
        text(&out.stderr)
    );
    assert!(text(&out.stderr).is_empty(), "{deb_arch}: no warning: {}", text(&out.stderr));
    assert_eq!(listing(owned.path()), owned_before, "{deb_arch}: the root-owned tree is as it was");
    assert_eq!(
        std::fs::read_dir(scratch.path()).unwrap().count(),
        0,
        "{deb_arch}: the layer's scratch is gone"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(owned.path().to_str().unwrap()), "{mounts}");
    drop(owned);

    // Nothing changed: the tree (mount points made for the home are gone
    // again, its resolv.conf is its own), the mounts, the host.
    assert_eq!(listing(t.dir.path()), listing_before, "{deb_arch}: the tree is as it was");
    assert_eq!(std::fs::read_to_string(&tree_resolv).unwrap(), "nameserver 192.0.2.1 # the tree's own\n");
    drop(t);
    assert_eq!(common::host_binfmt_snapshot(), binfmt_before, "the host's binfmt_misc is untouched");
    assert!(host_files() == files_before, "the host's passwd, group and shadow are untouched");
}

/// Every path under `dir` with its size (links not followed).
fn listing(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let m = p.symlink_metadata().unwrap();
            out.push((
                p.strip_prefix(dir).unwrap().display().to_string(),
                if m.is_file() { m.len() } else { 0 },
            ));
            if m.is_dir() {
                todo.push(p);
            }
        }
    }
    out.sort();
    out
}

fn host_files() -> Vec<Vec<u8>> {
    ["/etc/passwd", "/etc/group", "/etc/shadow"]
        .iter()
        .map(|f| std::fs::read(f).unwrap_or_default())
        .collect()
}

#[test]
fn rootfs_arm64_runs_as_the_unprivileged_user() {
    check("arm64");
}

#[test]
fn rootfs_amd64_runs_as_the_unprivileged_user() {
    check("amd64");
}
