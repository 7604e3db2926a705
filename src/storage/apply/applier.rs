//! The file-system side of applying a layer: where each entry may go and
//! what it becomes there, one method per kind of entry. Every path is
//! resolved beneath the layer root (see the rules in [`super`]).

use std::collections::HashSet;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::stream::{Body, Entry, Meta};
use super::{io_err, show, ApplyError, ApplyOptions, ApplyStats, Whiteouts};

const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT: &[u8] = b".wh.";

pub(super) struct Applier<'r> {
    root: BorrowedFd<'r>,
    opts: ApplyOptions,
    stats: ApplyStats,
    /// Directories whose times are set once everything inside is written.
    dirs: Vec<(Vec<u8>, (i64, i64))>,
    /// vfs only: paths this layer wrote, kept by opaque directories.
    seen: HashSet<Vec<u8>>,
    /// The last parent directory opened, by relative path.
    cache: Option<(Vec<u8>, OwnedFd)>,
    buf: Vec<u8>,
}

impl<'r> Applier<'r> {
    pub fn new(root: BorrowedFd<'r>, opts: ApplyOptions) -> Self {
        Applier {
            root,
            opts,
            stats: ApplyStats::default(),
            dirs: Vec::new(),
            seen: HashSet::new(),
            cache: None,
            buf: vec![0u8; 256 << 10],
        }
    }

    /// Apply one entry; its content, if any, is read from `body`.
    pub fn entry(&mut self, e: &Entry, body: &mut Body<'_>) -> Result<(), ApplyError> {
        let comps = normalize(&e.name)?;
        let Some((base, parents)) = comps.split_last() else {
            return self.layer_root(e);
        };
        let parent_path = parents.join(&b'/');
        if self.opts.whiteouts == Whiteouts::Vfs {
            self.seen.insert(comps.join(&b'/'));
        }
        // Whiteouts first: they name another entry.
        if *base == OPAQUE {
            return self.opaque(e, &parent_path);
        }
        if base.starts_with(b".wh..wh.") {
            // Other AUFS metadata (.wh..wh.plnk and the like): nothing to do.
            return Ok(());
        }
        if let Some(target) = base.strip_prefix(WHITEOUT) {
            return self.whiteout(e, &parent_path, target);
        }
        let dir = self.parent(&parent_path, &e.name)?;
        let name = cstr(base, &e.name)?;
        let name = name.as_c_str();
        let existing = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if existing.is_some() && !(e.kind == b'5' && existing_is_dir) {
            remove_at(&dir, name).map_err(|err| io_err(&e.name, err))?;
        }
        match e.kind {
            b'0' | b'\0' | b'7' => self.regular(e, &dir, name, body),
            b'5' => self.directory(e, &dir, name, existing_is_dir, comps.join(&b'/')),
            b'2' => self.symlink(e, &dir, name),
            b'1' => self.hardlink(e, &dir, name),
            b'3' | b'4' | b'6' => self.special(e, &dir, name),
            other => Err(ApplyError::Unsupported { name: show(&e.name), kind: other as char }),
        }
    }

    /// Stamp directory times, now that nothing more is written inside
    /// them; what applying learned.
    pub fn finish(mut self) -> Result<ApplyStats, ApplyError> {
        self.finish_dirs()?;
        Ok(self.stats)
    }

    /// The layer root itself ("./"): only its metadata applies, and only
    /// for vfs (overlay keeps the diff root as created).
    fn layer_root(&mut self, e: &Entry) -> Result<(), ApplyError> {
        if e.kind == b'5' && self.opts.whiteouts == Whiteouts::Vfs {
            self.set_owner_mode(self.root, c".", &e.meta, &e.name)?;
            self.dirs.push((Vec::new(), e.meta.mtime));
        }
        Ok(())
    }

    /// `.wh..wh..opq`: the directory hides what lower layers have in it.
    fn opaque(&mut self, e: &Entry, parent_path: &[u8]) -> Result<(), ApplyError> {
        let dir = self.parent(parent_path, &e.name)?;
        match self.opts.whiteouts {
            Whiteouts::Overlay { opaque_xattr } => {
                let fd = openat(
                    &dir,
                    c".",
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|err| io_err(&e.name, err))?;
                set_xattr(&fd, opaque_xattr.as_bytes(), b"y").map_err(|err| io_err(&e.name, err))?;
            }
            Whiteouts::Vfs => {
                clear_dir(&dir, parent_path, &self.seen).map_err(|err| io_err(&e.name, err))?;
            }
        }
        Ok(())
    }

    /// `.wh.NAME`: NAME of a lower layer is deleted.
    fn whiteout(&mut self, e: &Entry, parent_path: &[u8], target: &[u8]) -> Result<(), ApplyError> {
        let dir = self.parent(parent_path, &e.name)?;
        let target = cstr(target, &e.name)?;
        remove_at(&dir, &target).map_err(|err| io_err(&e.name, err))?;
        if let Whiteouts::Overlay { .. } = self.opts.whiteouts {
            mknodat(&dir, target.as_c_str(), SFlag::S_IFCHR, Mode::empty(), 0)
                .map_err(|err| io_err(&e.name, err))?;
            // Owned as the header says; not counted in uidset, as
            // containers/storage skips whiteouts there.
            fchownat(
                &dir,
                target.as_c_str(),
                Some(Uid::from_raw(e.meta.uid)),
                Some(Gid::from_raw(e.meta.gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|err| self.owner_err(&e.name, &e.meta, err))?;
        }
        Ok(())
    }

    fn regular(
        &mut self,
        e: &Entry,
        dir: &OwnedFd,
        name: &CStr,
        body: &mut Body<'_>,
    ) -> Result<(), ApplyError> {
        let fd = openat(
            dir,
            name,
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|err| io_err(&e.name, err))?;
        let mut file = std::fs::File::from(fd);
        body.copy_to(&mut file, &mut self.buf, &e.name)?;
        // Owner before xattrs: chown drops security.capability.
        self.set_owner_mode(file.as_fd(), c"", &e.meta, &e.name)?;
        self.set_xattrs(&file, &e.meta, &e.name)?;
        let t = times(e.meta.mtime);
        nix::sys::stat::futimens(&file, &t.0, &t.1).map_err(|err| io_err(&e.name, err))
    }

    fn directory(
        &mut self,
        e: &Entry,
        dir: &OwnedFd,
        name: &CStr,
        existing_is_dir: bool,
        rel: Vec<u8>,
    ) -> Result<(), ApplyError> {
        if !existing_is_dir {
            mkdirat(dir, name, Mode::from_bits_truncate(0o700)).map_err(|err| io_err(&e.name, err))?;
        }
        let fd = openat(
            dir,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|err| io_err(&e.name, err))?;
        self.set_owner_mode(fd.as_fd(), c"", &e.meta, &e.name)?;
        self.set_xattrs(&fd, &e.meta, &e.name)?;
        self.dirs.push((rel, e.meta.mtime));
        // A directory replaced by a file later must not keep a stale fd.
        self.cache = None;
        Ok(())
    }

    fn symlink(&mut self, e: &Entry, dir: &OwnedFd, name: &CStr) -> Result<(), ApplyError> {
        let target = cstr(e.link.as_deref().unwrap_or_default(), &e.name)?;
        symlinkat(target.as_c_str(), dir, name).map_err(|err| io_err(&e.name, err))?;
        self.chown_nofollow(dir, name, &e.meta, &e.name)?;
        let t = times(e.meta.mtime);
        utimensat(dir, name, &t.0, &t.1, UtimensatFlags::NoFollowSymlink).map_err(|err| io_err(&e.name, err))
    }

    /// A hard link: its target is resolved beneath the root like any path.
    fn hardlink(&mut self, e: &Entry, dir: &OwnedFd, name: &CStr) -> Result<(), ApplyError> {
        let target = normalize(e.link.as_deref().unwrap_or_default())?;
        let Some((tbase, tparents)) = target.split_last() else {
            return Err(ApplyError::Escape(show(&e.name)));
        };
        let tdir = self.open_beneath(&tparents.join(&b'/'), &e.name)?;
        let tname = cstr(tbase, &e.name)?;
        linkat(&tdir, tname.as_c_str(), dir, name, AtFlags::empty()).map_err(|err| io_err(&e.name, err))
    }

    /// Character and block devices, FIFOs. In a user namespace devices
    /// cannot be created and are skipped, as podman skips them.
    fn special(&mut self, e: &Entry, dir: &OwnedFd, name: &CStr) -> Result<(), ApplyError> {
        let mode = Mode::from_bits_truncate(e.meta.mode);
        let (ftype, r) = match e.kind {
            b'6' => (SFlag::S_IFIFO, mkfifoat(dir, name, mode)),
            kind => {
                let t = if kind == b'3' { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                let devno = nix::sys::stat::makedev(e.dev.0.into(), e.dev.1.into());
                (t, mknodat(dir, name, t, mode, devno))
            }
        };
        match r {
            Ok(()) => {
                self.chown_nofollow(dir, name, &e.meta, &e.name)?;
                fchmodat(dir, name, mode, FchmodatFlags::FollowSymlink).map_err(|err| io_err(&e.name, err))
            }
            Err(Errno::EPERM) if self.opts.rootless && ftype != SFlag::S_IFIFO => {
                tracing::debug!(
                    "skipping device node {} (cannot create it in a user namespace)",
                    show(&e.name)
                );
                self.stats.skipped_devices += 1;
                Ok(())
            }
            Err(err) => Err(io_err(&e.name, err)),
        }
    }

    /// The parent directory at `rel` (already normalized), created with
    /// 0755 directories where the tar did not list them.
    fn parent(&mut self, rel: &[u8], raw_name: &[u8]) -> Result<OwnedFd, ApplyError> {
        if let Some((p, fd)) = &self.cache {
            if p == rel {
                return fd.try_clone().map_err(|e| io_err(raw_name, e));
            }
        }
        let fd = match self.open_beneath(rel, raw_name) {
            Ok(fd) => fd,
            Err(ApplyError::Io { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                self.create_parents(rel, raw_name)?
            }
            Err(e) => return Err(e),
        };
        self.cache = Some((rel.to_vec(), fd.try_clone().map_err(|e| io_err(raw_name, e))?));
        Ok(fd)
    }

    fn create_parents(&mut self, rel: &[u8], raw_name: &[u8]) -> Result<OwnedFd, ApplyError> {
        let mut cur = self.open_beneath(b"", raw_name)?;
        let mut path: Vec<u8> = Vec::new();
        for comp in rel.split(|&b| b == b'/') {
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(comp);
            let c = cstr(comp, raw_name)?;
            match mkdirat(&cur, c.as_c_str(), Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(io_err(raw_name, e)),
            }
            cur = self.open_beneath(&path, raw_name)?;
        }
        Ok(cur)
    }

    /// Open a directory under the root; symlinks are followed only while
    /// they stay beneath it.
    fn open_beneath(&self, rel: &[u8], raw_name: &[u8]) -> Result<OwnedFd, ApplyError> {
        let path = if rel.is_empty() { CString::from(c".") } else { cstr(rel, raw_name)? };
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.root, path.as_c_str(), how).map_err(|e| match e {
            Errno::EXDEV | Errno::ELOOP => ApplyError::Escape(show(raw_name)),
            e => io_err(raw_name, e),
        })
    }

    fn note_owner(&mut self, meta: &Meta) {
        self.stats.uids.insert(meta.uid);
        self.stats.gids.insert(meta.gid);
    }

    fn chown_nofollow(
        &mut self,
        dir: &OwnedFd,
        name: &CStr,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ApplyError> {
        fchownat(
            dir,
            name,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.owner_err(raw, meta, e))?;
        self.note_owner(meta);
        Ok(())
    }

    /// chown then chmod (chown clears setuid bits) on an open file, or on
    /// `name` under `fd` when it is not empty.
    fn set_owner_mode(
        &mut self,
        fd: BorrowedFd<'_>,
        name: &CStr,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ApplyError> {
        let flags = if name.is_empty() { AtFlags::AT_EMPTY_PATH } else { AtFlags::empty() };
        fchownat(fd, name, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)), flags)
            .map_err(|e| self.owner_err(raw, meta, e))?;
        self.note_owner(meta);
        let mode = Mode::from_bits_truncate(meta.mode);
        if name.is_empty() {
            nix::sys::stat::fchmod(fd, mode)
        } else {
            fchmodat(fd, name, mode, FchmodatFlags::FollowSymlink)
        }
        .map_err(|e| io_err(raw, e))
    }

    fn owner_err(&self, raw: &[u8], meta: &Meta, e: Errno) -> ApplyError {
        if e == Errno::EINVAL && self.opts.rootless {
            return ApplyError::OwnerOutOfRange { name: show(raw), uid: meta.uid, gid: meta.gid, source: e };
        }
        io_err(raw, e)
    }

    fn set_xattrs(&mut self, fd: &impl AsFd, meta: &Meta, raw: &[u8]) -> Result<(), ApplyError> {
        for (k, v) in &meta.xattrs {
            match set_xattr(fd, k, v) {
                Ok(()) => {}
                // As containers/storage: a file system or namespace that
                // does not take an xattr does not fail the layer.
                Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) => {
                    tracing::debug!("{}: xattr {} not set: {e}", show(raw), show(k));
                }
                Err(e) => return Err(io_err(raw, e)),
            }
        }
        Ok(())
    }

    fn finish_dirs(&mut self) -> Result<(), ApplyError> {
        let dirs = std::mem::take(&mut self.dirs);
        for (rel, mtime) in dirs.iter().rev() {
            let fd = match self.open_beneath(rel, rel) {
                Ok(fd) => fd,
                // Removed by a later whiteout or replaced: nothing to stamp.
                Err(_) => continue,
            };
            let fd =
                openat(&fd, c".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(|e| io_err(rel, e))?;
            let t = times(*mtime);
            nix::sys::stat::futimens(&fd, &t.0, &t.1).map_err(|e| io_err(rel, e))?;
        }
        Ok(())
    }
}

/// Split a tar name into components: leading `/` and `.` dropped, `..`
/// refused.
fn normalize(name: &[u8]) -> Result<Vec<&[u8]>, ApplyError> {
    let mut out = Vec::new();
    for c in name.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(ApplyError::Traversal(show(name))),
            c => out.push(c),
        }
    }
    Ok(out)
}

fn cstr(b: &[u8], raw: &[u8]) -> Result<CString, ApplyError> {
    CString::new(b)
        .map_err(|_| ApplyError::Corrupt(format!("entry name {:?} contains a NUL byte", show(raw))))
}

fn times(mtime: (i64, i64)) -> (TimeSpec, TimeSpec) {
    let t = TimeSpec::new(mtime.0, mtime.1);
    (t, t)
}

fn set_xattr(fd: &impl AsFd, key: &[u8], val: &[u8]) -> std::io::Result<()> {
    Ok(rustix::fs::fsetxattr(fd, key, val, rustix::fs::XattrFlags::empty())?)
}

/// Remove `name` under `dir`, recursively for directories; absent is fine.
pub fn remove_at(dir: &impl AsFd, name: &CStr) -> std::io::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(Errno::ENOENT) => return Ok(()),
        Err(Errno::EISDIR) | Err(Errno::EPERM) => {}
        Err(e) => return Err(e.into()),
    }
    let sub = openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    empty_dir(&sub, &|_| false)?;
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)?;
    Ok(())
}

/// Remove every entry of the open directory `dir` for which `keep` is false.
fn empty_dir(dir: &OwnedFd, keep: &dyn Fn(&[u8]) -> bool) -> std::io::Result<()> {
    let mut d = nix::dir::Dir::from_fd(dir.try_clone()?)?;
    let names: Vec<CString> = d
        .iter()
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_owned())
        .filter(|n| n.as_bytes() != b"." && n.as_bytes() != b"..")
        .collect();
    for n in names {
        if !keep(n.as_bytes()) {
            remove_at(dir, &n)?;
        }
    }
    Ok(())
}

/// vfs opaque directory: drop what the parent layers put in `dir`, keep
/// what this layer already wrote there.
fn clear_dir(dir: &OwnedFd, rel: &[u8], seen: &HashSet<Vec<u8>>) -> std::io::Result<()> {
    let fd = openat(dir, c".", OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())?;
    let keep = |name: &[u8]| {
        let mut p = rel.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(name);
        seen.contains(&p)
    };
    empty_dir(&fd, &keep)
}
