//! What this host offers for emulation: interpreters, kernel features,
//! user namespaces and existing binfmt_misc registrations.
//!
//! Everything a user has to fix before a foreign container can run is found
//! here, so that `create` can stop before a multi-gigabyte pull and say
//! exactly what to install.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::emu::arch::Arch;
use crate::emu::binfmt::{BinfmtFs, Entry};
use crate::emu::elf::{self, ElfError, StaticElf};

/// Directories searched after `$PATH`, where distributions put QEMU.
const QEMU_DIRS: &[&str] = &["/usr/bin", "/usr/local/bin", "/bin", "/usr/sbin", "/usr/libexec"];

/// One file that could be the interpreter, and what the ELF check said.
#[derive(Debug)]
pub struct Candidate {
    /// Where it was found.
    pub path: PathBuf,
    /// The verdict.
    pub check: Result<StaticElf, ElfError>,
}

/// The result of looking for an architecture's interpreter.
#[derive(Debug)]
pub struct InterpreterSearch {
    /// Every existing candidate, in search order.
    pub candidates: Vec<Candidate>,
}

impl InterpreterSearch {
    /// The first candidate that passed the static check.
    pub fn usable(&self) -> Option<&StaticElf> {
        self.candidates.iter().find_map(|c| c.check.as_ref().ok())
    }

    /// Why nothing is usable, as one line that says what to install.
    pub fn problem(&self, arch: &Arch) -> String {
        match self.candidates.iter().find_map(|c| c.check.as_ref().err()) {
            Some(err) => err.to_string(),
            None => format!(
                "no qemu interpreter for {} (looked for {} in $PATH and {}); install qemu-user-static",
                arch.platform(),
                arch.qemu_binaries().join(" and "),
                QEMU_DIRS.join(", ")
            ),
        }
    }
}

/// Look for a static QEMU interpreter for `arch`: the explicit path if one
/// is given (and only that), else `qemu-<t>-static` and `qemu-<t>` on
/// `$PATH` and in the usual directories, and Debian's
/// `/usr/libexec/qemu-binfmt/<t>-binfmt-P`.
pub fn find_interpreter(arch: &Arch, explicit: Option<&Path>) -> InterpreterSearch {
    let host = Arch::host();
    let paths: Vec<PathBuf> = match explicit {
        Some(p) => vec![p.to_path_buf()],
        None => candidate_paths(arch),
    };
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut candidates = Vec::new();
    for path in paths {
        if explicit.is_none() {
            if !path.is_file() {
                continue;
            }
            let real = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.contains(&real) {
                continue;
            }
            seen.push(real);
        }
        let check = elf::check_static(&path, host);
        match &check {
            Ok(info) => tracing::debug!("interpreter candidate {}: {}", path.display(), info.linkage),
            Err(e) => tracing::debug!("interpreter candidate rejected: {e}"),
        }
        candidates.push(Candidate { path, check });
    }
    InterpreterSearch { candidates }
}

fn candidate_paths(arch: &Arch) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    for d in QEMU_DIRS {
        if !dirs.iter().any(|x| x == Path::new(d)) {
            dirs.push(d.into());
        }
    }
    let mut out = Vec::new();
    for name in arch.qemu_binaries() {
        for d in &dirs {
            out.push(d.join(&name));
        }
    }
    out.push(PathBuf::from(format!("/usr/libexec/qemu-binfmt/{}-binfmt-P", arch.qemu.name)));
    out
}

/// The running kernel's version as (major, minor).
pub fn kernel_version() -> Option<(u32, u32)> {
    let uts = nix::sys::utsname::uname().ok()?;
    parse_kernel_version(&uts.release().to_string_lossy())
}

/// Parse "6.18.44-fc-v595" into (6, 18).
pub fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Whether the kernel gives each user namespace its own binfmt_misc
/// (merged in Linux 6.7).
pub fn kernel_has_userns_binfmt(version: Option<(u32, u32)>) -> bool {
    version.is_some_and(|v| v >= (6, 7))
}

/// Whether this process is in the initial user namespace, that is, whether
/// /proc/sys/fs/binfmt_misc would be the host's own instance.
pub fn in_initial_userns() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").map(|m| is_identity_map(&m)).unwrap_or(true)
}

/// The initial namespace's map is the full identity: `0 0 4294967295`.
pub fn is_identity_map(map: &str) -> bool {
    let fields: Vec<&str> = map.split_whitespace().collect();
    fields == ["0", "0", "4294967295"]
}

/// What the host's binfmt_misc holds right now.
#[derive(Debug, Serialize)]
pub struct HostBinfmt {
    /// The mount point read.
    pub root: PathBuf,
    /// Whether binfmt_misc is mounted there.
    pub mounted: bool,
    /// The global on/off switch, when mounted.
    pub enabled: Option<bool>,
    /// The entries, when mounted and readable.
    pub entries: Vec<Entry>,
    /// Why they could not be read, if so.
    pub error: Option<String>,
}

impl HostBinfmt {
    /// Read an instance without changing it; a host without binfmt_misc
    /// mounted simply has no entries.
    pub fn read(fs: &BinfmtFs) -> HostBinfmt {
        let mounted = fs.is_mounted();
        let mut out = HostBinfmt {
            root: fs.root().to_path_buf(),
            mounted,
            enabled: None,
            entries: Vec::new(),
            error: None,
        };
        if mounted {
            match fs.enabled().and_then(|en| Ok((en, fs.entries()?))) {
                Ok((en, entries)) => {
                    out.enabled = Some(en);
                    out.entries = entries;
                }
                Err(e) => out.error = Some(e.to_string()),
            }
        }
        out
    }

    /// The enabled entry that takes `arch`'s binaries, if any.
    pub fn entry_for(&self, arch: &Arch) -> Option<&Entry> {
        if self.enabled == Some(false) {
            return None;
        }
        self.entries.iter().find(|e| e.enabled && e.serves(arch))
    }
}

/// A probe's result in a report: null, or the reason it failed.
fn ok_or_reason<S: serde::Serializer, E: std::fmt::Display>(
    r: &Result<(), E>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match r {
        Ok(()) => s.serialize_none(),
        Err(e) => s.serialize_some(&e.to_string()),
    }
}

/// Kernel and namespace facts, gathered once per command.
#[derive(Debug, Serialize)]
pub struct Capabilities {
    /// `uname -r`.
    pub kernel: String,
    /// Kernel >= 6.7.
    pub kernel_userns_binfmt: bool,
    /// Whether a user namespace with its own binfmt_misc could be made,
    /// and if not, why.
    #[serde(serialize_with = "ok_or_reason")]
    pub sandbox: Result<(), crate::emu::sandbox::SandboxError>,
}

impl Capabilities {
    /// Probe the running system (forks one short-lived child).
    pub fn probe() -> Capabilities {
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Capabilities {
            kernel_userns_binfmt: kernel_has_userns_binfmt(parse_kernel_version(&kernel)),
            kernel,
            sandbox: crate::emu::sandbox::probe(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(parse_kernel_version("6.7.0"), Some((6, 7)));
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_kernel_version("garbage"), None);
        assert!(kernel_has_userns_binfmt(Some((6, 7))));
        assert!(kernel_has_userns_binfmt(Some((7, 0))));
        assert!(!kernel_has_userns_binfmt(Some((6, 6))));
        assert!(!kernel_has_userns_binfmt(None));
    }

    #[test]
    fn identity_map_is_the_initial_namespace() {
        assert!(is_identity_map("         0          0 4294967295\n"));
        assert!(!is_identity_map("         0       1000          1\n"));
        assert!(!is_identity_map("0 0 4294967295\n1 1 1\n"));
    }

    #[test]
    fn explicit_path_is_the_only_candidate() {
        let arch = Arch::parse("arm64").unwrap();
        let s = find_interpreter(arch, Some(Path::new("/nonexistent/qemu")));
        assert_eq!(s.candidates.len(), 1);
        assert!(s.usable().is_none());
        assert!(s.problem(arch).contains("/nonexistent/qemu"), "{}", s.problem(arch));
    }

    #[test]
    fn a_dynamic_interpreter_is_reported_with_its_libraries() {
        // /bin/sh is dynamically linked on every distribution mtbx targets.
        let sh = Path::new("/bin/sh");
        if elf::check_static(sh, Arch::host()).is_ok() {
            eprintln!("skipped: /bin/sh is static here");
            return;
        }
        let arch = Arch::parse("arm64").unwrap();
        let s = find_interpreter(arch, Some(sh));
        let msg = s.problem(arch);
        assert!(msg.contains("dynamically linked") && msg.contains("libc.so"), "{msg}");
    }
}
