//! Helpers shared by the integration tests.
//!
//! Tests that need something the machine may lack (user namespaces, QEMU,
//! a C compiler) call `skip`, which prints the reason where it is always
//! seen (straight to stderr, past libtest's capture) and, when
//! `MTBX_TEST_REQUIRE_ALL=1` is set as CI sets it, fails instead: on CI
//! nothing may be skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The mtbx binary cargo built for these tests.
pub fn mtbx_bin() -> PathBuf {
    // Integration tests run from target/<profile>/deps/; cargo builds the
    // package's binary one level up before it runs them.
    let exe = std::env::current_exe().expect("the test binary's path");
    exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>").join("mtbx")
}

/// `mtbx ARGS...` as a command.
pub fn mtbx(args: &[&str]) -> Command {
    let mut c = Command::new(mtbx_bin());
    c.args(args).env("NO_COLOR", "1");
    c
}

/// Report a skipped test, or fail it when CI requires everything to run.
/// Returns so the caller can `return` right after.
pub fn skip(test: &str, reason: &str) {
    if std::env::var("MTBX_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("{test}: cannot run here but MTBX_TEST_REQUIRE_ALL=1: {reason}");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {reason}");
}

/// Whether `unshare` (util-linux) can make a user namespace with a
/// private binfmt_misc instance here; the reason when not.
pub fn userns_binfmt() -> Result<(), String> {
    let out = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-ec"])
        .arg("d=$(mktemp -d); mount -t binfmt_misc binfmt_misc \"$d\"; umount \"$d\"; rmdir \"$d\"")
        .output()
        .map_err(|e| format!("cannot run unshare: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "no user namespace with its own binfmt_misc (needs Linux >= 6.7 and user namespaces): {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Run a shell script as root of a new user namespace with its own mount
/// namespace (`unshare -Urm`). In the script, `MTBX` is the binary and `W` a
/// private scratch directory, removed afterwards (mounts made in it vanish
/// with the namespace).
pub fn in_userns(script: &str) -> Output {
    let work = tempfile::tempdir().expect("scratch dir");
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-ec", script])
        .env("MTBX", mtbx_bin())
        .env("W", work.path())
        .env("NO_COLOR", "1")
        .output()
        .expect("unshare runs")
}

/// Text of an output stream, for assertions and messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The host's binfmt_misc as a comparable value: whether it is mounted,
/// and every file in it with its content.
pub fn host_binfmt_snapshot() -> (bool, Vec<(String, String)>) {
    let root = Path::new("/proc/sys/fs/binfmt_misc");
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains(" /proc/sys/fs/binfmt_misc ") && l.contains("binfmt_misc"));
    let mut files = Vec::new();
    if let Ok(dir) = std::fs::read_dir(root) {
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name == "register" {
                continue;
            }
            files.push((name, std::fs::read_to_string(e.path()).unwrap_or_default()));
        }
    }
    files.sort();
    (mounted, files)
}

/// Whether a static QEMU for this target is installed where mtbx looks.
pub fn have_qemu(arch: &mtbx::emu::arch::Arch) -> bool {
    mtbx::emu::host::find_interpreter(arch, None).usable().is_some()
}

/// Peak RSS in MiB of one command, from the kernel's high-water mark of
/// its own address space (VmHWM), sampled until it exits. (The parent's
/// ru_maxrss would also count the test process's pages, which the child
/// had between fork and exec.) Its stdout is discarded; it must succeed.
pub fn peak_rss_mib(mut c: Command) -> u64 {
    let mut child = c.stdout(std::process::Stdio::null()).spawn().unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    loop {
        if let Ok(s) = std::fs::read_to_string(&status_file) {
            if let Some(v) = s.lines().find_map(|l| l.strip_prefix("VmHWM:")) {
                peak_kib = peak_kib.max(v.trim().trim_end_matches("kB").trim().parse().unwrap_or(0));
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "{c:?} failed");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    peak_kib / 1024
}

pub mod debian;
pub mod fixtures;
pub mod images;
pub mod local;
pub mod podman;
pub mod real_registry;
pub mod registry;
pub mod store;

/// Whether the tests run as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// An extended attribute of `path` itself (not following a symlink).
pub fn lgetxattr(path: &Path, key: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 64 << 10];
    let n = rustix::fs::lgetxattr(path, key, &mut buf).ok()?;
    buf.truncate(n);
    Some(buf)
}
