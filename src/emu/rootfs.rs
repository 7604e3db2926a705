//! A root file system directory (a Raspberry Pi's, an mmdebstrap tree) run
//! as the unprivileged user, without podman: the sandbox of `arch check`
//! ([`crate::emu::sandbox`]) with a PID namespace too, the directory as
//! `/`, and the host's /dev, /sys, resolv.conf and the user's home bound
//! in, a fresh /proc and /tmp, and QEMU registered in the namespace's own
//! binfmt_misc when the programs are foreign.
//!
//! Every path inside the root file system is resolved the way the sandbox
//! will see it, within the directory (openat2 with RESOLVE_IN_ROOT): a
//! link such as `etc/resolv.conf -> /run/...` or `home -> /var/home` must
//! not lead to the host's files. A mount point the directory lacks (your
//! home, usually) is created before and removed after the run, so the
//! directory is left as it was; [`crate::emu::leftovers`] journals what
//! was made and removes it without following the tree's links, also after
//! a refusal, and at the next run when mtbx was killed.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::emu::arch::Arch;
use crate::emu::binfmt::{Flags, Registration};
use crate::emu::host;
use crate::emu::leftovers::{self, Journal, Made};
use crate::emu::sandbox::{self, RootfsMount, RootfsSpec, SandboxError};
use crate::error::{Classify, Kind};

/// PATH inside: Debian's default for login shells; the host's PATH names
/// the host's directories.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Programs whose ELF header tells the root file system's architecture,
/// in order (links are followed within the root file system).
const ARCH_PROBES: &[&str] =
    &["/bin/sh", "/usr/bin/env", "/bin/bash", "/bin/busybox", "/sbin/init", "/bin/ls"];

/// Why a root file system cannot be run; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// No such file or directory.
    #[error("{}: no such directory: give the directory of a root file system", crate::text::quoted_path(.0))]
    Missing(PathBuf),
    /// A file that is not a directory, nor anything known.
    #[error("{} is not a directory: give the directory of a root file system", crate::text::quoted_path(.0))]
    NotADirectory(PathBuf),
    /// A disk image (an SD card's .img).
    #[error("{} is a disk image: mounting its partitions needs root, which mtbx does not use; mount its root partition first (udisksctl loop-setup -f FILE on a desktop, or sudo mount -o loop,offset=...) and give that directory", crate::text::quoted_path(.0))]
    DiskImage(PathBuf),
    /// A tar archive of a root file system.
    #[error("{} is an archive: extract it into a directory first (mkdir DIR && tar -xf FILE -C DIR --exclude='./dev/*') and give that directory", crate::text::quoted_path(.0))]
    Archive(PathBuf),
    /// No program tells the architecture.
    #[error("cannot tell the architecture of {}: none of {} is an ELF program of a known architecture; give --arch", crate::text::quoted_path(.dir), ARCH_PROBES.join(", "))]
    UnknownArch {
        /// The root file system.
        dir: PathBuf,
    },
    /// --arch says one thing, the programs another.
    #[error("{} holds {found} programs ({probe}), not {asked}: drop --arch or give --arch {found_short}", crate::text::quoted_path(.dir))]
    ArchMismatch {
        /// The root file system.
        dir: PathBuf,
        /// What --arch said.
        asked: String,
        /// What the program is for.
        found: String,
        /// Its short name.
        found_short: String,
        /// The program read.
        probe: String,
    },
    /// No shell for `enter`.
    #[error("{} has no shell ({shell}, /bin/bash, /bin/sh): is it a root file system?", crate::text::quoted_path(.dir))]
    NoShell {
        /// The root file system.
        dir: PathBuf,
        /// The one passwd names (or none).
        shell: String,
    },
    /// No interpreter for a foreign root file system.
    #[error("{0}")]
    NoQemu(String),
    /// A mount point the sandbox cannot do without could not be made.
    #[error("{} has no {inside} and it cannot be created: {source}", crate::text::quoted_path(.dir))]
    MountPoint {
        /// The root file system.
        dir: PathBuf,
        /// The path inside.
        inside: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file of the tree mtbx must read (its passwd, group) is not one
    /// it can: a FIFO, a device, or too large.
    #[error("{}: {inside} {why}", crate::text::quoted_path(.dir))]
    BadFile {
        /// The root file system.
        dir: PathBuf,
        /// The file inside.
        inside: String,
        /// What is wrong with it.
        why: String,
    },
    /// Reading the directory failed.
    #[error("cannot read {}: {source}", crate::text::quoted_path(.path))]
    Read {
        /// What.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The sandbox failed, or the command could not be run.
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
}

impl Classify for RootfsError {
    fn kind(&self) -> Kind {
        match self {
            RootfsError::Missing(_)
            | RootfsError::NotADirectory(_)
            | RootfsError::DiskImage(_)
            | RootfsError::Archive(_)
            | RootfsError::UnknownArch { .. }
            | RootfsError::ArchMismatch { .. }
            | RootfsError::NoShell { .. }
            | RootfsError::BadFile { .. } => Kind::BadInput,
            // As a missing interpreter is for create: the host lacks it.
            RootfsError::NoQemu(_) | RootfsError::MountPoint { .. } | RootfsError::Read { .. } => {
                Kind::Failed
            }
            RootfsError::Sandbox(e) => e.kind(),
        }
    }
}

/// What to run, and as whom.
#[derive(Debug, Clone)]
pub struct Request {
    /// The root file system directory.
    pub dir: PathBuf,
    /// Its architecture, if the user named one.
    pub arch: Option<&'static Arch>,
    /// Root inside (uid 0 mapped to the user) rather than the user.
    pub root: bool,
    /// The user's login name (to find their shell in the rootfs's passwd).
    pub user: String,
    /// The user's ids, the same inside (unless `root`).
    pub uid: u32,
    /// The user's primary group.
    pub gid: u32,
    /// The user's home, bound at the same path inside.
    pub home: PathBuf,
    /// The current directory, kept inside when it exists there.
    pub cwd: Option<PathBuf>,
    /// The command and its arguments; None: the login shell.
    pub command: Option<Vec<OsString>>,
    /// The environment passed in (PATH is replaced by [`DEFAULT_PATH`]).
    pub env: Vec<(OsString, OsString)>,
}

/// A root file system ready to run: the sandbox's spec, and the tree
/// with what was made in it for the run, removed again when this is
/// dropped.
#[derive(Debug)]
pub struct Prepared {
    /// What the sandbox does.
    pub spec: RootfsSpec,
    /// The root file system's architecture.
    pub arch: &'static Arch,
    /// The interpreter, when foreign.
    pub interpreter: Option<PathBuf>,
    /// What the sandbox goes without (a home it cannot mount), one line
    /// each.
    pub warnings: Vec<String>,
    /// The tree, and what was made in it.
    tree: Tree,
}

impl Prepared {
    /// Run it; the command's exit code (128+N when killed by signal N).
    /// What was made for it is removed when this returns, as the tree is
    /// dropped.
    pub fn run(self) -> Result<i32, RootfsError> {
        tracing::debug!("made for the run in {}: {:?}", self.tree.dir.display(), self.tree.made);
        Ok(sandbox::run_rootfs(&self.spec)?)
    }
}

/// The directory, in-root resolution and what was made for the run
/// (mount points, an overlay's scratch), removed again when it is
/// dropped: after the run, or after a refusal half-way through.
#[derive(Debug)]
struct Tree {
    dir: PathBuf,
    root: OwnedFd,
    /// What this run made, in order.
    made: Vec<Made>,
    /// Where the journals go; None: no journal (the unit tests).
    journal_dir: Option<PathBuf>,
    /// This run's journal, held from the start (its lock says the tree
    /// is in use); None without one (see [`Tree::open`]).
    journal: Option<Journal>,
    /// The upper and work directories of copy-on-write layers.
    overlays: Vec<tempfile::TempDir>,
}

impl Drop for Tree {
    fn drop(&mut self) {
        let root = self.root.as_fd();
        let own = self.journal.as_ref().map_or(Path::new(""), |j| j.path());
        let others = self.journal_dir.as_deref().map_or(0, |d| leftovers::live_runs(d, root, own));
        if others > 0 {
            // Another run uses the tree, perhaps through these mount
            // points (removing one would unmount it there): they are left
            // to the last run to end, which finds them in this journal,
            // whose lock goes with this process. The layers' scratch is
            // this run's alone.
            tracing::debug!("{others} other runs use {}: leaving what this one made", self.dir.display());
            let scratch: Vec<Made> =
                self.made.iter().filter(|m| matches!(m, Made::Scratch(_))).cloned().collect();
            leftovers::remove(root, &scratch);
            self.overlays.clear();
            self.journal.take();
            return;
        }
        // Last made, first removed; only what is still what mtbx made and
        // empty, found without following a link: anything the command put
        // there, or planted on the way, stays.
        leftovers::remove(root, &self.made);
        self.overlays.clear();
        if let Some(j) = self.journal.take() {
            j.finish();
        }
        // What runs that ended beside this one left for the last.
        if let Some(d) = &self.journal_dir {
            leftovers::sweep(d, root);
        }
    }
}

impl Tree {
    /// Open the tree at `dir`; with a `journal_dir`, first remove what
    /// killed runs left in it, and journal what this one makes there.
    fn open(dir: &Path, journal_dir: Option<PathBuf>) -> Result<Tree, RootfsError> {
        let meta = match std::fs::metadata(dir) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RootfsError::Missing(dir.into()))
            }
            Err(source) => return Err(RootfsError::Read { path: dir.into(), source }),
        };
        if !meta.is_dir() {
            return Err(sniff_file(dir));
        }
        let dir =
            std::fs::canonicalize(dir).map_err(|source| RootfsError::Read { path: dir.into(), source })?;
        let root = rustix::fs::open(&dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| RootfsError::Read { path: dir.clone(), source: e.into() })?;
        // A journal that cannot be kept (a home one may not write) costs
        // only the cleanup after a kill: the run goes on, with a warning.
        let journal = journal_dir.as_deref().and_then(|j| {
            leftovers::sweep(j, root.as_fd());
            Journal::create(j, &dir, root.as_fd())
                .map_err(|e| {
                    tracing::warn!(
                        "cannot keep a journal in {} ({e}): if mtbx is killed, what it makes in {} stays",
                        crate::text::quoted_path(j),
                        crate::text::quoted_path(&dir)
                    )
                })
                .ok()
        });
        Ok(Tree { dir, root, made: Vec::new(), journal_dir, journal, overlays: Vec::new() })
    }

    /// Remember `made`, in the journal first.
    fn record(&mut self, made: Made) -> std::io::Result<()> {
        let recorded = self.journal.as_mut().map_or(Ok(()), |j| j.record(&made));
        self.made.push(made);
        recorded
    }

    /// Open `inside` (absolute, as the sandbox sees it) within the tree:
    /// links followed, but never out of it.
    fn open_in(&self, inside: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
        let rel = relative(inside);
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { &rel };
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        Ok(rustix::fs::openat2(&self.root, rel, flags | OFlags::CLOEXEC, Mode::empty(), how)?)
    }

    /// Open the regular file `inside` for reading, within the tree: a
    /// FIFO or device the tree holds there is refused, never read.
    fn open_file(&self, inside: &Path) -> std::io::Result<std::fs::File> {
        let rel = relative(inside);
        crate::sys::files::open_regular_at(self.root.as_fd(), &rel, ResolveFlags::IN_ROOT)
    }

    /// The host path of an open file of the tree.
    fn host_path(&self, fd: &OwnedFd) -> std::io::Result<PathBuf> {
        let p = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))?;
        if !p.starts_with(&self.dir) {
            return Err(std::io::Error::other(format!(
                "{} resolves outside the root file system",
                p.display()
            )));
        }
        Ok(p)
    }

    /// The host path where `inside` is, creating it (a directory, or an
    /// empty file) when missing, with any missing parents. A dangling link
    /// on the way is followed to what it names, within the tree. The host
    /// path returned holds no link, so mount(2) cannot be led astray.
    fn ensure(&mut self, inside: &Path, dir: bool) -> std::io::Result<PathBuf> {
        let mut want = normal(inside);
        'follow: for _ in 0..16 {
            match self.open_in(&want, OFlags::PATH) {
                Ok(fd) => {
                    let is_dir = rustix::fs::fstat(&fd)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
                    if is_dir != dir {
                        return Err(std::io::Error::other(format!(
                            "{} is {}",
                            want.display(),
                            if is_dir { "a directory" } else { "not a directory" }
                        )));
                    }
                    return self.host_path(&fd);
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // Walk down to the first missing component.
            let comps: Vec<PathBuf> =
                want.components().skip(1).map(|c| PathBuf::from(c.as_os_str())).collect();
            let mut cur = self.open_in(Path::new("/"), OFlags::PATH | OFlags::DIRECTORY)?;
            for (i, c) in comps.iter().enumerate() {
                let here = self.host_path(&cur)?;
                match rustix::fs::readlinkat(&cur, c, Vec::new()) {
                    Ok(target) => {
                        // A link whose target is missing: want that instead.
                        let target = PathBuf::from(std::ffi::OsStr::from_bytes(target.as_bytes()));
                        let base = Path::new("/").join(here.strip_prefix(&self.dir).unwrap_or(Path::new("")));
                        let mut next = if target.is_absolute() { target } else { base.join(target) };
                        for rest in &comps[i + 1..] {
                            next.push(rest);
                        }
                        want = normal(&next);
                        continue 'follow;
                    }
                    Err(rustix::io::Errno::NOENT) => {
                        let last = i + 1 == comps.len();
                        if last && !dir {
                            let f = rustix::fs::openat(
                                &cur,
                                c,
                                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC,
                                Mode::from_raw_mode(0o644),
                            )?;
                            drop(f);
                        } else {
                            rustix::fs::mkdirat(&cur, c, Mode::from_raw_mode(0o755))?;
                        }
                        let rel =
                            here.join(c).strip_prefix(&self.dir).map(Path::to_path_buf).map_err(|_| {
                                std::io::Error::other(format!("{} is outside the tree", here.display()))
                            })?;
                        let made = leftovers::made_at(cur.as_fd(), c, rel, dir || !last)?;
                        self.record(made)?;
                    }
                    Err(rustix::io::Errno::INVAL) => {} // exists, not a link
                    Err(e) => return Err(e.into()),
                }
                cur = rustix::fs::openat(
                    &cur,
                    c,
                    OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
            }
            return self.host_path(&cur);
        }
        Err(std::io::Error::other(format!("too many links on the way to {}", inside.display())))
    }

    /// A copy-on-write layer (overlayfs, which a user namespace may mount)
    /// over the deepest directory of `inside` the tree has: the mount, the
    /// directories to make in it, the host path `inside` will have, and the
    /// layer's scratch directory.
    fn overlay_for(
        &mut self,
        inside: &Path,
    ) -> std::io::Result<(RootfsMount, Vec<PathBuf>, PathBuf, tempfile::TempDir)> {
        let want = normal(inside);
        let mut base = want.clone();
        let lower = loop {
            if let Ok(fd) = self.open_in(&base, OFlags::PATH | OFlags::DIRECTORY) {
                break self.host_path(&fd)?;
            }
            if !base.pop() {
                return Err(std::io::Error::other("no directory of it exists"));
            }
        };
        let lossy = lower.to_string_lossy();
        if lossy.contains([',', ':', '\\']) || lower.to_str().is_none() {
            return Err(std::io::Error::other(format!(
                "{} has a character overlayfs options cannot hold",
                lower.display()
            )));
        }
        let scratch = tempfile::Builder::new().prefix("mtbx-layer-").tempdir()?;
        self.record(Made::Scratch(scratch.path().to_path_buf()))?;
        let (upper, work) = (scratch.path().join("upper"), scratch.path().join("work"));
        std::fs::create_dir(&upper)?;
        std::fs::create_dir(&work)?;
        let mut mkdirs = Vec::new();
        let mut target = lower.clone();
        for c in want.strip_prefix(&base).unwrap_or(Path::new("")).components() {
            target.push(c);
            mkdirs.push(target.clone());
        }
        let mount = RootfsMount {
            source: None,
            fstype: Some("overlay"),
            data: Some(format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                upper.display(),
                work.display()
            )),
            target: lower.clone(),
            what: format!("a layer over {}", lower.display()),
            mkdirs: vec![],
            contents: None,
        };
        Ok((mount, mkdirs, target, scratch))
    }

    /// Whether `inside` is a directory within the tree.
    fn is_dir(&self, inside: &Path) -> bool {
        self.open_in(inside, OFlags::PATH | OFlags::DIRECTORY).is_ok()
    }

    /// Whether `inside` is a file within the tree.
    fn is_file(&self, inside: &Path) -> bool {
        self.open_in(inside, OFlags::PATH)
            .and_then(|fd| Ok(rustix::fs::fstat(&fd)?))
            .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFREG)
    }

    /// The architecture of the tree's programs: the first probe that is an
    /// ELF of a known machine, and which probe that was.
    fn arch(&self) -> Option<(&'static Arch, &'static str)> {
        ARCH_PROBES.iter().find_map(|probe| {
            let f = self.open_file(Path::new(probe)).ok()?;
            let mut head = Vec::with_capacity(64);
            f.take(64).read_to_end(&mut head).ok()?;
            crate::emu::elf::arch_of(&head).map(|a| (a, *probe))
        })
    }

    /// The tree's `/etc/passwd` or `/etc/group` (`inside`), byte for byte,
    /// read by [`crate::userdb::read_at`] (links within the tree, at most
    /// [`crate::userdb::MAX_BYTES`]): None when it has none (or it cannot be
    /// read); refused when it is not a regular file (a FIFO would block the
    /// read forever) or too large (a copy cut there would end in half a
    /// record).
    fn read_db(&self, inside: &Path) -> Result<Option<Vec<u8>>, RootfsError> {
        let bad = |why: String| RootfsError::BadFile {
            dir: self.dir.clone(),
            inside: inside.display().to_string(),
            why,
        };
        match crate::userdb::read_at(self.root.as_fd(), &relative(inside)) {
            Ok(f) => Ok(f.map(|f| f.bytes)),
            Err(e) if crate::sys::files::is_not_regular(&e) => Err(bad(format!("cannot be read: {e}"))),
            Err(e) if crate::userdb::is_too_large(&e) => Err(bad(format!(
                "is larger than {} MiB, more than mtbx reads; shorten it or run with --root",
                crate::userdb::MAX_BYTES >> 20
            ))),
            Err(_) => Ok(None),
        }
    }

    /// The login shell /etc/passwd gives `user`, if any.
    fn passwd_shell(&self, user: &str) -> Result<Option<PathBuf>, RootfsError> {
        let Some(text) = self.read_db(Path::new("/etc/passwd"))? else { return Ok(None) };
        Ok(text.split(|b| *b == b'\n').find_map(|l| {
            let f: Vec<&[u8]> = l.split(|b| *b == b':').collect();
            (f.len() >= 7 && f[0] == user.as_bytes() && !f[6].is_empty())
                .then(|| PathBuf::from(std::ffi::OsStr::from_bytes(f[6])))
        }))
    }
}

/// `inside` relative to the root, for openat2 (`/etc/passwd` -> `etc/passwd`).
fn relative(inside: &Path) -> PathBuf {
    inside.components().filter(|c| matches!(c, Component::Normal(_))).collect()
}

/// `inside` as an absolute path without `.` and `..` (`..` at the root
/// stays there, as within a root file system).
fn normal(inside: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in inside.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// What a file given instead of a directory is, for the error.
fn sniff_file(path: &Path) -> RootfsError {
    let mut head = vec![0u8; 1024];
    let n = crate::sys::files::open_regular(path, true).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
    head.truncate(n);
    let name = path.to_string_lossy().to_ascii_lowercase();
    let archive = head.get(257..262) == Some(b"ustar")
        || head.starts_with(&[0x1f, 0x8b])
        || head.starts_with(b"\xfd7zXZ\0")
        || head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
        || head.starts_with(b"BZh");
    // An MBR's boot signature, or a GPT header in the second sector.
    let disk = head.get(510..512) == Some(&[0x55, 0xaa]) || head.get(512..520) == Some(b"EFI PART");
    if archive {
        RootfsError::Archive(path.into())
    } else if disk || name.ends_with(".img") || name.ends_with(".raw") {
        RootfsError::DiskImage(path.into())
    } else {
        RootfsError::NotADirectory(path.into())
    }
}

/// Check the request and make everything the sandbox needs, mount points
/// included; nothing runs yet.
pub fn prepare(req: &Request) -> Result<Prepared, RootfsError> {
    let mut tree = Tree::open(&req.dir, Some(leftovers::journal_dir(&req.home)))?;
    let found = tree.arch();
    let arch = match (req.arch, found) {
        (Some(asked), Some((found, probe))) if asked.elf != found.elf => {
            return Err(RootfsError::ArchMismatch {
                dir: tree.dir.clone(),
                asked: asked.platform(),
                found: found.platform(),
                found_short: found.short_name(),
                probe: probe.into(),
            })
        }
        (Some(asked), _) => asked,
        (None, Some((found, _))) => found,
        (None, None) => return Err(RootfsError::UnknownArch { dir: tree.dir.clone() }),
    };
    let host_arch = Arch::host();
    let (regs, interpreter) = if arch.is_native_on(host_arch) {
        (Vec::new(), None)
    } else {
        let search = host::find_interpreter(arch, None);
        let Some(interp) = search.usable() else { return Err(RootfsError::NoQemu(search.problem(arch))) };
        (vec![Registration::for_arch(arch, &interp.path, Flags::CONTAINER)], Some(interp.path.clone()))
    };

    // The program before any mount point is made: a missing shell changes
    // nothing.
    let (programs, program_name, argv) = match &req.command {
        Some(cmd) => {
            let name = cmd.first().cloned().unwrap_or_default();
            let programs = if name.as_bytes().contains(&b'/') {
                vec![PathBuf::from(&name)]
            } else {
                DEFAULT_PATH.split(':').map(|d| Path::new(d).join(&name)).collect()
            };
            (programs, name.to_string_lossy().into_owned(), cmd.clone())
        }
        None => {
            let who = if req.root { "root" } else { req.user.as_str() };
            let listed = tree.passwd_shell(who)?;
            let shell = listed
                .iter()
                .cloned()
                .chain([PathBuf::from("/bin/bash"), PathBuf::from("/bin/sh")])
                .find(|s| tree.is_file(s))
                .ok_or_else(|| RootfsError::NoShell {
                    dir: tree.dir.clone(),
                    shell: listed.as_ref().map_or("none in /etc/passwd".into(), crate::text::quoted_path),
                })?;
            // A login shell, by the '-' its argv[0] starts with (QEMU keeps
            // argv[0]: flag P).
            let base = shell.file_name().map(|n| n.to_os_string()).unwrap_or_default();
            let mut arg0 = OsString::from("-");
            arg0.push(base);
            (vec![shell.clone()], shell.display().to_string(), vec![arg0])
        }
    };

    let mut warnings = Vec::new();
    // Copy-on-write layers, mounted first (before /proc, /dev, ...: a layer
    // over the tree's root would hide them).
    let mut layers = Vec::new();
    let dir_err = |inside: &str, dir: &Path| {
        let dir = dir.to_path_buf();
        let inside = inside.to_string();
        move |source| RootfsError::MountPoint { dir, inside, source }
    };
    let proc_dir = tree.ensure(Path::new("/proc"), true).map_err(dir_err("/proc", &tree.dir))?;
    let mut mounts = Vec::new();
    for (inside, source) in [("/dev", "/dev"), ("/sys", "/sys")] {
        let target = tree.ensure(Path::new(inside), true).map_err(dir_err(inside, &tree.dir))?;
        mounts.push(RootfsMount {
            source: Some(source.into()),
            fstype: None,
            data: None,
            target,
            what: inside.into(),
            mkdirs: vec![],
            contents: None,
        });
    }
    // A fresh /tmp: writable whoever owns the tree's, and nothing is left
    // in the tree.
    let tmp = tree.ensure(Path::new("/tmp"), true).map_err(dir_err("/tmp", &tree.dir))?;
    mounts.push(RootfsMount {
        source: None,
        fstype: Some("tmpfs"),
        data: Some("mode=1777".into()),
        target: tmp.clone(),
        what: "a tmpfs on /tmp".into(),
        mkdirs: vec![],
        contents: None,
    });
    let home_mounted = match tree.ensure(&req.home, true) {
        Ok(target) => {
            mounts.push(home_mount(&req.home, target, vec![]));
            true
        }
        // A tree one may not write (a card's root, copied as root): the
        // home's mount point is made in a copy-on-write layer over the
        // deepest directory the tree has, whose changes are dropped after.
        Err(e)
            if e.kind() == std::io::ErrorKind::PermissionDenied || e.raw_os_error() == Some(libc::EROFS) =>
        {
            match tree.overlay_for(&req.home) {
                Ok((mut overlay, mkdirs, target, scratch)) => {
                    overlay.mkdirs = mkdirs;
                    layers.push(overlay);
                    mounts.push(home_mount(&req.home, target, vec![]));
                    tree.overlays.push(scratch);
                    true
                }
                Err(why) => {
                    warnings.push(format!(
                        "your home is not mounted: {} cannot be made in {} ({e}) nor in a layer over it ({why})",
                        req.home.display(),
                        tree.dir.display()
                    ));
                    false
                }
            }
        }
        Err(e) => {
            warnings.push(format!(
                "your home is not mounted: {} cannot be made in {}: {e}",
                req.home.display(),
                tree.dir.display()
            ));
            false
        }
    };
    let resolv = Path::new("/etc/resolv.conf");
    if resolv.exists() {
        match tree.ensure(resolv, false) {
            Ok(target) => mounts.push(RootfsMount {
                source: Some(resolv.into()),
                fstype: None,
                data: None,
                target,
                what: "the host's /etc/resolv.conf".into(),
                mkdirs: vec![],
                contents: None,
            }),
            Err(e) => warnings.push(format!("the host's /etc/resolv.conf is not mounted: {e}")),
        }
    }
    if !req.root {
        let shell = ["/bin/bash", "/bin/sh"].into_iter().map(Path::new).find(|s| tree.is_file(s));
        let shell = shell.unwrap_or(Path::new("/bin/sh"));
        let entries = [
            ("/etc/passwd", passwd_line(&req.user, req.uid, req.gid, &req.home, shell)),
            ("/etc/group", format!("{}:x:{}:", req.user, req.gid)),
        ];
        for (file, line) in entries {
            let inside = Path::new(file);
            // Added only when its name and id are not there already:
            // programs that ask who you are (a shell's prompt, `id -un`,
            // ssh, git) then find you, and the tree's own file, bound over
            // by the copy, stays as it was.
            let text = tree.read_db(inside)?.unwrap_or_default();
            let Some(text) = crate::userdb::add_entry(&text, line.as_bytes()) else {
                continue;
            };
            // The copy is written by the sandbox into its own /tmp (a tmpfs
            // that dies with it), bound over the tree's file and unlinked:
            // nothing of it is left anywhere, however mtbx ends.
            match tree.ensure(inside, false) {
                Ok(target) => mounts.push(RootfsMount {
                    source: Some(tmp.join(format!(".mtbx-{}", file.trim_start_matches("/etc/")))),
                    fstype: None,
                    data: None,
                    target,
                    what: format!("{file} with you in it"),
                    mkdirs: vec![],
                    contents: Some(text),
                }),
                Err(e) => warnings.push(format!("you are not in the tree's {file}: {e}")),
            }
        }
    }

    let mut workdirs = Vec::new();
    if let Some(cwd) = &req.cwd {
        let visible = if home_mounted && cwd.starts_with(&req.home) {
            true
        } else if cwd.starts_with("/tmp") || cwd.starts_with("/proc") {
            false
        } else {
            cwd.starts_with("/dev") || cwd.starts_with("/sys") || tree.is_dir(cwd)
        };
        if visible {
            workdirs.push(cwd.clone());
        }
    }
    if home_mounted {
        workdirs.push(req.home.clone());
    }
    workdirs.push("/".into());

    let mut env: Vec<OsString> = req
        .env
        .iter()
        .filter(|(k, _)| k != "PATH")
        .map(|(k, v)| {
            let mut kv = k.clone();
            kv.push("=");
            kv.push(v);
            kv
        })
        .collect();
    env.push(format!("PATH={DEFAULT_PATH}").into());

    let before_proc = layers.len();
    layers.extend(mounts);
    let spec = RootfsSpec {
        rootfs: tree.dir.clone(),
        proc_dir,
        mounts: layers,
        before_proc,
        regs,
        root: req.root,
        workdirs,
        programs,
        program_name,
        argv,
        env,
        // enter's shell does job control; a command keeps mtbx's group, so
        // that Ctrl-Z stops both and the outer shell sees it.
        take_terminal: req.command.is_none(),
    };
    Ok(Prepared { spec, arch, interpreter, warnings, tree })
}

/// Your passwd line inside the tree.
fn passwd_line(user: &str, uid: u32, gid: u32, home: &Path, shell: &Path) -> String {
    format!("{user}:x:{uid}:{gid}:{user}:{}:{}", home.display(), shell.display())
}

fn home_mount(home: &Path, target: PathBuf, mkdirs: Vec<PathBuf>) -> RootfsMount {
    RootfsMount {
        source: Some(home.to_path_buf()),
        fstype: None,
        data: None,
        target,
        what: format!("your home {}", home.display()),
        mkdirs,
        contents: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::open(d.path(), None).unwrap();
        (d, t)
    }

    #[test]
    fn links_are_resolved_within_the_tree_and_missing_points_made() {
        let (d, mut t) = tree();
        let root = std::fs::canonicalize(d.path()).unwrap();
        std::fs::create_dir_all(root.join("var/home")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::os::unix::fs::symlink("/var/home", root.join("home")).unwrap();
        // Absolute, and dangling: it must name the tree's /run, not the host's.
        std::os::unix::fs::symlink("/run/resolve/stub.conf", root.join("etc/resolv.conf")).unwrap();
        assert_eq!(t.ensure(Path::new("/home/me"), true).unwrap(), root.join("var/home/me"));
        assert_eq!(
            t.ensure(Path::new("/etc/resolv.conf"), false).unwrap(),
            root.join("run/resolve/stub.conf")
        );
        assert!(root.join("run/resolve/stub.conf").is_file());
        // A link out through .. stays in.
        std::os::unix::fs::symlink("../../../../..", root.join("up")).unwrap();
        assert_eq!(t.ensure(Path::new("/up/x"), true).unwrap(), root.join("x"));
        let created = || -> Vec<PathBuf> {
            t.made
                .iter()
                .map(|m| match m {
                    Made::InTree { rel, .. } => root.join(rel),
                    Made::Scratch(p) => p.clone(),
                })
                .collect()
        };
        assert_eq!(
            created(),
            vec![
                root.join("var/home/me"),
                root.join("run"),
                root.join("run/resolve"),
                root.join("run/resolve/stub.conf"),
                root.join("x")
            ]
        );
        // What exists is not recreated, and is the wrong kind an error.
        assert_eq!(t.ensure(Path::new("/home/me"), true).unwrap(), root.join("var/home/me"));
        assert!(t.ensure(Path::new("/etc/resolv.conf"), true).is_err());
        assert_eq!(t.made.len(), 5);
        // Dropping the tree removes them again.
        drop(t);
        assert!(!root.join("run").exists() && !root.join("x").exists() && !root.join("var/home/me").exists());
        assert!(root.join("var/home").is_dir() && root.join("etc/resolv.conf").symlink_metadata().is_ok());
    }

    #[test]
    fn you_are_added_to_passwd_and_group_only_when_missing() {
        // Not UTF-8 (a Latin-1 GECOS): copied byte for byte.
        let passwd = b"root:x:0:0:root:/root:/bin/bash\nme:x:1000:1000:Ren\xe9:/home/me:/bin/sh";
        let line = passwd_line("you", 1001, 1001, Path::new("/home/you"), Path::new("/bin/bash"));
        let mut want = passwd.to_vec();
        want.extend_from_slice(b"\nyou:x:1001:1001:you:/home/you:/bin/bash\n");
        let with_entry = |text: &[u8], line: &str| crate::userdb::add_entry(text, line.as_bytes());
        assert_eq!(with_entry(passwd, &line).unwrap(), want);
        assert_eq!(with_entry(passwd, "me:x:1002:1002::/home/me:/bin/sh"), None, "the name is there");
        assert_eq!(with_entry(passwd, "other:x:1000:1000::/:/bin/sh"), None, "the id is there");
        assert_eq!(with_entry(b"", "you:x:7:"), Some(b"you:x:7:\n".to_vec()), "no file: one line");
    }

    #[test]
    fn files_given_for_a_directory_are_named() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("sd.bin");
        let mut mbr = vec![0u8; 1024];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        std::fs::write(&img, &mbr).unwrap();
        assert!(matches!(Tree::open(&img, None), Err(RootfsError::DiskImage(_))));
        let gz = d.path().join("root.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        assert!(matches!(Tree::open(&gz, None), Err(RootfsError::Archive(_))));
        let txt = d.path().join("notes");
        std::fs::write(&txt, "hello").unwrap();
        assert!(matches!(Tree::open(&txt, None), Err(RootfsError::NotADirectory(_))));
        assert!(matches!(Tree::open(&d.path().join("nope"), None), Err(RootfsError::Missing(_))));
    }

    #[test]
    fn the_architecture_comes_from_the_programs_and_the_shell_from_passwd() {
        let (d, t) = tree();
        let root = std::fs::canonicalize(d.path()).unwrap();
        assert!(t.arch().is_none());
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let arm = Arch::parse("arm64").unwrap();
        std::fs::write(root.join("usr/bin/dash"), crate::emu::testprog::program(arm)).unwrap();
        std::os::unix::fs::symlink("usr/bin", root.join("bin")).unwrap();
        std::os::unix::fs::symlink("dash", root.join("usr/bin/sh")).unwrap();
        let (found, probe) = t.arch().unwrap();
        assert_eq!((found.elf, probe), (arm.elf, "/bin/sh"));
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/zsh\nme:x:1:1::/home/me:/bin/dash\n")
            .unwrap();
        assert_eq!(t.passwd_shell("me").unwrap(), Some(PathBuf::from("/bin/dash")));
        assert_eq!(t.passwd_shell("root").unwrap(), Some(PathBuf::from("/bin/zsh")));
        assert_eq!(t.passwd_shell("nobody").unwrap(), None);
    }
}
