//! Apply a layer's tar stream to a layer directory, in one pass, without
//! ever writing outside that directory, and record the tar-split metadata
//! on the way.
//!
//! The tar is read block by block here rather than through a tar library's
//! entry iterator, because tar-split needs the raw bytes between file
//! contents (headers, PAX and GNU long-name records, padding, the end
//! blocks) exactly as they were; the `tar` crate only decodes header fields.
//!
//! Safety rules, each a refusal with the entry's name in the message:
//! - names and hardlink targets with `..` components (leading `/` is
//!   dropped, as containers/storage joins names under the root);
//! - anything reached through a symlink that leads out of the layer: every
//!   parent directory is opened with openat2(RESOLVE_BENEATH), which the
//!   kernel refuses with EXDEV for absolute symlinks and `..` escapes;
//! - the final component is never followed (O_NOFOLLOW, AT_SYMLINK_NOFOLLOW);
//! - PAX records over 1 MiB, names over 64 KiB and entries over 1 TiB.
//!
//! Memory is bounded: contents stream through a fixed buffer; only the
//! directory list (to set their times last) and, for vfs, the paths of the
//! layer (for opaque directories) grow, with the number of entries.

use std::collections::{BTreeSet, HashSet};
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmodat, fstatat, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag, UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, mkfifoat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use super::tarsplit::{Crc64, TarSplitWriter};

const BLOCK: usize = 512;
const MAX_PAX: u64 = 1 << 20;
const MAX_NAME: u64 = 64 << 10;
/// No real layer holds a single file this big; a header that says so is
/// corrupt or hostile.
pub const MAX_ENTRY: u64 = 1 << 40;
const OPAQUE: &[u8] = b".wh..wh..opq";
const WHITEOUT: &[u8] = b".wh.";

/// How whiteouts are represented in the layer directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// overlayfs: `.wh.X` becomes a 0/0 character device X, an opaque
    /// directory gets this xattr set to "y".
    Overlay {
        /// `trusted.overlay.opaque`, or `user.overlay.opaque` rootless.
        opaque_xattr: &'static str,
    },
    /// vfs: the layer is a copy of its parent; whiteouts delete.
    Vfs,
}

/// Settings for one layer.
#[derive(Debug, Clone, Copy)]
pub struct ApplyOptions {
    /// Whiteout representation.
    pub whiteouts: Whiteouts,
    /// In a user namespace: device nodes cannot be created and are skipped
    /// (as podman skips them rootless); xattrs the kernel refuses are skipped.
    pub rootless: bool,
}

/// What applying a layer learned.
#[derive(Debug, Default, Clone)]
pub struct ApplyStats {
    /// Owners seen (layers.json `uidset`).
    pub uids: BTreeSet<u32>,
    /// Groups seen (`gidset`).
    pub gids: BTreeSet<u32>,
    /// Device nodes skipped because they cannot be created here.
    pub skipped_devices: u64,
}

/// Why a layer could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// A name or link target that climbs out with `..`.
    #[error("layer entry \"{0}\" climbs out of the layer with \"..\"; refusing this layer")]
    Traversal(String),
    /// A path that resolves through a symlink pointing out of the layer.
    #[error("layer entry \"{0}\" goes through a symlink that leads out of the layer; refusing this layer")]
    Escape(String),
    /// A size beyond reason.
    #[error("layer entry \"{name}\" claims {size} bytes, beyond the limit of {limit}; refusing this layer")]
    TooLarge {
        /// The entry.
        name: String,
        /// What it claims.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// Not a tar stream, or a truncated one.
    #[error("the layer is not a valid tar stream: {0}")]
    Corrupt(String),
    /// An entry type mtbx does not extract.
    #[error("layer entry \"{name}\" has unsupported type '{kind}'")]
    Unsupported {
        /// The entry.
        name: String,
        /// Its type flag.
        kind: char,
    },
    /// A system call failed.
    #[error("cannot extract \"{name}\": {source}")]
    Io {
        /// The entry.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Reading the stream failed (network, decompression, digest).
    #[error("{0}")]
    Read(#[source] std::io::Error),
}

fn io_err(name: &[u8], e: impl Into<std::io::Error>) -> ApplyError {
    ApplyError::Io { name: show(name), source: e.into() }
}

fn show(name: &[u8]) -> String {
    String::from_utf8_lossy(name).into_owned()
}

/// Fields of a header after PAX and GNU extensions.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<(i64, i64)>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Apply the tar stream `input` under `root` (an open directory), writing
/// tar-split records to `split`. Reads `input` to its very end.
pub fn apply<R: Read, W: Write>(
    input: &mut R,
    root: BorrowedFd<'_>,
    opts: ApplyOptions,
    split: &mut TarSplitWriter<W>,
) -> Result<ApplyStats, ApplyError> {
    let mut a = Applier {
        root,
        opts,
        stats: ApplyStats::default(),
        dirs: Vec::new(),
        seen: HashSet::new(),
        cache: None,
        buf: vec![0u8; 256 << 10],
    };
    let mut raw: Vec<u8> = Vec::with_capacity(4 * BLOCK);
    let mut pending = Pending::default();
    let mut block = [0u8; BLOCK];
    loop {
        if !read_block(input, &mut block)? {
            // A stream that simply stops at a block boundary: accepted, as
            // Go's archive/tar accepts it.
            break;
        }
        raw.extend_from_slice(&block);
        if block.iter().all(|&b| b == 0) {
            break;
        }
        let hdr = tar::Header::from_byte_slice(&block);
        check_sum(&block)?;
        let kind = hdr.entry_type().as_byte();
        let hsize = numeric(&block[124..136], "size")?;
        match kind {
            b'x' | b'g' | b'L' | b'K' => {
                let cap = if matches!(kind, b'x' | b'g') { MAX_PAX } else { MAX_NAME };
                if hsize > cap {
                    return Err(ApplyError::TooLarge {
                        name: show(&hdr.path_bytes()),
                        size: hsize,
                        limit: cap,
                    });
                }
                let start = raw.len();
                read_padded(input, hsize, &mut raw)?;
                let data = raw[start..start + hsize as usize].to_vec();
                match kind {
                    b'x' => parse_pax(&data, &mut pending)?,
                    b'L' => pending.path = Some(cut_nul(&data)),
                    b'K' => pending.link = Some(cut_nul(&data)),
                    _ => {} // global PAX headers change nothing podman uses
                }
                continue;
            }
            _ => {}
        }
        let p = std::mem::take(&mut pending);
        let name = p.path.unwrap_or_else(|| hdr.path_bytes().into_owned());
        let header_only = matches!(kind, b'1' | b'2' | b'3' | b'4' | b'5' | b'6');
        let size = if header_only { 0 } else { p.size.unwrap_or(hsize) };
        if size > MAX_ENTRY {
            return Err(ApplyError::TooLarge { name: show(&name), size, limit: MAX_ENTRY });
        }
        split.segment(&raw).map_err(|e| io_err(&name, e))?;
        raw.clear();
        let meta = Meta {
            mode: numeric(&block[100..108], "mode")? as u32 & 0o7777,
            uid: id32(p.uid.map_or_else(|| numeric(&block[108..116], "uid"), Ok)?, &name)?,
            gid: id32(p.gid.map_or_else(|| numeric(&block[116..124], "gid"), Ok)?, &name)?,
            mtime: match p.mtime {
                Some(t) => t,
                None => (numeric(&block[136..148], "mtime")? as i64, 0),
            },
            xattrs: p.xattrs,
        };
        let link = p.link.or_else(|| hdr.link_name_bytes().map(|l| l.into_owned()));
        let dev =
            (numeric(&block[329..337], "devmajor")? as u32, numeric(&block[337..345], "devminor")? as u32);
        let mut crc = Crc64::default();
        a.entry(input, &name, kind, size, link.as_deref(), dev, &meta, &mut crc)?;
        let recorded_size = if header_only { hsize } else { size };
        split
            .file(&name, recorded_size, (recorded_size > 0).then(|| crc.value()))
            .map_err(|e| io_err(&name, e))?;
        pad(input, size, &mut raw)?;
    }
    // The end-of-archive blocks and whatever trails them belong to the
    // stream's digest and to tar-split: as tar-split lays them out, the
    // second zero block joins the first, the rest follows in segments of
    // at most 1 MiB, and an empty segment ends the stream.
    if !raw.is_empty() && read_block(input, &mut block)? {
        raw.extend_from_slice(&block);
    }
    if !raw.is_empty() {
        split.segment(&raw).map_err(|e| io_err(b"", e))?;
    }
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        let mut filled = 0;
        while filled < chunk.len() {
            let n = read_some(input, &mut chunk[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        split.segment(&chunk[..filled]).map_err(|e| io_err(b"", e))?;
        if filled < chunk.len() {
            break;
        }
    }
    a.finish_dirs()?;
    Ok(a.stats)
}

struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: (i64, i64),
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

struct Applier<'r> {
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

impl Applier<'_> {
    #[allow(clippy::too_many_arguments)]
    fn entry<R: Read>(
        &mut self,
        input: &mut R,
        raw_name: &[u8],
        kind: u8,
        size: u64,
        link: Option<&[u8]>,
        dev: (u32, u32),
        meta: &Meta,
        crc: &mut Crc64,
    ) -> Result<(), ApplyError> {
        let comps = normalize(raw_name)?;
        if comps.is_empty() {
            // The layer root itself ("./"): only its metadata applies, and
            // only for vfs (overlay keeps the diff root as created).
            if kind == b'5' && self.opts.whiteouts == Whiteouts::Vfs {
                self.set_owner_mode(self.root, c".", meta, raw_name)?;
                self.dirs.push((Vec::new(), meta.mtime));
            }
            return skip(input, size, crc);
        }
        let (base, parents) = comps.split_last().expect("not empty");
        let parent_path = parents.join(&b'/');
        if self.opts.whiteouts == Whiteouts::Vfs {
            self.seen.insert(comps.join(&b'/'));
        }
        // Whiteouts first: they name another entry.
        if *base == OPAQUE {
            let dir = self.parent(&parent_path, raw_name)?;
            match self.opts.whiteouts {
                Whiteouts::Overlay { opaque_xattr } => {
                    let fd = openat(
                        &dir,
                        c".",
                        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| io_err(raw_name, e))?;
                    set_xattr(&fd, opaque_xattr.as_bytes(), b"y").map_err(|e| io_err(raw_name, e))?;
                }
                Whiteouts::Vfs => {
                    let keep = &self.seen;
                    clear_dir(&dir, &parent_path, keep).map_err(|e| io_err(raw_name, e))?;
                }
            }
            return skip(input, size, crc);
        }
        if base.starts_with(b".wh..wh.") {
            // Other AUFS metadata (.wh..wh.plnk and the like): nothing to do.
            return skip(input, size, crc);
        }
        if let Some(target) = base.strip_prefix(WHITEOUT) {
            let dir = self.parent(&parent_path, raw_name)?;
            let target = cstr(target, raw_name)?;
            remove_at(&dir, &target).map_err(|e| io_err(raw_name, e))?;
            if let Whiteouts::Overlay { .. } = self.opts.whiteouts {
                mknodat(&dir, target.as_c_str(), SFlag::S_IFCHR, Mode::empty(), 0)
                    .map_err(|e| io_err(raw_name, e))?;
                // Owned as the header says; not counted in uidset, as
                // containers/storage skips whiteouts there.
                fchownat(
                    &dir,
                    target.as_c_str(),
                    Some(Uid::from_raw(meta.uid)),
                    Some(Gid::from_raw(meta.gid)),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.owner_err(raw_name, meta, e))?;
            }
            return skip(input, size, crc);
        }
        let dir = self.parent(&parent_path, raw_name)?;
        let name = cstr(base, raw_name)?;
        let name = name.as_c_str();
        let existing = fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok();
        let existing_is_dir = existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
        if existing.is_some() && !(kind == b'5' && existing_is_dir) {
            remove_at(&dir, name).map_err(|e| io_err(raw_name, e))?;
        }
        match kind {
            b'0' | b'\0' | b'7' => {
                let fd = openat(
                    &dir,
                    name,
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .map_err(|e| io_err(raw_name, e))?;
                let mut file = std::fs::File::from(fd);
                copy_exact(input, &mut file, size, crc, &mut self.buf, raw_name)?;
                // Owner before xattrs: chown drops security.capability.
                self.set_owner_mode(file.as_fd(), c"", meta, raw_name)?;
                self.set_xattrs(&file, meta, raw_name)?;
                let t = times(meta.mtime);
                nix::sys::stat::futimens(&file, &t.0, &t.1).map_err(|e| io_err(raw_name, e))?;
            }
            b'5' => {
                if !existing_is_dir {
                    mkdirat(&dir, name, Mode::from_bits_truncate(0o700)).map_err(|e| io_err(raw_name, e))?;
                }
                let fd = openat(
                    &dir,
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| io_err(raw_name, e))?;
                self.set_owner_mode(fd.as_fd(), c"", meta, raw_name)?;
                self.set_xattrs(&fd, meta, raw_name)?;
                self.dirs.push((comps.join(&b'/'), meta.mtime));
                // A directory replaced by a file later must not keep a stale fd.
                self.cache = None;
            }
            b'2' => {
                let target = cstr(link.unwrap_or_default(), raw_name)?;
                symlinkat(target.as_c_str(), &dir, name).map_err(|e| io_err(raw_name, e))?;
                self.chown_nofollow(&dir, name, meta, raw_name)?;
                let t = times(meta.mtime);
                utimensat(&dir, name, &t.0, &t.1, UtimensatFlags::NoFollowSymlink)
                    .map_err(|e| io_err(raw_name, e))?;
            }
            b'1' => {
                let target = normalize(link.unwrap_or_default())?;
                let Some((tbase, tparents)) = target.split_last() else {
                    return Err(ApplyError::Escape(show(raw_name)));
                };
                let tdir = self.open_beneath(&tparents.join(&b'/'), raw_name)?;
                let tname = cstr(tbase, raw_name)?;
                linkat(&tdir, tname.as_c_str(), &dir, name, AtFlags::empty())
                    .map_err(|e| io_err(raw_name, e))?;
            }
            b'3' | b'4' | b'6' => {
                let (ftype, r) = match kind {
                    b'6' => (SFlag::S_IFIFO, mkfifoat(&dir, name, Mode::from_bits_truncate(meta.mode))),
                    _ => {
                        let t = if kind == b'3' { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
                        let devno = nix::sys::stat::makedev(dev.0.into(), dev.1.into());
                        (t, mknodat(&dir, name, t, Mode::from_bits_truncate(meta.mode), devno))
                    }
                };
                match r {
                    Ok(()) => {
                        self.chown_nofollow(&dir, name, meta, raw_name)?;
                        fchmodat(
                            &dir,
                            name,
                            Mode::from_bits_truncate(meta.mode),
                            FchmodatFlags::FollowSymlink,
                        )
                        .map_err(|e| io_err(raw_name, e))?;
                    }
                    Err(Errno::EPERM) if self.opts.rootless && ftype != SFlag::S_IFIFO => {
                        tracing::debug!(
                            "skipping device node {} (cannot create it in a user namespace)",
                            show(raw_name)
                        );
                        self.stats.skipped_devices += 1;
                    }
                    Err(e) => return Err(io_err(raw_name, e)),
                }
            }
            other => return Err(ApplyError::Unsupported { name: show(raw_name), kind: other as char }),
        }
        Ok(())
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
        name: &std::ffi::CStr,
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
        name: &std::ffi::CStr,
        meta: &Meta,
        raw: &[u8],
    ) -> Result<(), ApplyError> {
        let flags = if name.is_empty() { AtFlags::AT_EMPTY_PATH } else { AtFlags::empty() };
        fchownat(fd, name, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)), flags)
            .map_err(|e| self.owner_err(raw, meta, e))?;
        self.note_owner(meta);
        // SAFETY: fd is a valid open descriptor for the call.
        let r = unsafe {
            if name.is_empty() {
                libc::fchmod(fd.as_raw_fd(), meta.mode)
            } else {
                libc::fchmodat(fd.as_raw_fd(), name.as_ptr(), meta.mode, 0)
            }
        };
        if r != 0 {
            return Err(io_err(raw, std::io::Error::last_os_error()));
        }
        Ok(())
    }

    fn owner_err(&self, raw: &[u8], meta: &Meta, e: Errno) -> ApplyError {
        if e == Errno::EINVAL && self.opts.rootless {
            return io_err(
                raw,
                std::io::Error::other(format!(
                    "owner {}:{} is outside this user's id range; give the user a larger range in /etc/subuid and /etc/subgid",
                    meta.uid, meta.gid
                )),
            );
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

fn cut_nul(b: &[u8]) -> Vec<u8> {
    b.split(|&c| c == 0).next().unwrap_or_default().to_vec()
}

/// A numeric header field as Go's archive/tar reads it: octal text
/// (blank or NUL-only means 0), or base-256 when the top bit is set.
fn numeric(field: &[u8], what: &str) -> Result<u64, ApplyError> {
    if field.first().is_some_and(|b| b & 0x80 != 0) {
        if field[0] & 0x40 != 0 {
            return Err(ApplyError::Corrupt(format!("negative {what} field")));
        }
        let mut v: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(b)))
                .ok_or_else(|| ApplyError::Corrupt(format!("{what} field overflows")))?;
        }
        return Ok(v);
    }
    let text = field.split(|&b| b == 0).next().unwrap_or_default();
    let text =
        std::str::from_utf8(text).map_err(|_| ApplyError::Corrupt(format!("bad {what} field")))?.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| ApplyError::Corrupt(format!("bad {what} field {text:?}")))
}

fn id32(v: u64, name: &[u8]) -> Result<u32, ApplyError> {
    u32::try_from(v).map_err(|_| ApplyError::Corrupt(format!("entry {:?} has owner id {v}", show(name))))
}

fn times(mtime: (i64, i64)) -> (TimeSpec, TimeSpec) {
    let t = TimeSpec::new(mtime.0, mtime.1);
    (t, t)
}

fn check_sum(block: &[u8; BLOCK]) -> Result<(), ApplyError> {
    let field = &block[148..156];
    let text: String = field.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    let stored = u32::from_str_radix(text.trim(), 8)
        .map_err(|_| ApplyError::Corrupt("a header has no valid checksum".into()))?;
    let unsigned: u32 =
        block.iter().enumerate().map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as u32 }).sum();
    let signed: i32 = block
        .iter()
        .enumerate()
        .map(|(i, &b)| if (148..156).contains(&i) { 32 } else { b as i8 as i32 })
        .sum();
    if stored == unsigned || stored as i32 == signed {
        Ok(())
    } else {
        Err(ApplyError::Corrupt("a header's checksum does not match".into()))
    }
}

fn parse_pax(data: &[u8], p: &mut Pending) -> Result<(), ApplyError> {
    for ext in tar::PaxExtensions::new(data) {
        let ext = ext.map_err(|e| ApplyError::Corrupt(format!("bad PAX record: {e}")))?;
        let key = ext.key_bytes();
        let val = ext.value_bytes();
        let num = || {
            std::str::from_utf8(val)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| ApplyError::Corrupt(format!("bad PAX value for {}", show(key))))
        };
        match key {
            b"path" => p.path = Some(val.to_vec()),
            b"linkpath" => p.link = Some(val.to_vec()),
            b"size" => p.size = Some(num()?),
            b"uid" => p.uid = Some(num()?),
            b"gid" => p.gid = Some(num()?),
            b"mtime" => {
                let s = std::str::from_utf8(val).unwrap_or("0");
                let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
                let secs = secs.parse::<i64>().unwrap_or(0);
                let nanos = format!("{frac:0<9}")[..9].parse::<i64>().unwrap_or(0);
                p.mtime = Some((secs, nanos));
            }
            k if k.starts_with(b"SCHILY.xattr.") => {
                p.xattrs.push((k[b"SCHILY.xattr.".len()..].to_vec(), val.to_vec()))
            }
            _ => {}
        }
    }
    Ok(())
}

fn set_xattr(fd: &impl AsFd, key: &[u8], val: &[u8]) -> std::io::Result<()> {
    let k = CString::new(key).map_err(std::io::Error::other)?;
    // SAFETY: valid fd, NUL-terminated key, value pointer and length match.
    let r = unsafe { libc::fsetxattr(fd.as_fd().as_raw_fd(), k.as_ptr(), val.as_ptr().cast(), val.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Remove `name` under `dir`, recursively for directories; absent is fine.
pub fn remove_at(dir: &impl AsFd, name: &std::ffi::CStr) -> std::io::Result<()> {
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

fn read_some<R: Read>(input: &mut R, buf: &mut [u8]) -> Result<usize, ApplyError> {
    loop {
        match input.read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(ApplyError::Read(e)),
        }
    }
}

/// Fill a block; false at a clean end of stream.
fn read_block<R: Read>(input: &mut R, block: &mut [u8; BLOCK]) -> Result<bool, ApplyError> {
    let mut got = 0;
    while got < BLOCK {
        let n = read_some(input, &mut block[got..])?;
        if n == 0 {
            return if got == 0 { Ok(false) } else { Err(ApplyError::Corrupt("truncated header".into())) };
        }
        got += n;
    }
    Ok(true)
}

fn read_exact_into<R: Read>(input: &mut R, n: u64, out: &mut Vec<u8>) -> Result<(), ApplyError> {
    let start = out.len();
    out.resize(start + n as usize, 0);
    input.read_exact(&mut out[start..]).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => ApplyError::Corrupt("the stream ends inside an entry".into()),
        _ => ApplyError::Read(e),
    })
}

fn read_padded<R: Read>(input: &mut R, size: u64, out: &mut Vec<u8>) -> Result<(), ApplyError> {
    read_exact_into(input, size.div_ceil(BLOCK as u64) * BLOCK as u64, out)
}

/// The padding after `size` bytes of content, into the next raw segment.
fn pad<R: Read>(input: &mut R, size: u64, raw: &mut Vec<u8>) -> Result<(), ApplyError> {
    let rem = (size % BLOCK as u64) as usize;
    if rem == 0 {
        return Ok(());
    }
    read_exact_into(input, (BLOCK - rem) as u64, raw)
}

fn copy_exact<R: Read, W: Write>(
    input: &mut R,
    out: &mut W,
    mut size: u64,
    crc: &mut Crc64,
    buf: &mut [u8],
    name: &[u8],
) -> Result<(), ApplyError> {
    while size > 0 {
        let want = buf.len().min(size as usize);
        let n = read_some(input, &mut buf[..want])?;
        if n == 0 {
            return Err(ApplyError::Corrupt(format!("the stream ends inside {:?}", show(name))));
        }
        crc.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| io_err(name, e))?;
        size -= n as u64;
    }
    Ok(())
}

/// Content of an entry that is not written anywhere (whiteouts and the
/// like) still counts for the checksum.
fn skip<R: Read>(input: &mut R, size: u64, crc: &mut Crc64) -> Result<(), ApplyError> {
    let mut buf = [0u8; 8192];
    copy_exact(input, &mut std::io::sink(), size, crc, &mut buf, b"")
}
