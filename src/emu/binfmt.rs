//! The kernel's binfmt_misc: reading entries, building register lines, and
//! changing an instance through direct system calls.
//!
//! Since Linux 6.7 each user namespace can mount its own binfmt_misc
//! instance; mtbx prefers that sandbox and touches the host's instance only
//! when a user asks for it as root. Everything here works on an explicit
//! mount point, so the same code serves the host (`/proc/sys/fs/binfmt_misc`)
//! and a private instance mounted anywhere inside a user namespace.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use serde::Serialize;

use crate::emu::arch::{Arch, ARCHES};

/// Where the kernel's binfmt_misc lives on every Linux system.
pub const DEFAULT_ROOT: &str = "/proc/sys/fs/binfmt_misc";

/// statfs(2) f_type of binfmt_misc (`BINFMTFS_MAGIC`).
const BINFMTFS_MAGIC: i64 = 0x4249_4e4d;

/// The kernel rejects register lines longer than this (MAX_REGISTER_LENGTH).
const MAX_REGISTER_LENGTH: usize = 1920;

/// The entry flags, as the kernel spells them in a register line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Flags {
    /// P: pass the original argv[0] (QEMU >= 5.1 understands it).
    pub preserve_argv0: bool,
    /// O: hand the interpreter an open fd of the binary (needed by C).
    pub open_binary: bool,
    /// C: credentials from the binary, so setuid programs work; implies O.
    pub credentials: bool,
    /// F: open the interpreter at registration, so it need not exist in the
    /// container's mount namespace later.
    pub fix_binary: bool,
}

impl Flags {
    /// What mtbx registers in a binfmt_misc instance of its own (the
    /// sandbox of `arch check`): F, so the interpreter is opened now and
    /// need not exist where the program runs; P, so the program sees the
    /// argv[0] it was started with. Without P, QEMU hands the guest the
    /// file's path instead: busybox applets reached through a re-exec pick
    /// the wrong applet, `exec -a` does nothing and a login shell started
    /// as `-bash` is not one. Debian registers its qemu-*-static with P too.
    pub const SANDBOX: Flags =
        Flags { preserve_argv0: true, open_binary: false, credentials: false, fix_binary: true };

    /// What a toolbox container registers: the sandbox's flags plus C
    /// (credentials from the binary, and so O), which setuid programs such
    /// as sudo and su need under emulation. Safe there: the instance is the
    /// container's own.
    pub const CONTAINER: Flags =
        Flags { preserve_argv0: true, open_binary: true, credentials: true, fix_binary: true };

    /// Parse flag letters in any order (`"FC"`, `"OCF"`); C implies O as in
    /// the kernel.
    pub fn parse(letters: &str) -> Result<Flags, BinfmtError> {
        let mut f = Flags::default();
        for c in letters.chars() {
            match c.to_ascii_uppercase() {
                'P' => f.preserve_argv0 = true,
                'O' => f.open_binary = true,
                'C' => {
                    f.credentials = true;
                    f.open_binary = true;
                }
                'F' => f.fix_binary = true,
                _ => return Err(BinfmtError::BadFlags(letters.to_string())),
            }
        }
        Ok(f)
    }
}

impl fmt::Display for Flags {
    /// Letters in the kernel's own order: P O C F.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (on, c) in [
            (self.preserve_argv0, 'P'),
            (self.open_binary || self.credentials, 'O'),
            (self.credentials, 'C'),
            (self.fix_binary, 'F'),
        ] {
            if on {
                write!(f, "{c}")?;
            }
        }
        Ok(())
    }
}

/// What an entry matches on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Matcher {
    /// Magic bytes at an offset, with an optional mask.
    Magic {
        /// Byte offset of the magic in the file.
        offset: usize,
        /// The magic bytes (already masked by the kernel).
        #[serde(serialize_with = "hex")]
        magic: Vec<u8>,
        /// The mask, when the entry has one.
        #[serde(serialize_with = "hex_opt")]
        mask: Option<Vec<u8>>,
    },
    /// A file name extension.
    Extension(String),
}

fn hex<S: serde::Serializer>(b: &[u8], s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&to_hex(b))
}

fn hex_opt<S: serde::Serializer>(b: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
    match b {
        Some(b) => s.serialize_str(&to_hex(b)),
        None => s.serialize_none(),
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// One registered entry, as read back from `<root>/<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// The entry's file name.
    pub name: String,
    /// Whether the kernel uses it.
    pub enabled: bool,
    /// The interpreter path given at registration.
    pub interpreter: String,
    /// Its flags.
    pub flags: Flags,
    /// What it matches.
    pub matcher: Matcher,
}

impl Entry {
    /// Parse the text the kernel shows for an entry (`enabled`,
    /// `interpreter ...`, `flags: ...`, `offset ...`, `magic ...`, `mask ...`
    /// or `extension ...`).
    pub fn parse(name: &str, text: &str) -> Result<Entry, BinfmtError> {
        let bad = |why: &str| BinfmtError::BadEntry { name: name.to_string(), why: why.into() };
        let mut lines = text.lines();
        let enabled = match lines.next().map(str::trim) {
            Some("enabled") => true,
            Some("disabled") => false,
            _ => return Err(bad("first line is neither enabled nor disabled")),
        };
        let (mut interpreter, mut flags, mut offset) = (None, Flags::default(), 0usize);
        let (mut magic, mut mask, mut ext) = (None, None, None);
        for line in lines {
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            match key {
                "interpreter" => interpreter = Some(value.to_string()),
                "flags:" => flags = Flags::parse(value.trim())?,
                "offset" => offset = value.trim().parse().map_err(|_| bad("bad offset"))?,
                "magic" => magic = Some(from_hex(value.trim()).ok_or_else(|| bad("bad magic"))?),
                "mask" => mask = Some(from_hex(value.trim()).ok_or_else(|| bad("bad mask"))?),
                "extension" => ext = Some(value.trim_start_matches('.').to_string()),
                _ => {}
            }
        }
        let matcher = match (magic, ext) {
            (Some(magic), None) => Matcher::Magic { offset, magic, mask },
            (None, Some(ext)) => Matcher::Extension(ext),
            _ => return Err(bad("needs exactly one of magic or extension")),
        };
        let interpreter = interpreter.ok_or_else(|| bad("no interpreter line"))?;
        Ok(Entry { name: name.to_string(), enabled, interpreter, flags, matcher })
    }

    /// The platforms whose binaries this entry takes, found by applying its
    /// magic and mask to each platform's ELF header, whatever the entry is
    /// called. One QEMU target serves several rows (arm/v5, v6, v7).
    pub fn arches(&self) -> Vec<&'static Arch> {
        match &self.matcher {
            Matcher::Magic { offset, magic, mask } => {
                ARCHES.iter().filter(|a| a.matched_by(*offset, magic, mask.as_deref())).collect()
            }
            Matcher::Extension(_) => Vec::new(),
        }
    }

    /// Whether this entry takes `arch`'s binaries.
    pub fn serves(&self, arch: &Arch) -> bool {
        self.arches().iter().any(|a| std::ptr::eq(*a, arch))
    }
}

/// A registration to write: the text of one `register` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registration {
    /// Entry name.
    pub name: String,
    /// Byte offset of the magic.
    pub offset: usize,
    /// Magic bytes.
    pub magic: Vec<u8>,
    /// Mask bytes (same length as magic).
    pub mask: Vec<u8>,
    /// Interpreter path.
    pub interpreter: PathBuf,
    /// Flags.
    pub flags: Flags,
}

impl Registration {
    /// The registration QEMU's own script would write for `arch`.
    pub fn for_arch(arch: &Arch, interpreter: &Path, flags: Flags) -> Registration {
        Registration {
            name: arch.binfmt_name(),
            offset: 0,
            magic: arch.qemu.magic.to_vec(),
            mask: arch.qemu.mask.to_vec(),
            interpreter: interpreter.to_path_buf(),
            flags,
        }
    }

    /// The `:name:M:offset:magic:mask:interpreter:flags` line. Every magic
    /// and mask byte is written as a literal `\xHH`, which the kernel
    /// decodes itself; that keeps `:` and NUL bytes out of the line.
    pub fn line(&self) -> Result<String, BinfmtError> {
        let invalid = |why: &str| BinfmtError::Invalid(format!("{}: {why}", self.name));
        if self.name.is_empty()
            || self.name == "."
            || self.name == ".."
            || self.name == "register"
            || self.name == "status"
            || self.name.contains(['/', ':', '\n'])
        {
            return Err(invalid("bad entry name"));
        }
        if self.magic.is_empty() || self.magic.len() != self.mask.len() {
            return Err(invalid("magic and mask must be non-empty and equally long"));
        }
        let interp = self.interpreter.to_str().ok_or_else(|| invalid("interpreter not UTF-8"))?;
        if interp.is_empty() || interp.contains([':', '\n']) {
            return Err(invalid("interpreter path may not contain ':' or newlines"));
        }
        let esc = |b: &[u8]| b.iter().map(|x| format!("\\x{x:02x}")).collect::<String>();
        let line = format!(
            ":{}:M:{}:{}:{}:{}:{}",
            self.name,
            self.offset,
            esc(&self.magic),
            esc(&self.mask),
            interp,
            self.flags
        );
        if line.len() > MAX_REGISTER_LENGTH {
            return Err(invalid("register line longer than the kernel accepts"));
        }
        Ok(line)
    }
}

/// Failures of binfmt_misc operations; each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// Nothing of type binfmt_misc is mounted at the root.
    #[error("binfmt_misc is not mounted at {}; run as root to mount it", .0.display())]
    NotMounted(PathBuf),
    /// Writing `register` with an existing name.
    #[error("a binfmt_misc entry named {0} already exists; unregister it first")]
    Exists(String),
    /// The kernel refused the line, or mtbx refused to build it.
    #[error("invalid binfmt_misc registration: {0}")]
    Invalid(String),
    /// Flag F and an interpreter the kernel cannot open.
    #[error("interpreter {} does not exist", .0.display())]
    InterpreterMissing(PathBuf),
    /// No entry of that name.
    #[error("no binfmt_misc entry named {0}")]
    NoSuchEntry(String),
    /// The instance belongs to a user namespace we are not root in.
    #[error("permission denied writing {}: run as root, or mount an instance of this user namespace's own", .0.display())]
    PermissionDenied(PathBuf),
    /// Unknown flag letters.
    #[error("unknown binfmt_misc flags '{0}' (valid: P, O, C, F)")]
    BadFlags(String),
    /// An entry file that does not parse.
    #[error("cannot parse binfmt_misc entry {name}: {why}")]
    BadEntry {
        /// Entry name.
        name: String,
        /// What was wrong.
        why: String,
    },
    /// Any other system call failure.
    #[error("{what} {}: {errno}", path.display())]
    Sys {
        /// What was attempted.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        errno: Errno,
    },
}

/// One binfmt_misc instance, reached through its mount point.
#[derive(Debug, Clone)]
pub struct BinfmtFs {
    root: PathBuf,
}

impl Default for BinfmtFs {
    fn default() -> Self {
        BinfmtFs::new(DEFAULT_ROOT)
    }
}

impl BinfmtFs {
    /// The instance mounted (or to be mounted) at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        BinfmtFs { root: root.into() }
    }

    /// The mount point.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether a binfmt_misc filesystem is mounted at the root.
    pub fn is_mounted(&self) -> bool {
        // f_type is i64 on glibc and unsigned long on musl: compare as i64.
        #[allow(clippy::unnecessary_cast)]
        nix::sys::statfs::statfs(&self.root)
            .map(|s| s.filesystem_type().0 as i64 == BINFMTFS_MAGIC)
            .unwrap_or(false)
    }

    /// Mount binfmt_misc at the root with mount(2). In a user namespace
    /// (kernel >= 6.7) that creates the namespace's own empty instance; in
    /// the initial one it is the host's.
    pub fn mount(&self) -> Result<(), BinfmtError> {
        use nix::mount::{mount, MsFlags};
        tracing::debug!("mounting binfmt_misc on {}", self.root.display());
        mount(
            Some("binfmt_misc"),
            &self.root,
            Some("binfmt_misc"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|errno| self.sys("cannot mount binfmt_misc on", &self.root, errno))
    }

    /// Mount it unless it already is.
    pub fn ensure_mounted(&self) -> Result<(), BinfmtError> {
        if !self.is_mounted() {
            self.mount()?;
        }
        Ok(())
    }

    /// Whether the instance as a whole is enabled (`status`).
    pub fn enabled(&self) -> Result<bool, BinfmtError> {
        self.require_mounted()?;
        let path = self.root.join("status");
        let text = fs::read_to_string(&path).map_err(|e| self.io("cannot read", &path, e))?;
        Ok(text.trim() == "enabled")
    }

    /// Every entry, sorted by name.
    pub fn entries(&self) -> Result<Vec<Entry>, BinfmtError> {
        self.require_mounted()?;
        let dir = fs::read_dir(&self.root).map_err(|e| self.io("cannot list", &self.root, e))?;
        let mut out = Vec::new();
        for item in dir {
            let item = item.map_err(|e| self.io("cannot list", &self.root, e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            if name == "register" || name == "status" {
                continue;
            }
            match self.entry(&name) {
                Ok(e) => out.push(e),
                // Removed between listing and reading.
                Err(BinfmtError::NoSuchEntry(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One entry by name.
    pub fn entry(&self, name: &str) -> Result<Entry, BinfmtError> {
        let path = self.root.join(name);
        match fs::read_to_string(&path) {
            Ok(text) => Entry::parse(name, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(BinfmtError::NoSuchEntry(name.to_string()))
            }
            Err(e) => Err(self.io("cannot read", &path, e)),
        }
    }

    /// Write a registration to `register`.
    pub fn register(&self, reg: &Registration) -> Result<(), BinfmtError> {
        let line = reg.line()?;
        self.require_mounted()?;
        let path = self.root.join("register");
        tracing::debug!("writing {}: {line}", path.display());
        match write_once(&path, line.as_bytes()) {
            Ok(()) => Ok(()),
            Err(Errno::EEXIST) => Err(BinfmtError::Exists(reg.name.clone())),
            Err(Errno::EINVAL) => Err(BinfmtError::Invalid(line)),
            Err(Errno::ENOENT) => Err(BinfmtError::InterpreterMissing(reg.interpreter.clone())),
            Err(errno) => Err(self.sys("cannot write", &path, errno)),
        }
    }

    /// Enable or disable one entry (writes `1` or `0` to it).
    pub fn set_enabled(&self, name: &str, on: bool) -> Result<(), BinfmtError> {
        self.write_entry(name, if on { b"1" } else { b"0" })
    }

    /// Remove one entry (writes `-1` to it).
    pub fn remove(&self, name: &str) -> Result<(), BinfmtError> {
        self.write_entry(name, b"-1")
    }

    fn write_entry(&self, name: &str, what: &[u8]) -> Result<(), BinfmtError> {
        if name.is_empty() || name.contains('/') || name == "register" || name == "status" {
            return Err(BinfmtError::NoSuchEntry(name.to_string()));
        }
        self.require_mounted()?;
        let path = self.root.join(name);
        match write_once(&path, what) {
            Ok(()) => Ok(()),
            Err(Errno::ENOENT) => Err(BinfmtError::NoSuchEntry(name.to_string())),
            Err(errno) => Err(self.sys("cannot write", &path, errno)),
        }
    }

    fn require_mounted(&self) -> Result<(), BinfmtError> {
        if self.is_mounted() {
            Ok(())
        } else {
            Err(BinfmtError::NotMounted(self.root.clone()))
        }
    }

    fn sys(&self, what: &'static str, path: &Path, errno: Errno) -> BinfmtError {
        match errno {
            Errno::EPERM | Errno::EACCES => BinfmtError::PermissionDenied(path.to_path_buf()),
            _ => BinfmtError::Sys { what, path: path.to_path_buf(), errno },
        }
    }

    fn io(&self, what: &'static str, path: &Path, e: std::io::Error) -> BinfmtError {
        let errno = Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO));
        self.sys(what, path, errno)
    }
}

/// One write(2) of the whole buffer: binfmt_misc takes a line per write.
fn write_once(path: &Path, data: &[u8]) -> Result<(), Errno> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(|e| Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)))?;
    match f.write(data) {
        Ok(n) if n == data.len() => Ok(()),
        Ok(_) => Err(Errno::EIO),
        Err(e) => Err(Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_round_trip_in_kernel_order() {
        assert_eq!(Flags::parse("FC").unwrap().to_string(), "OCF");
        assert_eq!(Flags::parse("OPF").unwrap().to_string(), "POF");
        assert_eq!(Flags::parse("").unwrap().to_string(), "");
        assert_eq!(Flags::parse("pocf").unwrap().to_string(), "POCF");
        assert!(Flags::parse("FX").is_err());
        assert_eq!(Flags::SANDBOX.to_string(), "PF");
        assert_eq!(Flags::CONTAINER.to_string(), "POCF");
    }

    #[test]
    fn register_line_escapes_every_byte() {
        let arm64 = Arch::parse("arm64").unwrap();
        let reg = Registration::for_arch(
            arm64,
            Path::new("/usr/bin/qemu-aarch64-static"),
            Flags::parse("F").unwrap(),
        );
        assert_eq!(
            reg.line().unwrap(),
            ":qemu-aarch64:M:0:\\x7f\\x45\\x4c\\x46\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x02\\x00\\xb7\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xfe\\xff\\xff\\xff:/usr/bin/qemu-aarch64-static:F"
        );
    }

    #[test]
    fn register_line_refuses_what_the_kernel_would_misread() {
        let arm64 = Arch::parse("arm64").unwrap();
        let mut reg = Registration::for_arch(arm64, Path::new("/a:b"), Flags::default());
        assert!(reg.line().is_err());
        reg.interpreter = "/usr/bin/qemu".into();
        reg.name = "a/b".into();
        assert!(reg.line().is_err());
        reg.name = "status".into();
        assert!(reg.line().is_err());
        reg.name = "ok".into();
        reg.mask.pop();
        assert!(reg.line().is_err());
        reg.mask.push(0xff);
        reg.interpreter = PathBuf::from(format!("/{}", "x".repeat(2000)));
        assert!(reg.line().is_err());
    }

    #[test]
    fn parses_a_magic_entry() {
        let text = "enabled\ninterpreter /usr/bin/qemu-aarch64-static\nflags: OCF\noffset 0\nmagic 7f454c460201010000000000000000000200b700\nmask ffffffffffffff00fffffffffffffffffeffffff\n";
        let e = Entry::parse("qemu-aarch64", text).unwrap();
        assert!(e.enabled);
        assert_eq!(e.interpreter, "/usr/bin/qemu-aarch64-static");
        assert_eq!(e.flags.to_string(), "OCF");
        let names: Vec<String> = e.arches().iter().map(|a| a.platform()).collect();
        assert_eq!(names, ["arm64/v8"]);
    }

    #[test]
    fn parses_extension_and_disabled_entries() {
        let text = "disabled\ninterpreter /usr/bin/python3.11\nflags: \nextension .pyc\n";
        let e = Entry::parse("python3.11", text).unwrap();
        assert!(!e.enabled);
        assert_eq!(e.matcher, Matcher::Extension("pyc".into()));
        assert!(e.arches().is_empty());
        assert!(Entry::parse("x", "garbage\n").is_err());
        assert!(Entry::parse("x", "enabled\ninterpreter /x\nmagic zz\n").is_err());
    }

    #[test]
    fn an_entry_is_recognised_by_its_magic_not_its_name() {
        // Debian names it qemu-arm; a hand-made one could be called anything.
        let arm = Arch::parse("arm").unwrap();
        let text = format!(
            "enabled\ninterpreter /x\nflags: F\noffset 0\nmagic {}\nmask {}\n",
            to_hex(arm.qemu.magic),
            to_hex(arm.qemu.mask)
        );
        let e = Entry::parse("my-arm-emulator", &text).unwrap();
        let names: Vec<String> = e.arches().iter().map(|a| a.platform()).collect();
        assert_eq!(names, ["arm/v7", "arm/v6", "arm/v5"]);
    }
}
