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
//! directory is left as it was.

use std::ffi::OsString;
use std::io::Read;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};

use crate::emu::arch::Arch;
use crate::emu::binfmt::{Flags, Registration};
use crate::emu::host;
use crate::emu::sandbox::{self, RootfsMount, RootfsSpec, SandboxError};
use crate::error::{Classify, Kind};

/// PATH inside: Debian's default for login shells; the host's PATH names
/// the host's directories.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Programs whose ELF header tells the root file system's architecture,
/// in order (links are followed within the root file system).
const ARCH_PROBES: &[&str] =
    &["/bin/sh", "/usr/bin/env", "/bin/bash", "/bin/busybox", "/sbin/init", "/bin/ls"];

/// The most of /etc/passwd read: hostile input is bounded.
const PASSWD_MAX: u64 = 1 << 20;

/// Why a root file system cannot be run; each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// No such file or directory.
    #[error("{}: no such directory: give the directory of a root file system", .0.display())]
    Missing(PathBuf),
    /// A file that is not a directory, nor anything known.
    #[error("{} is not a directory: give the directory of a root file system", .0.display())]
    NotADirectory(PathBuf),
    /// A disk image (an SD card's .img).
    #[error("{} is a disk image: mounting its partitions needs root, which mtbx does not use; mount its root partition first (udisksctl loop-setup -f FILE on a desktop, or sudo mount -o loop,offset=...) and give that directory", .0.display())]
    DiskImage(PathBuf),
    /// A tar archive of a root file system.
    #[error("{} is an archive: extract it into a directory first (mkdir DIR && tar -xf FILE -C DIR --exclude='./dev/*') and give that directory", .0.display())]
    Archive(PathBuf),
    /// No program tells the architecture.
    #[error("cannot tell the architecture of {}: none of {} is an ELF program of a known architecture; give --arch", dir.display(), ARCH_PROBES.join(", "))]
    UnknownArch {
        /// The root file system.
        dir: PathBuf,
    },
    /// --arch says one thing, the programs another.
    #[error("{} holds {found} programs ({probe}), not {asked}: drop --arch or give --arch {found_short}", dir.display())]
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
    #[error("{} has no shell ({shell}, /bin/bash, /bin/sh): is it a root file system?", dir.display())]
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
    #[error("{} has no {inside} and it cannot be created: {source}", dir.display())]
    MountPoint {
        /// The root file system.
        dir: PathBuf,
        /// The path inside.
        inside: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Reading the directory failed.
    #[error("cannot read {}: {source}", path.display())]
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
            | RootfsError::NoShell { .. } => Kind::BadInput,
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

/// A root file system ready to run: the sandbox's spec, and the mount
/// points created for it, removed again when this is dropped.
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
    /// Host paths created as mount points, in creation order.
    created: Vec<PathBuf>,
    /// The upper and work directories of copy-on-write layers.
    overlays: Vec<tempfile::TempDir>,
}

impl Prepared {
    /// Run it; the command's exit code (128+N when killed by signal N).
    pub fn run(self) -> Result<i32, RootfsError> {
        Ok(sandbox::run_rootfs(&self.spec)?)
    }
}

impl Drop for Prepared {
    fn drop(&mut self) {
        // Last made, first removed; only what is still empty (rmdir), and
        // files only while empty: anything the command put there stays.
        for p in self.created.iter().rev() {
            match std::fs::symlink_metadata(p) {
                Ok(m) if m.is_dir() => {
                    let _ = std::fs::remove_dir(p);
                }
                Ok(m) if m.is_file() && m.len() == 0 => {
                    let _ = std::fs::remove_file(p);
                }
                _ => {}
            }
        }
        // overlayfs leaves its work directory without permissions; the
        // TempDir's removal needs them back.
        for o in &self.overlays {
            let _ =
                std::fs::set_permissions(o.path().join("work/work"), std::fs::Permissions::from_mode(0o700));
        }
    }
}

/// The directory, in-root resolution and the mount points made.
struct Tree {
    dir: PathBuf,
    root: OwnedFd,
    created: Vec<PathBuf>,
}

impl Tree {
    fn open(dir: &Path) -> Result<Tree, RootfsError> {
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
        Ok(Tree { dir, root, created: Vec::new() })
    }

    /// Open `inside` (absolute, as the sandbox sees it) within the tree:
    /// links followed, but never out of it.
    fn open_in(&self, inside: &Path, flags: OFlags) -> std::io::Result<OwnedFd> {
        let rel = relative(inside);
        let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { &rel };
        let how = ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS;
        Ok(rustix::fs::openat2(&self.root, rel, flags | OFlags::CLOEXEC, Mode::empty(), how)?)
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
                        self.created.push(here.join(c));
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
        &self,
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
            let fd = self.open_in(Path::new(probe), OFlags::RDONLY).ok()?;
            let mut head = Vec::with_capacity(64);
            std::fs::File::from(fd).take(64).read_to_end(&mut head).ok()?;
            crate::emu::elf::arch_of(&head).map(|a| (a, *probe))
        })
    }

    /// A small text file of the tree (`/etc/passwd`), read within it and
    /// capped.
    fn read_small(&self, inside: &Path) -> Option<String> {
        let fd = self.open_in(inside, OFlags::RDONLY).ok()?;
        let mut text = Vec::new();
        std::fs::File::from(fd).take(PASSWD_MAX).read_to_end(&mut text).ok()?;
        Some(String::from_utf8_lossy(&text).into_owned())
    }

    /// The login shell /etc/passwd gives `user`, if any.
    fn passwd_shell(&self, user: &str) -> Option<PathBuf> {
        let text = self.read_small(Path::new("/etc/passwd"))?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[0] == user && !f[6].is_empty()).then(|| PathBuf::from(f[6]))
        })
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
    let n = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).unwrap_or(0);
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
    let mut tree = Tree::open(&req.dir)?;
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
            let listed = tree.passwd_shell(who);
            let shell = listed
                .iter()
                .cloned()
                .chain([PathBuf::from("/bin/bash"), PathBuf::from("/bin/sh")])
                .find(|s| tree.is_file(s))
                .ok_or_else(|| RootfsError::NoShell {
                    dir: tree.dir.clone(),
                    shell: listed.as_ref().map_or("none in /etc/passwd".into(), |s| s.display().to_string()),
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
    let mut overlays = Vec::new();
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
        });
    }
    // A fresh /tmp: writable whoever owns the tree's, and nothing is left
    // in the tree.
    let tmp = tree.ensure(Path::new("/tmp"), true).map_err(dir_err("/tmp", &tree.dir))?;
    mounts.push(RootfsMount {
        source: None,
        fstype: Some("tmpfs"),
        data: Some("mode=1777".into()),
        target: tmp,
        what: "a tmpfs on /tmp".into(),
        mkdirs: vec![],
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
                    mounts.push(overlay);
                    mounts.push(home_mount(&req.home, target, vec![]));
                    overlays.push(scratch);
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
            let Some(text) = with_entry(tree.read_small(inside).as_deref().unwrap_or(""), &line) else {
                continue;
            };
            let made = tempfile::Builder::new()
                .prefix("mtbx-rootfs-")
                .tempdir()
                .and_then(|d| std::fs::write(d.path().join("entries"), &text).map(|()| d));
            match made.and_then(|d| tree.ensure(inside, false).map(|target| (d, target))) {
                Ok((scratch, target)) => {
                    mounts.push(RootfsMount {
                        source: Some(scratch.path().join("entries")),
                        fstype: None,
                        data: None,
                        target,
                        what: format!("{file} with you in it"),
                        mkdirs: vec![],
                    });
                    overlays.push(scratch);
                }
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

    let spec = RootfsSpec {
        rootfs: tree.dir.clone(),
        proc_dir,
        mounts,
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
    Ok(Prepared { spec, arch, interpreter, warnings, created: std::mem::take(&mut tree.created), overlays })
}

/// Your passwd line inside the tree.
fn passwd_line(user: &str, uid: u32, gid: u32, home: &Path, shell: &Path) -> String {
    format!("{user}:x:{uid}:{gid}:{user}:{}:{}", home.display(), shell.display())
}

/// `text` (a passwd or group file) with `line` added, or None when its
/// name or id is there already: programs that ask who you are (a shell's
/// prompt, `id -un`, ssh, git) then find you, and the tree's own file,
/// bound over by the copy, stays as it was.
fn with_entry(text: &str, line: &str) -> Option<String> {
    fn key(l: &str) -> (&str, &str) {
        let mut f = l.split(':');
        (f.next().unwrap_or(""), f.nth(1).unwrap_or(""))
    }
    let (name, id) = key(line);
    if text.lines().map(key).any(|(n, i)| n == name || i == id) {
        return None;
    }
    let mut out = text.to_string();
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(line);
    out.push('\n');
    Some(out)
}

fn home_mount(home: &Path, target: PathBuf, mkdirs: Vec<PathBuf>) -> RootfsMount {
    RootfsMount {
        source: Some(home.to_path_buf()),
        fstype: None,
        data: None,
        target,
        what: format!("your home {}", home.display()),
        mkdirs,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, Tree) {
        let d = tempfile::tempdir().unwrap();
        let t = Tree::open(d.path()).unwrap();
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
        let created = t.created.clone();
        assert_eq!(
            created,
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
        assert_eq!(t.created.len(), 5);
        // Dropping a Prepared removes them again.
        drop(Prepared {
            spec: RootfsSpec {
                rootfs: root.clone(),
                proc_dir: root.join("proc"),
                mounts: vec![],
                regs: vec![],
                root: false,
                workdirs: vec![],
                programs: vec![],
                program_name: String::new(),
                argv: vec![],
                env: vec![],
                take_terminal: false,
            },
            arch: Arch::host(),
            interpreter: None,
            warnings: vec![],
            created,
            overlays: vec![],
        });
        assert!(!root.join("run").exists() && !root.join("x").exists() && !root.join("var/home/me").exists());
        assert!(root.join("var/home").is_dir() && root.join("etc/resolv.conf").symlink_metadata().is_ok());
    }

    #[test]
    fn you_are_added_to_passwd_and_group_only_when_missing() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nme:x:1000:1000::/home/me:/bin/sh";
        let line = passwd_line("you", 1001, 1001, Path::new("/home/you"), Path::new("/bin/bash"));
        assert_eq!(
            with_entry(passwd, &line).unwrap(),
            format!("{passwd}\nyou:x:1001:1001:you:/home/you:/bin/bash\n")
        );
        assert_eq!(with_entry(passwd, "me:x:1002:1002::/home/me:/bin/sh"), None, "the name is there");
        assert_eq!(with_entry(passwd, "other:x:1000:1000::/:/bin/sh"), None, "the id is there");
        assert_eq!(with_entry("", "you:x:7:"), Some("you:x:7:\n".into()), "no file: one line");
    }

    #[test]
    fn files_given_for_a_directory_are_named() {
        let d = tempfile::tempdir().unwrap();
        let img = d.path().join("sd.bin");
        let mut mbr = vec![0u8; 1024];
        mbr[510] = 0x55;
        mbr[511] = 0xaa;
        std::fs::write(&img, &mbr).unwrap();
        assert!(matches!(Tree::open(&img), Err(RootfsError::DiskImage(_))));
        let gz = d.path().join("root.tar.gz");
        std::fs::write(&gz, [0x1f, 0x8b, 8, 0]).unwrap();
        assert!(matches!(Tree::open(&gz), Err(RootfsError::Archive(_))));
        let txt = d.path().join("notes");
        std::fs::write(&txt, "hello").unwrap();
        assert!(matches!(Tree::open(&txt), Err(RootfsError::NotADirectory(_))));
        assert!(matches!(Tree::open(&d.path().join("nope")), Err(RootfsError::Missing(_))));
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
        assert_eq!(t.passwd_shell("me"), Some(PathBuf::from("/bin/dash")));
        assert_eq!(t.passwd_shell("root"), Some(PathBuf::from("/bin/zsh")));
        assert_eq!(t.passwd_shell("nobody"), None);
    }
}
